"""Schemas of elementwise ops (unary, activations, broadcasting binary/variadic), reductions,
Cast and the inference no-ops (Identity, Dropout).

The activation ops (Relu, Clip, Gelu, ...) are registered from ``fc.ir.activations``, which
holds their attributes with everything else about them.
"""

from __future__ import annotations

from fc.ir.activations import ACTIVATION_ATTRS, ACTIVATIONS
from fc.ir.schema import FLOAT, INT, INTS, PARAM, STRING, Attr, TensorType, register_op
from fc.ir.schemas._rules import broadcast, check, norm_axis
from fc.ir.schemas.nn import check_activation

__all__ = ["UNARY_OPS", "ACTIVATION_OPS", "BINARY_OPS", "VARIADIC_OPS", "REDUCE_OPS", "DTYPES"]

# Unary math ops with no attributes: y has x's shape and dtype.
UNARY_OPS = ("Exp", "Log", "Sqrt", "Abs", "Neg", "Erf", "Reciprocal", "Identity")
# The standalone activation ops, in the table's order.
ACTIVATION_OPS = tuple(a.op_type for a in ACTIVATIONS.values())
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow")
VARIADIC_OPS = ("Max", "Min", "Sum", "Mean")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax")
DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")


def _same(x, **_):
    return TensorType(x.shape, x.dtype)


for _op in UNARY_OPS:
    register_op(_op, inputs=("X",))(_same)

for _act in ACTIVATIONS.values():
    register_op(_act.op_type, inputs=("X",), attrs=_act.attrs)(_same)

register_op("Dropout", inputs=("X",), attrs={"ratio": Attr(FLOAT, 0.5)})(_same)


@register_op("PRelu", inputs=("X", "slope"), roles={"slope": PARAM})
def prelu(x, slope):
    """x if x >= 0 else slope * x; slope broadcasts to x (unidirectionally)."""
    check(broadcast(x.shape, slope.shape) == x.shape,
          f"slope {slope.shape} does not broadcast to X {x.shape}")
    return TensorType(x.shape, x.dtype)


def _binary(a, b, *, activation="", **_):
    check(a.dtype == b.dtype, f"input dtypes differ: {a.dtype} vs {b.dtype}")
    check_activation(activation)
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

