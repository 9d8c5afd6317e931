"""Activations, arithmetic, casts and the pass-through ops (clone, contiguous, dropout).

A Python number among a binary op's arguments becomes a 0-d constant of the tensor's dtype
(torch computes ``x + 3`` in x's dtype too). relu6 and hardtanh are Clip; hardsigmoid is
HardSigmoid with torch's slope 1/6 and offset 1/2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fc.frontend.torch.context import AtenContext
from fc.frontend.torch.registry import converter
from fc.ir.core import Value
from fc.ir.schema import FLT_MAX

__all__: list[str] = []

_UNARY = {
    "aten.relu.default": "Relu", "aten.sigmoid.default": "Sigmoid", "aten.tanh.default": "Tanh",
    "aten.silu.default": "SiLU", "aten.hardswish.default": "HardSwish",
    "aten.exp.default": "Exp", "aten.log.default": "Log", "aten.sqrt.default": "Sqrt",
    "aten.abs.default": "Abs", "aten.neg.default": "Neg", "aten.erf.default": "Erf",
    "aten.reciprocal.default": "Reciprocal",
}


def _unary(op: str) -> Callable[[AtenContext], Value]:
    def convert(ctx: AtenContext) -> Value:
        return ctx.emit(op, [ctx.value(0)])

    convert.__name__ = f"convert_{op.lower()}"
    return convert


for _aten, _op in _UNARY.items():
    converter(_aten)(_unary(_op))


@converter("aten.rsqrt.default")
def rsqrt(ctx: AtenContext) -> Value:
    return ctx.emit("Reciprocal", [ctx.helper("Sqrt", [ctx.value(0)], suffix="sqrt")])


@converter("aten.gelu.default")
def gelu(ctx: AtenContext) -> Value:
    return ctx.emit("Gelu", [ctx.value(0)], {"approximate": ctx.attrs.str(1, "none")})


@converter("aten.hardsigmoid.default")
def hardsigmoid(ctx: AtenContext) -> Value:
    return ctx.emit("HardSigmoid", [ctx.value(0)], {"alpha": 1.0 / 6.0, "beta": 0.5})


@converter("aten.leaky_relu.default")
def leaky_relu(ctx: AtenContext) -> Value:
    return ctx.emit("LeakyRelu", [ctx.value(0)], {"alpha": float(ctx.scalar(1))})


def _check_elu(ctx: AtenContext) -> str | None:
    if ctx.scalar(2) != 1 or ctx.scalar(3) != 1:
        return f"scale={ctx.scalar(2)}, input_scale={ctx.scalar(3)}"
    return None


@converter("aten.elu.default", check=_check_elu)
def elu(ctx: AtenContext) -> Value:
    return ctx.emit("Elu", [ctx.value(0)], {"alpha": float(ctx.scalar(1))})


def _clip(ctx: AtenContext, lo: float | None, hi: float | None) -> Value:
    return ctx.emit("Clip", [ctx.value(0)], {"min": -FLT_MAX if lo is None else float(lo),
                                             "max": FLT_MAX if hi is None else float(hi)})


@converter("aten.hardtanh.default", "aten.clamp.default")
def clamp(ctx: AtenContext) -> Value:
    return _clip(ctx, ctx.scalar(1), ctx.scalar(2))


@converter("aten.clamp_min.default")
def clamp_min(ctx: AtenContext) -> Value:
    return _clip(ctx, ctx.scalar(1), None)


@converter("aten.clamp_max.default")
def clamp_max(ctx: AtenContext) -> Value:
    return _clip(ctx, None, ctx.scalar(1))


@converter("aten.prelu.default")
def prelu(ctx: AtenContext) -> Value:
    """The slope (C,) viewed as (C, 1, ..., 1), so it broadcasts over axis 1."""
    rank = ctx.rank(0)
    slope = ctx.value(1)
    if slope.shape is not None and len(slope.shape) == 1 and slope.shape[0] > 1 and rank > 2:
        shape = (slope.shape[0],) + (1,) * (rank - 2)
        if slope.is_const:
            slope = ctx.const_value(slope.const.reshape(shape), ctx._weight_key(1)[1])
        else:
            slope = ctx.helper("Reshape", [slope], {"shape": shape}, suffix="slope")
    return ctx.emit("PRelu", [ctx.value(0), slope])


# -- binary -----------------------------------------------------------------------------------

def _operand(ctx: AtenContext, i: int, like: str) -> Value:
    """Tensor argument ``i``, or the Python number there as a 0-d constant of ``like``."""
    if ctx.has_input(i):
        return ctx.value(i)
    return ctx.const_value(np.array(ctx.scalar(i), dtype=like), f"{ctx.node.name}_scalar{i}")


def _dtype(ctx: AtenContext) -> str:
    for i in (0, 1):
        if ctx.has_input(i):
            return ctx.dtype(i)
    raise ctx.error("no tensor argument")


def _binary(op: str, has_alpha: bool) -> Callable[[AtenContext], Value]:
    def convert(ctx: AtenContext) -> Value:
        dt = _dtype(ctx)
        a, b = _operand(ctx, 0, dt), _operand(ctx, 1, dt)
        if has_alpha and ctx.scalar(2) not in (None, 1):
            alpha = ctx.const_value(np.array(ctx.scalar(2), dtype=dt), f"{ctx.node.name}_alpha")
            b = ctx.helper("Mul", [b, alpha], suffix="alpha")
        return ctx.emit(op, [a, b])

    convert.__name__ = f"convert_{op.lower()}"
    return convert


converter("aten.add.Tensor", "aten.add.Scalar")(_binary("Add", True))
converter("aten.sub.Tensor", "aten.sub.Scalar")(_binary("Sub", True))
converter("aten.mul.Tensor", "aten.mul.Scalar")(_binary("Mul", False))
converter("aten.div.Tensor", "aten.div.Scalar")(_binary("Div", False))
converter("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")(
    _binary("Pow", False))
converter("aten.maximum.default")(_binary("Max", False))
converter("aten.minimum.default")(_binary("Min", False))


def _check_div_mode(ctx: AtenContext) -> str | None:
    mode = ctx.attrs.str("rounding_mode", None)
    return f"rounding_mode={mode}" if mode is not None else None


@converter("aten.div.Tensor_mode", check=_check_div_mode)
def div_mode(ctx: AtenContext) -> Value:
    dt = _dtype(ctx)
    return ctx.emit("Div", [_operand(ctx, 0, dt), _operand(ctx, 1, dt)])


# -- casts and pass-through -------------------------------------------------------------------

_TORCH_DTYPES = {"float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64",
                 "bool"}


def _target_dtype(ctx: AtenContext) -> str | None:
    dt = ctx.attrs.raw("dtype")
    return None if dt is None else str(dt).removeprefix("torch.")


def _check_to_copy(ctx: AtenContext) -> str | None:
    dt = _target_dtype(ctx)
    return f"dtype {dt}" if dt is not None and dt not in _TORCH_DTYPES else None


@converter("aten._to_copy.default", check=_check_to_copy)
def to_copy(ctx: AtenContext) -> Value:
    dt = _target_dtype(ctx)
    if dt is None or dt == ctx.dtype(0):
        return ctx.value(0)
    return ctx.emit("Cast", [ctx.value(0)], {"to": dt})


@converter("aten.clone.default", "aten.alias.default", "aten.contiguous.default",
           "aten.detach.default", "aten.dropout.default", "aten.lift_fresh_copy.default")
def passthrough(ctx: AtenContext) -> Value:
    """Copies and inference no-ops: the input itself (no node)."""
    return ctx.value(0)
