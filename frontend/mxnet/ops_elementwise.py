"""Converters of MXNet's elementwise operators: activations, unary math, binary and
broadcasting arithmetic, scalar arithmetic, sums, clip, Cast and the inference no-ops.

MXNet spells one operation many ways (``elemwise_add``, ``_plus``, ``_Plus``, ``broadcast_add``
...); every spelling maps to the one fc op. MXNet's broadcasting aligns shapes on the right,
like numpy and fc. A scalar operand (``_plus_scalar`` and friends) becomes a 0-d constant of
the tensor's dtype, which is how mxnet applies it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fc.frontend.mxnet.context import ConvertContext
from fc.frontend.mxnet.registry import converter
from fc.ir.core import Value
from fc.ir.schema import FLT_MAX

__all__: list[str] = []

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946


# -- activations ------------------------------------------------------------------------------

_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _activation_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    act = a.str("act_type", "")
    return None if act in _ACTIVATIONS else f"act_type={act}"


@converter("Activation", check=_activation_check)
def activation(ctx: ConvertContext) -> Value:
    # softrelu (log(1 + exp(x)), with mxnet's x > 20 shortcut), softsign, log_sigmoid and mish
    # have no fc op: they are reported as unsupported before conversion starts
    return ctx.add_node(_ACTIVATIONS[ctx.attrs.str("act_type")], [ctx.value(0)]).output


_LEAKY_TYPES = ("leaky", "prelu", "elu", "selu", "gelu", "rrelu")


def _leaky_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    act = a.str("act_type", "leaky")
    return None if act in _LEAKY_TYPES else f"act_type={act}"


@converter("LeakyReLU", check=_leaky_check)
def leaky_relu(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    act = a.str("act_type", "leaky")
    x = ctx.value(0)
    slope = a.float("slope", 0.25)
    if act == "leaky":
        return ctx.add_node("LeakyRelu", [x], {"alpha": slope}).output
    if act == "rrelu":
        # at inference rrelu is a leaky relu with the mean of the sampling range
        lower, upper = a.float("lower_bound", 0.125), a.float("upper_bound", 0.334)
        return ctx.add_node("LeakyRelu", [x], {"alpha": (lower + upper) / 2}).output
    if act == "elu":
        return ctx.add_node("Elu", [x], {"alpha": slope}).output
    if act == "gelu":
        return ctx.add_node("Gelu", [x], {"approximate": "none"}).output
    if act == "selu":
        y = ctx.add_node("Elu", [x], {"alpha": _SELU_ALPHA}, final=False, suffix="elu").output
        return ctx.add_node("Mul", [y, ctx.scalar(_SELU_LAMBDA, x.dtype, "lambda")]).output
    # prelu: one learned slope per channel (axis 1), or one for all
    gamma = ctx.const(1, "gamma")
    rank = len(x.shape)
    shape = (gamma.size,) + (1,) * (rank - 2) if gamma.size > 1 else (1,)
    slope_v = ctx.const_value(gamma.reshape(shape), ctx.input_name(1))
    return ctx.add_node("PRelu", [x, slope_v]).output


# -- unary ------------------------------------------------------------------------------------

_UNARY = {
    "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log",
    "sqrt": "Sqrt", "abs": "Abs", "negative": "Neg", "erf": "Erf", "reciprocal": "Reciprocal",
    # inference no-ops
    "_copy": "Identity", "identity": "Identity", "BlockGrad": "Identity",
    "stop_gradient": "Identity", "make_loss": "Identity", "MakeLoss": "Identity",
}


def _unary(op: str) -> Callable[[ConvertContext], Value]:
    def convert(ctx: ConvertContext) -> Value:
        return ctx.add_node(op, [ctx.value(0)]).output

    convert.__name__ = f"unary_{op.lower()}"
    return convert


for _mx_op, _fc_op in _UNARY.items():
    converter(_mx_op)(_unary(_fc_op))


@converter("square")
def square(ctx: ConvertContext) -> Value:
    x = ctx.value(0)
    return ctx.add_node("Mul", [x, x]).output


@converter("hard_sigmoid")
def hard_sigmoid(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    return ctx.add_node("HardSigmoid", [ctx.value(0)], {
        "alpha": a.float("alpha", 0.2), "beta": a.float("beta", 0.5)}).output


def _dropout_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    mode = a.str("mode", "training")
    return None if mode == "training" else f"mode={mode}"


@converter("Dropout", check=_dropout_check)
def dropout(ctx: ConvertContext) -> list[Value | None]:
    # mode='training' (the default) is the identity at inference; 'always' drops at
    # inference too (random), which fc cannot reproduce
    y = ctx.add_node("Dropout", [ctx.value(0)], {"ratio": ctx.attrs.float("p", 0.5)}).output
    return [y, None]


@converter("clip")
def clip(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    lo, hi = a.float("a_min"), a.float("a_max")
    lo, hi = max(lo, -FLT_MAX), min(hi, FLT_MAX)
    return ctx.add_node("Clip", [ctx.value(0)], {"min": lo, "max": hi}).output


@converter("Cast", "cast")
def cast(ctx: ConvertContext) -> Value:
    dtype = ctx.attrs.str("dtype")
    try:
        to = np.dtype(dtype).name
    except TypeError:
        raise ctx.error(f"attribute 'dtype'={dtype!r} is not a numpy dtype") from None
    return ctx.add_node("Cast", [ctx.value(0)], {"to": to}).output


# -- binary -----------------------------------------------------------------------------------

_BINARY = {
    "Add": ("elemwise_add", "_plus", "_Plus", "_add", "broadcast_add", "broadcast_plus"),
    "Sub": ("elemwise_sub", "_minus", "_Minus", "_sub", "broadcast_sub", "broadcast_minus"),
    "Mul": ("elemwise_mul", "_mul", "_Mul", "broadcast_mul"),
    "Div": ("elemwise_div", "_div", "_Div", "broadcast_div"),
    "Pow": ("_power", "_Power", "broadcast_power"),
    "Max": ("_maximum", "_Maximum", "broadcast_maximum"),
    "Min": ("_minimum", "_Minimum", "broadcast_minimum"),
}


def _binary(op: str) -> Callable[[ConvertContext], Value]:
    def convert(ctx: ConvertContext) -> Value:
        return ctx.add_node(op, [ctx.value(0), ctx.value(1)]).output

    convert.__name__ = f"binary_{op.lower()}"
    return convert


for _fc_op, _mx_ops in _BINARY.items():
    converter(*_mx_ops)(_binary(_fc_op))


@converter("add_n", "ElementWiseSum")
def add_n(ctx: ConvertContext) -> Value:
    inputs = [ctx.value(i) for i in range(ctx.num_inputs)]
    if len(inputs) == 1:
        return ctx.add_node("Identity", inputs).output
    return ctx.add_node("Sum", inputs).output


# -- scalar -----------------------------------------------------------------------------------

# fc op -> mxnet spellings, for "tensor op scalar" and "scalar op tensor"
_SCALAR = {
    "Add": ("_plus_scalar", "_PlusScalar"),
    "Sub": ("_minus_scalar", "_MinusScalar"),
    "Mul": ("_mul_scalar", "_MulScalar"),
    "Div": ("_div_scalar", "_DivScalar"),
    "Pow": ("_power_scalar", "_PowerScalar"),
    "Max": ("_maximum_scalar", "_MaximumScalar"),
    "Min": ("_minimum_scalar", "_MinimumScalar"),
}
_RSCALAR = {
    "Sub": ("_rminus_scalar", "_RMinusScalar"),
    "Div": ("_rdiv_scalar", "_RDivScalar"),
    "Pow": ("_rpower_scalar", "_RPowerScalar"),
}


def _scalar_op(op: str, reverse: bool) -> Callable[[ConvertContext], Value]:
    def convert(ctx: ConvertContext) -> Value:
        scalar = ctx.attrs.float("scalar")
        x = ctx.value(0)
        s = ctx.scalar(scalar, x.dtype)
        return ctx.add_node(op, [s, x] if reverse else [x, s]).output

    convert.__name__ = f"scalar_{'r' if reverse else ''}{op.lower()}"
    return convert


for _fc_op, _mx_ops in _SCALAR.items():
    converter(*_mx_ops)(_scalar_op(_fc_op, False))
for _fc_op, _mx_ops in _RSCALAR.items():
    converter(*_mx_ops)(_scalar_op(_fc_op, True))
