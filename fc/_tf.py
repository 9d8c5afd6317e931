"""The one place fc imports TensorFlow, for the frontend and the reconstructor alike; lazily,
because it takes seconds and most commands never need it.
"""

from __future__ import annotations

from types import ModuleType

from fc.errors import FcError

__all__ = ["import_tf"]

_TF: ModuleType | None = None


def import_tf() -> ModuleType:
    """``tensorflow``, or an ``FcError`` saying how to install it."""
    global _TF
    if _TF is None:
        try:
            import tensorflow as tf
        except ImportError as e:
            raise FcError(f"TensorFlow is not installed ({e}); install fc with its 'tf' extra: "
                          "pip install -e '.[tf]'") from None
        _TF = tf
    return _TF
