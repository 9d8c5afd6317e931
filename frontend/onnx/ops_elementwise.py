"""Elementwise ONNX ops: activations, unary math, broadcasting arithmetic, variadic ops, Clip,
Cast, Identity/Dropout and the ReduceX family.

Broadcasting is numpy's from opset 7 on (the only opsets fc imports), which is fc's too, so
most of these map one to one. Constant operands become weights.
"""

from __future__ import annotations

import numpy as np

from fc.frontend.onnx.context import ConvertContext, onnx_dtype_name
from fc.frontend.onnx.registry import converter
from fc.ir.core import Value
from fc.ir.schema import FLT_MAX
from fc.ir.schemas.elementwise import DTYPES

__all__: list[str] = []


def _unary(op: str):  # type: ignore[no-untyped-def]
    def convert(ctx: ConvertContext) -> Value:
        return ctx.add_node(op, [ctx.value(0)]).output

    return convert


for _op, _since in {
    "Relu": 6, "Sigmoid": 6, "Tanh": 6, "Exp": 6, "Log": 6, "Sqrt": 6, "Abs": 6, "Neg": 6,
    "Reciprocal": 6, "Erf": 9, "HardSwish": 14, "Identity": 1,
}.items():
    converter(_op, since=_since)(_unary(_op))


@converter("LeakyRelu", since=6)
def leaky_relu(ctx: ConvertContext) -> Value:
    return ctx.add_node("LeakyRelu", [ctx.value(0)], {"alpha": ctx.attrs.float("alpha", 0.01)}).output


@converter("Elu", since=6)
def elu(ctx: ConvertContext) -> Value:
    return ctx.add_node("Elu", [ctx.value(0)], {"alpha": ctx.attrs.float("alpha", 1.0)}).output


@converter("HardSigmoid", since=6)
def hard_sigmoid(ctx: ConvertContext) -> Value:
    return ctx.add_node("HardSigmoid", [ctx.value(0)], {"alpha": ctx.attrs.float("alpha", 0.2),
                                                        "beta": ctx.attrs.float("beta", 0.5)}).output


@converter("Gelu", since=20)
def gelu(ctx: ConvertContext) -> Value:
    return ctx.add_node("Gelu", [ctx.value(0)],
                        {"approximate": ctx.attrs.str("approximate", "none")}).output


@converter("PRelu", since=7)
def prelu(ctx: ConvertContext) -> Value:
    return ctx.add_node("PRelu", [ctx.value(0), ctx.value(1)]).output


def _binary(op: str):  # type: ignore[no-untyped-def]
    def convert(ctx: ConvertContext) -> Value:
        return ctx.add_node(op, [ctx.value(0), ctx.value(1)]).output

    return convert


for _op in ("Add", "Sub", "Mul", "Div"):
    converter(_op, since=7)(_binary(_op))


@converter("Pow", since=7)
def pow_(ctx: ConvertContext) -> Value:
    # From opset 12 the exponent may have another type than the base; fc's Pow takes one
    # dtype, so a constant exponent is cast to the base's.
    base = ctx.value(0)
    if ctx.is_const(1) and ctx.dtype(1) != base.dtype:
        exponent = ctx.const_value(ctx.const(1).astype(base.dtype), ctx.input_name(1))
    else:
        exponent = ctx.value(1)
    return ctx.add_node("Pow", [base, exponent]).output


def _variadic(op: str):  # type: ignore[no-untyped-def]
    def convert(ctx: ConvertContext) -> Value:
        return ctx.add_node(op, [ctx.value(i) for i in range(ctx.num_inputs)]).output

    return convert


for _op in ("Sum", "Mean", "Max", "Min"):
    converter(_op, since=6)(_variadic(_op))


@converter("Clip", since=6, until=10)
def clip_6(ctx: ConvertContext) -> Value:
    return ctx.add_node("Clip", [ctx.value(0)], {"min": ctx.attrs.float("min", -FLT_MAX),
                                                 "max": ctx.attrs.float("max", FLT_MAX)}).output


@converter("Clip", since=11)
def clip_11(ctx: ConvertContext) -> Value:
    bounds = {}
    for i, key, default in ((1, "min", -FLT_MAX), (2, "max", FLT_MAX)):
        arr = ctx.const_or_none(i, key)
        if arr is not None and arr.size != 1:
            raise ctx.error(f"input {i} ({key}) must be a scalar, got shape {list(arr.shape)}")
        # +-inf (and anything beyond float32) saturates to the float32 range
        bounds[key] = default if arr is None else float(np.clip(arr.reshape(()), -FLT_MAX, FLT_MAX))
    return ctx.add_node("Clip", [ctx.value(0)], bounds).output


def _cast_to(ctx: ConvertContext) -> str:
    return onnx_dtype_name(ctx.attrs.int("to"), ctx.where)


def _cast_check(ctx: ConvertContext) -> str | None:
    to = _cast_to(ctx)
    return None if to in DTYPES else f"to={to}"


@converter("Cast", since=6, check=_cast_check)
def cast(ctx: ConvertContext) -> Value:
    to = _cast_to(ctx)
    return ctx.add_node("Cast", [ctx.value(0)], {"to": to}).output


def _dropout_check(ctx: ConvertContext) -> str | None:
    # Inference only: the mask is never produced, training mode is refused.
    if ctx.opset >= 12:
        training = ctx.known_const(2)
        if training is not None and training.size == 1 and bool(training.reshape(())):
            return "training_mode=True"
    return ctx.outputs_used_reason(1, "mask output")


@converter("Dropout", since=7, check=_dropout_check)
def dropout(ctx: ConvertContext) -> Value:
    # The ratio (an input from opset 12) is kept as an attribute when it is a constant and
    # dropped otherwise (it has no effect at inference).
    if ctx.opset >= 12:
        ratio_arr = ctx.known_const(1)
        ratio = 0.5 if ratio_arr is None or ratio_arr.size != 1 else ratio_arr.reshape(())
    else:
        ratio = ctx.attrs.float("ratio", 0.5)
    return ctx.add_node("Dropout", [ctx.value(0)], {"ratio": float(ratio)}).output


def _reduce(op: str, input_since: int):  # type: ignore[no-untyped-def]
    """ReduceX: ``axes`` is an attribute before opset ``input_since`` and an optional constant
    input from it (with ``noop_with_empty_axes``: no axes -> identity)."""

    def convert(ctx: ConvertContext) -> Value:
        if ctx.opset >= input_since:
            axes = ctx.const_ints_or_none(1, "axes") or ()
            if not axes and ctx.attrs.int("noop_with_empty_axes", 0):
                return ctx.add_node("Identity", [ctx.value(0)]).output
        else:
            axes = ctx.attrs.ints("axes", ())
        return ctx.add_node(op, [ctx.value(0)], {"axes": axes,
                                                 "keepdims": ctx.attrs.int("keepdims", 1)}).output

    return convert


converter("ReduceSum", since=1)(_reduce("ReduceSum", 13))
converter("ReduceMean", since=1)(_reduce("ReduceMean", 18))
converter("ReduceMax", since=1)(_reduce("ReduceMax", 18))
