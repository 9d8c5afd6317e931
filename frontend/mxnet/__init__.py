"""fc.frontend.mxnet: import MXNet models (symbol JSON + ``.params``, gluon blocks, zoo names).

Importing from files needs no mxnet (``params.py`` reads ``.params`` with numpy); mxnet is
imported, through ``_mx.import_mxnet`` only, for zoo models and live gluon/symbol objects.
"""

from fc.frontend.mxnet.importer import (
    DEFAULT_INPUT_SHAPE,
    convert_symbol,
    import_files,
    import_gluon,
    import_symbol,
    load_mxnet,
)
from fc.frontend.mxnet.registry import supported_ops

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "convert_symbol",
    "import_files",
    "import_gluon",
    "import_symbol",
    "load_mxnet",
    "supported_ops",
]
