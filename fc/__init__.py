"""fc: a frontend compiler for neural-network accelerators.

Import a model into fc's IR, compile it to the graph a hardware C model consumes, run either
with the numpy golden executor, and measure it.
"""

from fc.errors import FcError, IRError

__version__ = "0.1.0"
__all__ = ["FcError", "IRError", "__version__"]
