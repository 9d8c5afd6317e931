"""Elementwise ops, activations, reductions, Cast and the inference no-ops as torch calls.

Binary ops use the Python operators (``a + b`` in the generated source); the residual Add
carries a fused activation. Dropout is an ``nn.Dropout`` layer, so a reconstructed model
trains with the dropout its source had.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import reduce

import torch
import torch.fx as fx
from torch import nn

from fc.ir.activations import ACTIVATIONS, fused_form
from fc.ir.core import Value
from fc.reconstruct.torch.activations import apply_activation
from fc.reconstruct.torch.builder import Builder, torch_dtype
from fc.reconstruct.torch.registry import LOWERINGS

__all__: list[str] = []

_UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Abs": torch.abs, "Neg": torch.neg,
    "Erf": torch.erf, "Reciprocal": torch.reciprocal,
}


def _unary(fn: Callable[..., torch.Tensor]) -> Callable[..., fx.Node]:
    def lower(b: Builder, x: Value) -> fx.Node:
        return b.call(fn, x)

    lower.__name__ = f"lower_{fn.__name__}"
    return lower


for _op, _fn in _UNARY.items():
    LOWERINGS.register(_op)(_unary(_fn))


def _activation_op(op_type: str) -> Callable[..., fx.Node]:
    def lower(b: Builder, x: Value, **attrs) -> fx.Node:
        name, alpha, beta = fused_form(op_type, attrs)
        return apply_activation(b, b.arg(x), name, alpha, beta)

    lower.__name__ = f"lower_{op_type.lower()}"
    return lower


# every standalone activation op of the table, through its fused form's torch call
for _entry in ACTIVATIONS.values():
    LOWERINGS.register(_entry.op_type)(_activation_op(_entry.op_type))


@LOWERINGS.register("PRelu")
def prelu(b: Builder, x: Value, slope: Value) -> fx.Node:
    rank, c = len(x.shape), x.shape[1] if len(x.shape) > 1 else 1
    per_channel = slope.shape in ((c,) + (1,) * (rank - 2), (c,) * (rank == 2))
    if slope.const is not None and (slope.const.size == 1 or per_channel):
        return b.layer(nn.PReLU, dict(num_parameters=int(slope.const.size)), [x],
                       params={"weight": slope})
    xs = b.arg(x)
    return b.call(torch.where, b.call(operator.ge, xs, 0), xs, b.call(operator.mul, xs, slope))


_BINARY = {"Sub": operator.sub, "Mul": operator.mul, "Div": operator.truediv, "Pow": torch.pow}

for _op, _fn in _BINARY.items():
    def _binary(b: Builder, x: Value, y: Value, _fn=_fn) -> fx.Node:
        return b.call(_fn, x, y)

    LOWERINGS.register(_op)(_binary)


@LOWERINGS.register("Add")
def add(b: Builder, x: Value, y: Value, *, activation: str, act_alpha, act_beta) -> fx.Node:
    return apply_activation(b, b.call(operator.add, x, y), activation, act_alpha, act_beta)


_VARIADIC = {"Max": torch.maximum, "Min": torch.minimum, "Sum": operator.add, "Mean": operator.add}


def _variadic(op: str) -> Callable[..., fx.Node]:
    def lower(b: Builder, *xs: Value) -> fx.Node:
        fn = _VARIADIC[op]
        y = b.arg(xs[0]) if len(xs) == 1 else reduce(lambda acc, v: b.call(fn, acc, v), xs)
        return b.call(operator.truediv, y, float(len(xs))) if op == "Mean" else y

    return lower


for _op in _VARIADIC:
    LOWERINGS.register(_op)(_variadic(_op))

_REDUCE = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax}


def _reduce(fn: Callable[..., torch.Tensor]) -> Callable[..., fx.Node]:
    def lower(b: Builder, x: Value, *, axes, keepdims) -> fx.Node:
        dims = tuple(axes) if axes else tuple(range(len(x.shape)))
        return b.call(fn, x, dims, keepdim=bool(keepdims))

    return lower


for _op, _fn in _REDUCE.items():
    LOWERINGS.register(_op)(_reduce(_fn))


@LOWERINGS.register("Cast")
def cast(b: Builder, x: Value, *, to) -> fx.Node:
    return b.method("to", x, torch_dtype(to))


@LOWERINGS.register("Identity")
def identity(b: Builder, x: Value) -> fx.Node:
    return b.arg(x)


@LOWERINGS.register("Dropout")
def dropout(b: Builder, x: Value, *, ratio) -> fx.Node:
    return b.layer(nn.Dropout, dict(p=ratio), [x])
