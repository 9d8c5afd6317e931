"""Constants and the shape arithmetic that only ever runs at import.

fc's IR has static shapes, so Constant, ConstantOfShape, Shape/Size of a value (whose shape is
static) and the integer/boolean ops exported models use to compute shapes (Range, Equal,
Where, Expand, integer Div, ...) are evaluated here with numpy and become constants. These
ops have no converter: a Range or Expand on a run-time tensor is an unsupported op. Folding
of ops that fc does have (Gather, Concat, Unsqueeze, float Mul, ...) goes through their
converter and fc's own kernels instead (see ``importer._fold``).
"""

from __future__ import annotations

import numpy as np

from fc.frontend.onnx.context import ConvertContext, onnx_dtype_name
from fc.frontend.onnx.registry import folder
from fc.limits import check_tensor

__all__: list[str] = []

Arrays = list[np.ndarray] | None


def _room(ctx: ConvertContext, shape: tuple[int, ...], dtype: np.dtype | str) -> tuple[int, ...]:
    """Refuse (before numpy allocates it) an output above ``fc.limits``: these folders make
    tensors far larger than the file (a 137-byte ConstantOfShape can ask for gigabytes)."""
    if any(d < 0 for d in shape):
        raise ctx.error(f"output shape {list(shape)} has a negative dim")
    check_tensor(shape, dtype, f"{ctx.where}: its folded output")
    return shape


@folder("Constant")
def constant(ctx: ConvertContext) -> Arrays:
    a = ctx.attrs
    if a.has("value"):
        return [a.tensor("value")]
    if a.has("value_float"):
        return [np.array(a.float("value_float"), np.float32)]
    if a.has("value_floats"):
        return [np.array(a.floats("value_floats"), np.float32)]
    if a.has("value_int"):
        return [np.array(a.int("value_int"), np.int64)]
    if a.has("value_ints"):
        return [np.array(a.ints("value_ints"), np.int64)]
    kinds = sorted(a.names())
    raise ctx.error(f"constant kind {kinds} is not supported (fc reads value, value_float(s), "
                    "value_int(s))")


@folder("ConstantOfShape", since=9)
def constant_of_shape(ctx: ConvertContext) -> Arrays:
    shape = ctx.const_ints(0, "shape")
    value = ctx.attrs.tensor("value", None)
    fill = np.zeros(1, np.float32) if value is None else value.reshape(-1)
    if fill.size != 1:
        raise ctx.error(f"attribute 'value' must hold one element, got {fill.size}")
    return [np.full(_room(ctx, shape, fill.dtype), fill[0], dtype=fill.dtype)]


@folder("Shape")
def shape(ctx: ConvertContext) -> Arrays:
    dims = ctx.shape(0)
    start, end = ctx.attrs.int("start", 0), ctx.attrs.int("end", None)
    return [np.array(dims[start:end], np.int64)]


@folder("Size")
def size(ctx: ConvertContext) -> Arrays:
    return [np.array(int(np.prod(ctx.shape(0))), np.int64)]


@folder("Cast", since=6)
def cast(ctx: ConvertContext) -> Arrays:
    to = onnx_dtype_name(ctx.attrs.int("to"), ctx.where)
    return [ctx.const(0).astype(to)]


@folder("Range", since=11)
def range_(ctx: ConvertContext) -> Arrays:
    start, limit, delta = (ctx.const(i).reshape(()) for i in range(3))
    if delta == 0:
        raise ctx.error("delta is 0")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    _room(ctx, (count,), start.dtype)
    return [np.arange(start, limit, delta).astype(start.dtype)]


def _elementwise(fn):  # type: ignore[no-untyped-def]
    def fold(ctx: ConvertContext) -> Arrays:
        args = [ctx.const(i) for i in range(ctx.num_inputs)]
        if fn is np.tile:
            reps = ctx.const_ints(1, "repeats")
            if len(reps) != args[0].ndim:
                raise ctx.error(f"repeats {list(reps)} need {args[0].ndim} values")
            _room(ctx, tuple(d * r for d, r in zip(args[0].shape, reps)), args[0].dtype)
        else:
            _room(ctx, np.broadcast_shapes(*(a.shape for a in args)),
                  np.result_type(*args) if args else np.float32)
        return [np.asarray(fn(*args))]

    return fold


for _op, _fn in {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
    "Not": np.logical_not,
    "Where": np.where,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": np.round,  # round half to even, as ONNX
    "Tile": np.tile,
}.items():
    folder(_op, since=7)(_elementwise(_fn))
folder("LessOrEqual", since=12)(_elementwise(np.less_equal))
folder("GreaterOrEqual", since=12)(_elementwise(np.greater_equal))
folder("NonZero", since=9)(_elementwise(lambda x: np.array(np.nonzero(x), np.int64)))


@folder("Expand", since=8)
def expand(ctx: ConvertContext) -> Arrays:
    x = ctx.const(0)
    target = ctx.const_ints(1, "shape")
    shape = _room(ctx, np.broadcast_shapes(x.shape, target), x.dtype)
    return [np.broadcast_to(x, shape).copy()]


def _int_binary(fn):  # type: ignore[no-untyped-def]
    """Integer arithmetic in numpy; float operands go to fc's kernels (return None)."""

    def fold(ctx: ConvertContext) -> Arrays:
        a, b = ctx.const(0), ctx.const(1)
        if a.dtype.kind not in "iub" or b.dtype.kind not in "iub":
            return None
        _room(ctx, np.broadcast_shapes(a.shape, b.shape), a.dtype)
        if fn is _trunc_div and not np.all(b):
            raise ctx.error("integer division by zero")
        with np.errstate(over="ignore"):  # integer overflow wraps, as in ONNX runtimes
            return [np.asarray(fn(a, b)).astype(a.dtype)]

    return fold


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # ONNX integer Div truncates toward zero (C semantics); numpy's // floors.
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


folder("Add", since=7)(_int_binary(np.add))
folder("Sub", since=7)(_int_binary(np.subtract))
folder("Mul", since=7)(_int_binary(np.multiply))
folder("Div", since=7)(_int_binary(_trunc_div))


@folder("Mod", since=10)
def mod(ctx: ConvertContext) -> Arrays:
    a, b = ctx.const(0), ctx.const(1)
    _room(ctx, np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    if a.dtype.kind in "iu" and not np.all(b):
        raise ctx.error("integer modulo by zero")
    with np.errstate(all="ignore"):  # float x mod 0 is NaN, as in ONNX runtimes
        return [np.fmod(a, b) if ctx.attrs.int("fmod", 0) else np.mod(a, b)]


def _reduce_axes(ctx: ConvertContext, input_since: int) -> tuple[int, ...] | None:
    """ReduceX axes: an attribute before opset ``input_since``, an optional input from it;
    ``None`` means all axes (or none, with noop_with_empty_axes)."""
    if ctx.opset >= input_since:
        return ctx.const_ints_or_none(1, "axes") or None
    return ctx.attrs.ints("axes", None)


def _reduce(fn, input_since: int):  # type: ignore[no-untyped-def]
    def fold(ctx: ConvertContext) -> Arrays:
        x = ctx.const(0)
        axes = _reduce_axes(ctx, input_since)
        if axes is None and ctx.attrs.int("noop_with_empty_axes", 0):
            return [x]
        return [np.asarray(fn(x, axis=axes, keepdims=bool(ctx.attrs.int("keepdims", 1))))
                .astype(x.dtype)]

    return fold


folder("ReduceProd", since=7)(_reduce(np.prod, 18))
folder("ReduceMin", since=7)(_reduce(np.min, 18))
