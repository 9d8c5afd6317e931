"""Schemas of elementwise ops (unary, activations, broadcasting binary/variadic), reductions,
Cast and the inference no-ops (Identity, Dropout)."""

from __future__ import annotations

from fc.ir.schema import FLOAT, FLT_MAX, INT, INTS, STRING, Attr, TensorType, register_op
from fc.ir.schemas._rules import broadcast, check, norm_axis
from fc.ir.schemas.nn import ACTIVATION_ATTRS, FUSED_ACTIVATIONS

__all__ = ["UNARY_OPS", "BINARY_OPS", "VARIADIC_OPS", "REDUCE_OPS", "DTYPES"]

# Unary ops with no attributes: y has x's shape and dtype.
UNARY_OPS = (
    "Relu", "Sigmoid", "Tanh", "HardSwish", "SiLU", "Exp", "Log", "Sqrt", "Abs", "Neg", "Erf",
    "Reciprocal", "Identity",
)
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow")
VARIADIC_OPS = ("Max", "Min", "Sum", "Mean")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax")
DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")


def _same(x, **_):
    return TensorType(x.shape, x.dtype)


for _op in UNARY_OPS:
    register_op(_op, inputs=("X",))(_same)

register_op("LeakyRelu", inputs=("X",), attrs={"alpha": Attr(FLOAT, 0.01)})(_same)
register_op("Elu", inputs=("X",), attrs={"alpha": Attr(FLOAT, 1.0)})(_same)
register_op("HardSigmoid", inputs=("X",),
            attrs={"alpha": Attr(FLOAT, 0.2), "beta": Attr(FLOAT, 0.5)})(_same)
register_op("Clip", inputs=("X",),
            attrs={"min": Attr(FLOAT, -FLT_MAX), "max": Attr(FLOAT, FLT_MAX)})(_same)
# approximate: "none" (exact, erf) or "tanh"
register_op("Gelu", inputs=("X",), attrs={"approximate": Attr(STRING, "none")})(_same)
register_op("Dropout", inputs=("X",), attrs={"ratio": Attr(FLOAT, 0.5)})(_same)


@register_op("PRelu", inputs=("X", "slope"))
def prelu(x, slope):
    """x if x >= 0 else slope * x; slope broadcasts to x (unidirectionally)."""
    check(broadcast(x.shape, slope.shape) == x.shape,
          f"slope {slope.shape} does not broadcast to X {x.shape}")
    return TensorType(x.shape, x.dtype)


def _binary(a, b, *, activation="", **_):
    check(a.dtype == b.dtype, f"input dtypes differ: {a.dtype} vs {b.dtype}")
    check(activation in FUSED_ACTIVATIONS,
          f"activation {activation!r} not one of {sorted(FUSED_ACTIVATIONS)}")
    return TensorType(broadcast(a.shape, b.shape), a.dtype)


for _op in BINARY_OPS:
    # Add alone carries a fused activation: a residual Add + Relu is one hardware op.
    register_op(_op, inputs=("A", "B"), attrs=dict(ACTIVATION_ATTRS) if _op == "Add" else None)(
        _binary)


def _variadic(*xs):
    check(len({x.dtype for x in xs}) == 1, f"input dtypes differ: {[x.dtype for x in xs]}")
    return TensorType(broadcast(*(x.shape for x in xs)), xs[0].dtype)


for _op in VARIADIC_OPS:
    register_op(_op, inputs=("data_0*",))(_variadic)


def _reduce(x, *, axes, keepdims):
    axes_n = {norm_axis(a, x.rank, "axes") for a in axes} if axes else set(range(x.rank))
    check(len(axes_n) == len(axes) or not axes, f"repeated axes {list(axes)}")
    shape = tuple(1 if i in axes_n else d for i, d in enumerate(x.shape) if keepdims or i not in axes_n)
    return TensorType(shape, x.dtype)


for _op in REDUCE_OPS:
    # axes=() reduces over every axis.
    register_op(_op, inputs=("X",), attrs={"axes": Attr(INTS, ()), "keepdims": Attr(INT, 1)})(
        _reduce)


@register_op("Cast", inputs=("X",), attrs={"to": Attr(STRING)})
def cast(x, *, to):
    """Convert to the numpy dtype named ``to``."""
    check(to in DTYPES, f"attribute 'to'={to!r} not one of {list(DTYPES)}")
    return TensorType(x.shape, to)

