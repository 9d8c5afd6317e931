"""TensorFlow lowerings of the elementwise ops, activations and reductions.

Elementwise ops work in whatever axis order their inputs already have: the output takes the
order of the first computed full-rank input, other inputs are arranged to match (a weight
in numpy), so a residual Add of two channels-last tensors stays channels-last. Reductions
map their axes instead of moving data.

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fc.ir.activations import ACTIVATIONS as ACTIVATION_TABLE
from fc.ir.activations import fused_form
from fc.reconstruct.tf.activations import activate
from fc.reconstruct.tf.context import LowerContext, Lt, common_perm, reduce_axes
from fc.reconstruct.tf.registry import LOWERINGS

__all__: list[str] = []


def _elementwise(ctx: LowerContext, xs: Sequence[Lt], fn: Callable[..., Any]) -> Lt:
    rank = len(ctx.node.output.shape)
    perm = common_perm(xs, rank)
    return ctx.out(fn(*(ctx.broadcast(x, perm) for x in xs)), perm)


def _unary(fn: Callable[[Any, Any], Any]) -> Callable[..., Lt]:
    def lower(ctx: LowerContext, x: Lt) -> Lt:
        return ctx.out(fn(ctx.tf, ctx.arrange(x, x.perm)), x.perm)

    return lower


_UNARY: dict[str, Callable[[Any, Any], Any]] = {
    "Exp": lambda tf, x: tf.exp(x),
    "Log": lambda tf, x: tf.math.log(x),
    "Sqrt": lambda tf, x: tf.sqrt(x),
    "Abs": lambda tf, x: tf.abs(x),
    "Neg": lambda tf, x: tf.negative(x),
    "Erf": lambda tf, x: tf.math.erf(x),
    "Reciprocal": lambda tf, x: tf.math.reciprocal(x),
    "Identity": lambda tf, x: tf.identity(x),
}

for _op, _fn in _UNARY.items():
    LOWERINGS.register(_op)(_unary(_fn))


@LOWERINGS.register("Dropout")
def dropout(ctx: LowerContext, x: Lt, *, ratio: float) -> Lt:
    """Inference: the identity."""
    return ctx.out(ctx.tf.identity(ctx.arrange(x, x.perm)), x.perm)


def _activation(ctx: LowerContext, x: Lt, **attrs: object) -> Lt:
    """A standalone activation op: its fused form (``fc.ir.activations``) through the one TF
    function of that activation, so the two forms cannot disagree."""
    name, alpha, beta = fused_form(ctx.node.op_type, attrs)
    t = ctx.arrange(x, x.perm)
    if name == "clip" and not x.dtype.startswith("float"):  # integer bounds, saturated
        info = np.iinfo(np.dtype(x.dtype))
        lo, hi = (ctx.tf.cast(np.clip(v, info.min, info.max), t.dtype) for v in (alpha, beta))
        return ctx.out(ctx.tf.minimum(ctx.tf.maximum(t, lo), hi), x.perm)
    return ctx.out(activate(ctx, t, name, alpha, beta), x.perm)


for _entry in ACTIVATION_TABLE.values():
    LOWERINGS.register(_entry.op_type)(_activation)


@LOWERINGS.register("PRelu")
def prelu(ctx: LowerContext, x: Lt, slope: Lt) -> Lt:
    tf = ctx.tf
    t = ctx.arrange(x, x.perm)
    return ctx.out(tf.where(t < 0, t * ctx.broadcast(slope, x.perm), t), x.perm)


@LOWERINGS.register("Cast")
def cast(ctx: LowerContext, x: Lt, *, to: str) -> Lt:
    return ctx.out(ctx.tf.cast(ctx.arrange(x, x.perm), ctx.tf.as_dtype(np.dtype(to))), x.perm)


# -- binary and variadic ---------------------------------------------------------------------
def _div(tf: Any, a: Any, b: Any) -> Any:
    """True division for floats, truncation toward zero for integers (as the IR)."""
    return tf.math.truncatediv(a, b) if a.dtype.is_integer else tf.math.divide(a, b)


_BINARY: dict[str, Callable[[Any, Any, Any], Any]] = {
    "Sub": lambda tf, a, b: tf.subtract(a, b),
    "Mul": lambda tf, a, b: tf.multiply(a, b),
    "Div": _div,
    "Pow": lambda tf, a, b: tf.pow(a, tf.cast(b, a.dtype)),
}


def _binary(fn: Callable[[Any, Any, Any], Any]) -> Callable[..., Lt]:
    def lower(ctx: LowerContext, a: Lt, b: Lt) -> Lt:
        return _elementwise(ctx, (a, b), lambda ta, tb: fn(ctx.tf, ta, tb))

    return lower


for _op, _fn2 in _BINARY.items():
    LOWERINGS.register(_op)(_binary(_fn2))


@LOWERINGS.register("Add")
def add(ctx: LowerContext, a: Lt, b: Lt, *, activation: str, act_alpha: float, act_beta: float
        ) -> Lt:
    y = _elementwise(ctx, (a, b), ctx.tf.add)
    y.tensor = activate(ctx, y.tensor, activation, act_alpha, act_beta)
    return y


def _fold(fn: Callable[[Any, Any, Any], Any]) -> Callable[..., Any]:
    def apply(tf: Any, *ts: Any) -> Any:
        y = ts[0]
        for t in ts[1:]:
            y = fn(tf, y, t)
        return y

    return apply


_VARIADIC: dict[str, Callable[..., Any]] = {
    "Max": _fold(lambda tf, a, b: tf.maximum(a, b)),
    "Min": _fold(lambda tf, a, b: tf.minimum(a, b)),
    "Sum": _fold(lambda tf, a, b: tf.add(a, b)),
    "Mean": lambda tf, *ts: _fold(lambda tf, a, b: tf.add(a, b))(tf, *ts) / float(len(ts)),
}


def _variadic(fn: Callable[..., Any]) -> Callable[..., Lt]:
    def lower(ctx: LowerContext, *xs: Lt) -> Lt:
        return _elementwise(ctx, xs, lambda *ts: fn(ctx.tf, *ts))

    return lower


for _op, _fn3 in _VARIADIC.items():
    LOWERINGS.register(_op)(_variadic(_fn3))


# -- reductions ------------------------------------------------------------------------------
def _reduce(name: str) -> Callable[..., Lt]:
    def lower(ctx: LowerContext, x: Lt, *, axes: tuple[int, ...], keepdims: int) -> Lt:
        tensor_axes, perm = reduce_axes(x.perm, axes, keepdims)
        fn = getattr(ctx.tf.math, name)
        return ctx.out(fn(ctx.arrange(x, x.perm), axis=tensor_axes, keepdims=bool(keepdims)),
                       perm)

    return lower


for _op, _name in (("ReduceMean", "reduce_mean"), ("ReduceSum", "reduce_sum"),
                   ("ReduceMax", "reduce_max")):
    LOWERINGS.register(_op)(_reduce(_name))
