"""The TensorFlow converter table: one function per GraphDef op (``"Conv2D"``), built on the
frontend kit (``fc.frontend.registry``); aliases share an entry (``"AddV2", "Add"``)."""

from __future__ import annotations

from fc.frontend.registry import ConverterRegistry

__all__ = ["CONVERTERS", "converter"]


def _load() -> None:
    # The explicit list of converter modules; each registers its ops on import.
    import fc.frontend.tf.ops_elementwise  # noqa: F401
    import fc.frontend.tf.ops_nn  # noqa: F401
    import fc.frontend.tf.ops_tensor  # noqa: F401


CONVERTERS = ConverterRegistry("TensorFlow", loader=_load)
converter = CONVERTERS.register
