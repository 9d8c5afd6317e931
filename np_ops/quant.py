"""Kernels of the quantization boundary ops (QuantizeLinear, DequantizeLinear).

The maths is ``fc.quant.qparams`` (one definition of rounding and clamping for the whole
project); these kernels only adapt the IR's tensors to it.
"""

from __future__ import annotations

import numpy as np

from fc.np_ops.registry import kernel
from fc.quant.qparams import QParams, dequantize, quantize

__all__: list[str] = []


def _params(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, qmin: int,
            qmax: int) -> QParams:
    scale = np.asarray(scale)
    return QParams(scale, zero_point, qmin, qmax, None if scale.ndim == 0 else axis % x.ndim)


@kernel("QuantizeLinear")
def quantize_linear(x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray, *, axis: int,
                    qmin: int, qmax: int) -> np.ndarray:
    p = _params(x, y_scale, y_zero_point, axis, qmin, qmax)
    q = quantize(x, p)
    return q.astype(np.asarray(y_zero_point).dtype, copy=False)


@kernel("DequantizeLinear")
def dequantize_linear(x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray, *,
                      axis: int) -> np.ndarray:
    info = np.iinfo(np.asarray(x).dtype)
    return dequantize(x, _params(x, x_scale, x_zero_point, axis, int(info.min), int(info.max)))
