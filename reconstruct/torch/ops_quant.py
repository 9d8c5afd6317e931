"""torch lowerings of the quantization boundary ops, as fc defines them (``fc.quant.qparams``):
``q = clamp(round(x / s) + z, qmin, qmax)`` in the integer dtype (``torch.round`` rounds half
to even, as fc does) and ``x^ = (q - z) * s``, with the scales as buffers."""

from __future__ import annotations

import numpy as np
import torch
from torch import fx

from fc.ir.core import Value
from fc.reconstruct.torch.builder import Builder, torch_dtype
from fc.reconstruct.torch.registry import LOWERINGS

__all__: list[str] = []


def _param(b: Builder, x: Value, p: Value, axis: int, suffix: str) -> fx.Node:
    arr = np.asarray(p.const, np.float32)
    if arr.ndim:
        shape = [1] * len(x.shape)
        shape[axis % len(x.shape)] = -1
        arr = arr.reshape(shape)
    return b.constant(arr, suffix)


@LOWERINGS.register("QuantizeLinear")
def quantize_linear(b: Builder, x: Value, s: Value, z: Value, *, axis: int, qmin: int,
                    qmax: int) -> fx.Node:
    q = b.call(torch.round, b.call(torch.div, x, _param(b, x, s, axis, "scale")))
    q = b.call(torch.clamp, b.call(torch.add, q, _param(b, x, z, axis, "zero_point")), qmin, qmax)
    return b.method("to", q, torch_dtype(z.dtype))


@LOWERINGS.register("DequantizeLinear")
def dequantize_linear(b: Builder, x: Value, s: Value, z: Value, *, axis: int) -> fx.Node:
    y = b.call(torch.sub, b.method("to", x, torch.float32), _param(b, x, z, axis, "zero_point"))
    return b.call(torch.mul, y, _param(b, x, s, axis, "scale"))
