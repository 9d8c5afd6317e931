"""TensorFlow elementwise ops, activations and reductions.

They run on TF's tensors as they are (channels-last included); the layout pass moves the
Transposes of the neighbouring layers through them. Ops fc has no single node for are
written out exactly: ``Rsqrt = 1/sqrt``, ``Square = x*x``,
``SquaredDifference = (a-b)*(a-b)``, ``Relu6 = Clip(0, 6)``, ``Selu = scale * Elu(alpha)``,
``Erfc = 1 - Erf``. The last op of a Keras layer's pattern (batch norm, layer norm, GELU,
swish, hard swish: ``patterns.py``) emits the layer instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fc.frontend.tf import patterns
from fc.frontend.tf.context import NCHW_TO_NHWC, GraphView, TFContext
from fc.frontend.tf.registry import converter
from fc.ir.core import Value

__all__: list[str] = []

# Keras' SELU constants (TF's selu kernel uses the same)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# -- pass-through ----------------------------------------------------------------------------
@converter("Identity", "StopGradient", "Snapshot", "PreventGradient", "PlaceholderWithDefault",
           "ReadVariableOp", "EnsureShape", "CheckNumerics")
def identity(ctx: TFContext) -> Value:
    """The same fc value: these ops only name, guard or stop gradients."""
    return ctx.value(0)


@converter("IdentityN")
def identity_n(ctx: TFContext) -> list[Value | None]:
    """Custom gradients (Keras' swish) wrap their outputs in IdentityN: pass each through."""
    return [ctx.value(i) for i in range(ctx.num_inputs)]


# -- unary -----------------------------------------------------------------------------------
_UNARY = {
    "Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log",
    "Sqrt": "Sqrt", "Abs": "Abs", "Neg": "Neg", "Erf": "Erf", "Reciprocal": "Reciprocal",
    "Inv": "Reciprocal",
}


def _unary(op: str) -> Callable[[TFContext], Value]:
    def convert(ctx: TFContext) -> Value:
        return ctx.add_node(op, [ctx.value(0)]).output

    convert.__name__ = op.lower()
    return convert


for _tf_op, _op in _UNARY.items():
    converter(_tf_op)(_unary(_op))


@converter("Relu6")
def relu6(ctx: TFContext) -> Value:
    return ctx.add_node("Clip", [ctx.value(0)], {"min": 0.0, "max": 6.0}).output


@converter("LeakyRelu")
def leaky_relu(ctx: TFContext) -> Value:
    return ctx.add_node("LeakyRelu", [ctx.value(0)], {"alpha": ctx.attrs.float("alpha", 0.2)}).output


@converter("Elu")
def elu(ctx: TFContext) -> Value:
    return ctx.add_node("Elu", [ctx.value(0)], {"alpha": 1.0}).output


@converter("Selu")
def selu(ctx: TFContext) -> Value:
    e = ctx.add_node("Elu", [ctx.value(0)], {"alpha": SELU_ALPHA}, suffix="elu", final=False)
    scale = ctx.const_value(np.asarray(SELU_SCALE, np.dtype(ctx.dtype(0))), f"{ctx.name}_scale")
    return ctx.add_node("Mul", [e.output, scale]).output


@converter("Rsqrt")
def rsqrt(ctx: TFContext) -> Value:
    s = ctx.add_node("Sqrt", [ctx.value(0)], suffix="sqrt", final=False)
    return ctx.add_node("Reciprocal", [s.output]).output


@converter("Square")
def square(ctx: TFContext) -> Value:
    x = ctx.value(0)
    return ctx.add_node("Mul", [x, x]).output


@converter("Erfc")
def erfc(ctx: TFContext) -> Value:
    e = ctx.add_node("Erf", [ctx.value(0)], suffix="erf", final=False)
    one = ctx.const_value(np.asarray(1.0, np.dtype(ctx.dtype(0))), f"{ctx.name}_one")
    return ctx.add_node("Sub", [one, e.output]).output


@converter("Softmax")
def softmax(ctx: TFContext) -> Value:
    return ctx.add_node("Softmax", [ctx.value(0)], {"axis": -1}).output


@converter("LogSoftmax")
def log_softmax(ctx: TFContext) -> Value:
    return ctx.add_node("LogSoftmax", [ctx.value(0)], {"axis": -1}).output


def _cast_check(ctx: TFContext) -> str | None:
    from fc.ir.schemas.elementwise import DTYPES

    to = ctx.attrs.str("DstT")
    return None if to in DTYPES else f"DstT={to}"


@converter("Cast", check=_cast_check)
def cast(ctx: TFContext) -> Value:
    return ctx.add_node("Cast", [ctx.value(0)], {"to": ctx.attrs.str("DstT")}).output


# -- binary ----------------------------------------------------------------------------------
def _scalar(ctx: TFContext, i: int) -> float | None:
    c = ctx.known_const(i)
    return float(c.ravel()[0]) if c is not None and c.size == 1 else None


def _is_identity_operand(ctx: TFContext, i: int, neutral: float) -> bool:
    """Input ``i`` is a scalar constant ``neutral`` that leaves the other one unchanged
    (Keras' swish multiplies by beta = 1.0 first) without broadcasting it."""
    if _scalar(ctx, i) != neutral or ctx.known_const(1 - i) is not None:
        return False
    c = ctx.known_const(i)
    other = ctx.shape(1 - i)
    return c.ndim <= len(other) and c.dtype.name == ctx.dtype(1 - i)


def _binary(op: str) -> Callable[[TFContext], Value]:
    def convert(ctx: TFContext) -> Value:
        return ctx.add_node(op, [ctx.value(0), ctx.value(1)]).output

    convert.__name__ = op.lower()
    return convert


converter("Sub")(_binary("Sub"))
converter("Maximum")(_binary("Max"))
converter("Minimum")(_binary("Min"))
converter("Pow")(_binary("Pow"))


@converter("AddV2", "Add")
def add(ctx: TFContext) -> Value:
    found = patterns.batch_norm(ctx) or patterns.layer_norm(ctx)
    if found is not None:
        return found
    return ctx.add_node("Add", [ctx.value(0), ctx.value(1)]).output


@converter("Mul")
def mul(ctx: TFContext) -> Value:
    for i in (0, 1):
        if _is_identity_operand(ctx, i, 1.0):
            return ctx.value(1 - i)
    found = patterns.gelu(ctx)
    if found is not None:
        return found
    a, b = ctx.value(0), ctx.value(1)
    for i, other in ((1, a), (0, b)):
        k = _scalar(ctx, i)
        if k is not None and k != 0:  # x * (1/6): a hard sigmoid or hard swish
            found = patterns.hard_sigmoid(ctx, other, 1.0 / k) or \
                patterns.hard_swish_scaled(ctx, other, 1.0 / k, ctx.input_name(1 - i))
            if found is not None:
                return found
    found = patterns.silu(ctx, a, b) or patterns.hard_swish(ctx, a, b)
    if found is not None:
        return found
    return ctx.add_node("Mul", [a, b]).output


def _div_check(ctx: TFContext) -> str | None:
    dtype = ctx.attrs.str("T", "float32")
    return None if np.dtype(dtype).kind == "f" else f"{dtype} division"


@converter("RealDiv", "Div", check=_div_check)
def div(ctx: TFContext) -> Value:
    k = _scalar(ctx, 1)
    if k is not None:
        found = patterns.hard_sigmoid(ctx, ctx.value(0), k) or \
            patterns.hard_swish_scaled(ctx, ctx.value(0), k, ctx.input_name(0))
        if found is not None:
            return found
    return ctx.add_node("Div", [ctx.value(0), ctx.value(1)]).output


@converter("SquaredDifference")
def squared_difference(ctx: TFContext) -> Value:
    d = ctx.add_node("Sub", [ctx.value(0), ctx.value(1)], suffix="diff", final=False).output
    return ctx.add_node("Mul", [d, d]).output


def _absorbing_layer(ctx: TFContext, v: Value) -> Any:
    """The Conv/ConvTranspose/Gemm without bias whose output ``v`` is (directly, or through
    the NHWC Transpose of its converter), when only this node reads it: it takes the bias."""
    src = ctx.producer(0)
    if src is None or ctx.view.only_reader(src.name) != ctx.name or v.uses:
        return None
    node = v.producer
    if node is not None and node.op_type == "Transpose" and node.attrs["perm"] == NCHW_TO_NHWC:
        inner = node.inputs[0]
        if len(inner.uses) == 1:
            node = inner.producer
    if node is None or (len(node.inputs) > 2 and node.inputs[2] is not None):
        return None
    if node.op_type in ("Conv", "ConvTranspose") or (
            node.op_type == "Gemm" and node.attrs["beta"] == 1.0 and not node.attrs["activation"]):
        return node
    return None


@converter("BiasAdd", "BiasAddV1")
def bias_add(ctx: TFContext) -> Value:
    """Add along the channel axis (the last, or axis 1 for NCHW). A bias after a layer that
    has none becomes the layer's (Keras' Conv2D and Dense trace as the op, then BiasAdd)."""
    x = ctx.value(0)
    if ctx.is_const(1):
        layer = _absorbing_layer(ctx, x)
        bias = ctx.const(1, "bias")
        if layer is not None and bias.shape == (layer.output.shape[1],) and \
                bias.dtype.name == layer.output.dtype:
            layer.set_inputs([*layer.inputs[:2], ctx.value(1)])
            layer.add_provenance([ctx.name])
            return x
    b = ctx.value(1)
    if ctx.data_format() == "NCHW" and ctx.rank(0) > 2:
        c = ctx.const(1, "bias")
        b = ctx.const_value(c.reshape((-1,) + (1,) * (ctx.rank(0) - 2)), ctx.weight_name(1))
    return ctx.add_node("Add", [x, b]).output


@converter("AddN")
def add_n(ctx: TFContext) -> Value:
    acc = ctx.value(0)
    for i in range(1, ctx.num_inputs):
        last = i == ctx.num_inputs - 1
        acc = ctx.add_node("Add", [acc, ctx.value(i)], final=last,
                           suffix="" if last else f"add{i}").output
    return acc if ctx.num_inputs > 1 else ctx.add_node("Identity", [acc]).output


# -- reductions ------------------------------------------------------------------------------
_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax"}


def _reduce(op: str) -> Callable[[TFContext], Value]:
    def convert(ctx: TFContext) -> Value:
        axes = tuple(int(a) for a in np.ravel(ctx.const(1, "reduction_indices")))
        rank = ctx.rank(0)
        keep = ctx.attrs.bool("keep_dims", False)
        if not axes:  # reducing no axis is the identity in TF (the IR's () means all)
            return ctx.add_node("Identity", [ctx.value(0)]).output
        return ctx.add_node(op, [ctx.value(0)], {"axes": tuple(sorted(a % rank for a in axes)),
                                                 "keepdims": int(keep)}).output

    convert.__name__ = op.lower()
    return convert


for _tf_op, _op in _REDUCE.items():
    converter(_tf_op)(_reduce(_op))



# -- ELU with alpha != 1, as Keras writes it: where(x > 0, elu(x), alpha * elu(x)) ----------
def _elu_select(ctx: TFContext, node: Any) -> float | None:
    """alpha of ``SelectV2(Greater(x, 0), Elu(x), Mul(alpha, Elu(x)))``, else ``None``."""
    view = ctx.view
    if len(GraphView.data_inputs(node)) != 3:
        return None
    cond, then, other = (view.producer(t) for t in GraphView.data_inputs(node))
    if cond is None or then is None or other is None or cond.op != "Greater" \
            or then.op != "Elu" or other.op != "Mul":
        return None
    x_t, zero_t = GraphView.data_inputs(cond)
    zero = view.const_of(zero_t)
    if zero is None or zero.size != 1 or float(zero.ravel()[0]) != 0.0:
        return None
    if GraphView.data_inputs(then)[0] != x_t:
        return None
    a, b = GraphView.data_inputs(other)
    elu_t = f"{then.name}:0"
    alpha = view.const_of(a if b == elu_t else b)
    if elu_t not in (a, b) or alpha is None or alpha.size != 1:
        return None
    return float(alpha.ravel()[0])


def _select_check(ctx: TFContext) -> str | None:
    return None if _elu_select(ctx, ctx.node) is not None else "outside an ELU"


@converter("SelectV2", "Select", check=_select_check)
def select(ctx: TFContext) -> Value:
    alpha = _elu_select(ctx, ctx.node)
    elu = ctx.producer(1)
    x = ctx.view.env[GraphView.data_inputs(elu)[0]]
    return ctx.add_node("Elu", [x], {"alpha": alpha}).output


def _greater_check(ctx: TFContext) -> str | None:
    readers = ctx.view.readers.get(ctx.name, [])
    ok = readers and all(r in ctx.view.nodes and _elu_select(ctx, ctx.view.nodes[r]) is not None
                         for r in readers)
    return None if ok else "outside an ELU"


@converter("Greater", check=_greater_check)
def greater(ctx: TFContext) -> Value:
    """Only an ELU's condition, which the select replaces: this stands in, unread."""
    return ctx.add_node("Identity", [ctx.value(0)]).output
