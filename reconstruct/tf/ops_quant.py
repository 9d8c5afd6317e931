"""TensorFlow lowerings of the quantization boundary ops (``IR_quantized_for_CModel``).

Explicit arithmetic, the same float32 operations as fc's definition (``fc.quant.qparams``):
``q = clip(round(x / s) + z, qmin, qmax)`` cast to the integer dtype (``tf.round`` rounds half
to even, as fc does), ``x^ = (float(q) - z) * s``. TF's ``FakeQuantWithMinMaxVars`` cannot
express this exactly (it rounds half up and recomputes the scale from (max - min) in
float32), so it is not used. Weights stay int8 constants in the .pb, dequantized in the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fc.reconstruct.tf.context import LowerContext, Lt, inverse
from fc.reconstruct.tf.registry import LOWERINGS

__all__: list[str] = []


def _tensor(ctx: LowerContext, x: Lt) -> Any:
    return ctx.weight(x) if x.is_const else ctx.arrange(x, x.perm)


def _param(ctx: LowerContext, x: Lt, p: Lt, axis: int, what: str) -> np.ndarray:
    """A scale/zero point shaped to broadcast against ``x``'s tensor (its per-channel axis is
    wherever ``x.perm`` put the IR axis)."""
    arr = np.asarray(ctx.const(p, what), np.float32)
    if arr.ndim == 0:
        return arr
    perm = x.perm if not x.is_const else tuple(range(x.rank))
    shape = [1] * x.rank
    shape[inverse(perm)[axis % x.rank]] = -1
    return arr.reshape(shape)


@LOWERINGS.register("QuantizeLinear")
def quantize_linear(ctx: LowerContext, x: Lt, s: Lt, z: Lt, *, axis: int, qmin: int, qmax: int
                    ) -> Lt:
    tf = ctx.tf
    t = _tensor(ctx, x)
    q = tf.round(t / _param(ctx, x, s, axis, "y_scale")) + _param(ctx, x, z, axis, "y_zero_point")
    q = tf.clip_by_value(q, float(qmin), float(qmax))
    perm = x.perm if not x.is_const else None
    return ctx.out(tf.cast(q, tf.as_dtype(np.dtype(z.dtype))), perm)


@LOWERINGS.register("DequantizeLinear")
def dequantize_linear(ctx: LowerContext, x: Lt, s: Lt, z: Lt, *, axis: int) -> Lt:
    tf = ctx.tf
    t = tf.cast(_tensor(ctx, x), tf.float32)
    y = (t - _param(ctx, x, z, axis, "x_zero_point")) * _param(ctx, x, s, axis, "x_scale")
    return ctx.out(y, x.perm if not x.is_const else None)
