"""Kernels of ops that exist only after fusion (Scale).

``Scale`` is what a BatchNormalization becomes when no layer precedes it to fold into:
``y = act(X * scale[c] + B[c])`` over axis 1. It is computed in X's dtype (one multiply and
one add per element, as the hardware does), not in float64: the fused graph is compared with
the original one, and both round each step to float32.
"""

from __future__ import annotations

import numpy as np

from fc.np_ops.activation import apply_activation
from fc.np_ops.registry import kernel

__all__ = ["scale"]


def _per_channel(v: np.ndarray, rank: int, dtype: np.dtype) -> np.ndarray:
    """(C,) -> (C, 1, ..., 1), so it broadcasts over axis 1 of a rank-``rank`` tensor."""
    return np.asarray(v, dtype=dtype).reshape((-1,) + (1,) * (rank - 2))


@kernel("Scale")
def scale(x: np.ndarray, s: np.ndarray, b: np.ndarray | None = None, *, activation: str,
          act_alpha: float, act_beta: float) -> np.ndarray:
    x = np.asarray(x)
    y = x * _per_channel(s, x.ndim, x.dtype)
    if b is not None:
        y = y + _per_channel(b, x.ndim, x.dtype)
    return apply_activation(np.asarray(y, dtype=x.dtype), activation, act_alpha, act_beta)
