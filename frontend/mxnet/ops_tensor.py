"""Converters of MXNet's data-movement operators: Flatten, Reshape (with mxnet's special
codes), transpose, SwapAxis, Concat, slice, slice_axis, expand_dims, squeeze, Pad, split and
the reductions (mean, sum, max).

Shapes are static in fc's IR, so mxnet's shape codes are resolved at import into a concrete
target; following the batch convention (``fc.ir.schemas.tensor``), a target dim that mxnet
copies from the input's dim 0 is written as 0, and an inferred dim 0 as -1, so a graph
imported at batch 1 runs at other batch sizes as mxnet would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from fc.frontend.mxnet.context import ConvertContext
from fc.frontend.mxnet.registry import converter
from fc.ir.core import Value

__all__ = ["mx_reshape"]


@converter("Flatten", "flatten")
def flatten(ctx: ConvertContext) -> Value:
    return ctx.add_node("Flatten", [ctx.value(0)], {"axis": 1}).output


# -- Reshape ----------------------------------------------------------------------------------

def mx_reshape(in_shape: Sequence[int], codes: Sequence[int], reverse: bool = False
               ) -> tuple[tuple[int, ...], tuple[int | str | None, ...]]:
    """mxnet's ``InferReshapeShape``: resolve the codes against ``in_shape``.

    Codes: ``d > 0`` new dim; ``0`` copy the next input dim; ``-1`` infer (one at most);
    ``-2`` copy all remaining input dims; ``-3`` merge the next two input dims; ``-4 a b``
    split the next input dim into ``a, b`` (one may be -1). With ``reverse`` both lists are
    read right to left. Returns the target shape and, per target dim, its origin: the input
    axis it copies, ``"infer"``, or ``None``. Raises ``ValueError`` with mxnet's complaint.
    """
    dshape, params = list(in_shape), list(codes)
    axes = list(range(len(dshape)))
    if reverse:
        dshape.reverse(), params.reverse(), axes.reverse()
    out: list[int] = []
    origin: list[int | str | None] = []
    src, infer, i = 0, -1, 0
    n = len(dshape)
    while i < len(params):
        d = params[i]
        if d == 0:
            if src >= n:
                raise ValueError(f"code 0 at position {i} has no input dim left to copy")
            out.append(dshape[src]), origin.append(axes[src])
            src += 1
        elif d == -1:
            if infer >= 0:
                raise ValueError("more than one -1 (inferred dim)")
            infer = len(out)
            out.append(1), origin.append("infer")
            src += 1
        elif d == -2:
            while src < n:
                out.append(dshape[src]), origin.append(axes[src])
                src += 1
        elif d == -3:
            if src + 1 >= n:
                raise ValueError(f"code -3 at position {i} needs two input dims left")
            out.append(dshape[src] * dshape[src + 1]), origin.append(None)
            src += 2
        elif d == -4:
            if i + 2 >= len(params) or src >= n:
                raise ValueError(f"code -4 at position {i} needs two values after it and an "
                                 "input dim left")
            d0, d1, d2 = dshape[src], params[i + 1], params[i + 2]
            src += 1
            i += 2
            if d1 == -1 and d2 == -1:
                raise ValueError("code -4: both split dims are -1")
            if d1 == -1:
                d1 = d0 // d2
            if d2 == -1:
                d2 = d0 // d1
            if d1 * d2 != d0 or d1 <= 0 or d2 <= 0:
                raise ValueError(f"code -4 cannot split dim {d0} into {d1} x {d2}")
            out.extend((d1, d2)), origin.extend((None, None))
        elif d > 0:
            out.append(d), origin.append(None)
            src += 1
        else:
            raise ValueError(f"invalid code {d} at position {i}")
        i += 1
    total = math.prod(in_shape)
    if infer >= 0:
        known = math.prod(out)
        if known == 0 or total % known:
            raise ValueError(f"cannot infer the -1 dim: {total} elements over {known}")
        out[infer] = total // known
    if math.prod(out) != total:
        raise ValueError(f"target {out} has {math.prod(out)} elements, input has {total}")
    if reverse:
        out.reverse(), origin.reverse()
    return tuple(out), tuple(origin)


def _reshape_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    return "target_shape (deprecated)" if any(a.ints("target_shape", ())) else None


@converter("Reshape", "reshape", check=_reshape_check)
def reshape(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    in_shape = ctx.shape(0)
    codes = a.ints("shape")
    try:
        target, origin = mx_reshape(in_shape, codes, a.bool("reverse", False))
    except ValueError as e:
        raise ctx.error(f"shape {list(codes)} on input {list(in_shape)}: {e}") from None
    fc_shape = list(target)
    if fc_shape and origin[0] == 0:
        fc_shape[0] = 0  # the batch dim, copied
    elif fc_shape and origin[0] == "infer":
        fc_shape[0] = -1  # inferred from the rest, as mxnet does at any batch size
    return ctx.add_node("Reshape", [ctx.value(0)], {"shape": tuple(fc_shape)}).output


# -- axes -------------------------------------------------------------------------------------

@converter("transpose")
def transpose(ctx: ConvertContext) -> Value:
    return ctx.add_node("Transpose", [ctx.value(0)], {"perm": ctx.attrs.ints("axes", ())}).output


@converter("SwapAxis", "swapaxes")
def swap_axis(ctx: ConvertContext) -> Value:
    rank = ctx.rank(0)
    d1, d2 = ctx.attrs.int("dim1", 0), ctx.attrs.int("dim2", 0)
    perm = list(range(rank))
    try:
        perm[d1], perm[d2] = perm[d2], perm[d1]
    except IndexError:
        raise ctx.error(f"dim1={d1}/dim2={d2} out of range for rank {rank}") from None
    return ctx.add_node("Transpose", [ctx.value(0)], {"perm": tuple(perm)}).output


@converter("expand_dims")
def expand_dims(ctx: ConvertContext) -> Value:
    return ctx.add_node("Unsqueeze", [ctx.value(0)], {"axes": (ctx.attrs.int("axis"),)}).output


@converter("squeeze")
def squeeze(ctx: ConvertContext) -> Value:
    return ctx.add_node("Squeeze", [ctx.value(0)], {"axes": ctx.attrs.ints("axis", ())}).output


@converter("Concat", "concat")
def concat(ctx: ConvertContext) -> Value:
    inputs = [ctx.value(i) for i in range(ctx.num_inputs)]
    return ctx.add_node("Concat", inputs, {"axis": ctx.attrs.int("dim", 1)}).output


# -- slicing ----------------------------------------------------------------------------------

def _slice_node(ctx: ConvertContext, bounds: list[tuple[int, int, int, int]]) -> Value:
    """A Slice over the (axis, begin, end, step) that are not the whole axis (batch-agnostic
    when dim 0 is untouched); an Identity when none is."""
    shape = ctx.shape(0)
    kept = [(ax, b, e, s) for ax, b, e, s in bounds if (b, e, s) != (0, shape[ax], 1)]
    if not kept:
        return ctx.add_node("Identity", [ctx.value(0)]).output
    return ctx.add_node("Slice", [ctx.value(0)], {
        "starts": tuple(b for _, b, _, _ in kept), "ends": tuple(e for _, _, e, _ in kept),
        "axes": tuple(ax for ax, _, _, _ in kept), "steps": tuple(s for _, _, _, s in kept),
    }).output


def _mx_slice_bounds(ctx: ConvertContext, length: int, begin: int | None, end: int | None,
                     step: int, axis: int) -> tuple[int, int, int, int]:
    """mxnet's ``GetIndexRange`` for one axis, as fc Slice (ONNX clamping) bounds."""
    if step == 0:
        raise ctx.error(f"step 0 on axis {axis}")
    b = begin if begin is not None else (length - 1 if step < 0 else 0)
    e = end if end is not None else (-1 if step < 0 else length)
    if b < 0:
        b += length
    if e < 0 and end is not None:
        e += length
    b = 0 if (b < 0 and step > 0) else b
    b = length - 1 if (b > length - 1 and step < 0) else b
    if b < 0 or b > length - 1:
        raise ctx.error(f"begin {begin} out of range for axis {axis} of size {length}")
    e = min(max(e, -1), length)
    if e == -1:
        e = -length - 1  # "before index 0": ONNX needs an end below -dim for a negative step
    return axis, b, e, step


@converter("slice", "crop")
def slice_(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    shape = ctx.shape(0)
    begin, end = a.opt_ints("begin"), a.opt_ints("end")
    step = a.opt_ints("step", ()) or (None,) * len(begin)
    if not (len(begin) == len(end) == len(step)) or len(begin) > len(shape):
        raise ctx.error(f"begin {list(begin)}, end {list(end)}, step {list(step)} do not fit "
                        f"input {list(shape)}")
    bounds = [_mx_slice_bounds(ctx, shape[ax], begin[ax], end[ax],
                               1 if step[ax] is None else step[ax], ax)
              for ax in range(len(begin))]
    return _slice_node(ctx, bounds)


@converter("slice_axis")
def slice_axis(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    shape = ctx.shape(0)
    axis = a.int("axis")
    if not -len(shape) <= axis < len(shape):
        raise ctx.error(f"axis {axis} out of range for rank {len(shape)}")
    axis %= len(shape)
    b = a.int("begin", 0)
    return _slice_node(ctx, [_mx_slice_bounds(ctx, shape[axis], b, a.int("end", None), 1, axis)])


@converter("SliceChannel", "split")
def split(ctx: ConvertContext) -> list[Value]:
    a = ctx.attrs
    shape = ctx.shape(0)
    n = a.int("num_outputs")
    axis = a.int("axis", 1) % len(shape)
    if shape[axis] % n:
        raise ctx.error(f"axis {axis} of size {shape[axis]} does not split into {n} equal parts")
    attrs = {"axis": axis, "split": (shape[axis] // n,) * n}
    names = [f"{ctx.name}_output{i}" for i in range(n)]
    if not a.bool("squeeze_axis", False):
        return ctx.add_node("Split", [ctx.value(0)], attrs, num_outputs=n,
                            output_names=names).outputs
    parts = ctx.add_node("Split", [ctx.value(0)], attrs, num_outputs=n, final=False,
                         suffix="split").outputs
    return [ctx.add_node("Squeeze", [p], {"axes": (axis,)}, suffix=f"output{i}",
                         output_names=[names[i]]).output for i, p in enumerate(parts)]


# -- padding ----------------------------------------------------------------------------------

@converter("Pad", "pad")
def pad(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    rank = ctx.rank(0)
    width = a.ints("pad_width")
    if len(width) != 2 * rank:
        raise ctx.error(f"pad_width {list(width)} needs {2 * rank} values")
    mode = a.str("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise ctx.error(f"mode {mode!r} is not constant/edge/reflect")
    # mxnet: (begin0, end0, begin1, end1, ...); fc: (begin0, begin1, ..., end0, end1, ...)
    pads = tuple(width[0::2]) + tuple(width[1::2])
    return ctx.add_node("Pad", [ctx.value(0)], {
        "pads": pads, "mode": mode, "value": a.float("constant_value", 0.0)}).output


# -- reductions -------------------------------------------------------------------------------

def _reduce(op: str) -> Callable[[ConvertContext], Value]:
    def convert(ctx: ConvertContext) -> Value:
        a = ctx.attrs
        rank = ctx.rank(0)
        axes = a.ints("axis", ())
        if any(not -rank <= ax < rank for ax in axes):
            raise ctx.error(f"axis {list(axes)} out of range for rank {rank}")
        axes_n = sorted({ax % rank for ax in axes})
        if a.bool("exclude", False):
            axes_n = [ax for ax in range(rank) if ax not in axes_n]
        keepdims = a.bool("keepdims", False)
        all_axes = not axes_n or len(axes_n) == rank
        if all_axes and not keepdims:
            # mxnet's full reduction without keepdims has shape (1,), not ()
            y = ctx.add_node(op, [ctx.value(0)], {"axes": (), "keepdims": 1}, final=False,
                             suffix="reduce").output
            return ctx.add_node("Reshape", [y], {"shape": (1,)}).output
        return ctx.add_node(op, [ctx.value(0)], {"axes": tuple(axes_n),
                                                 "keepdims": int(keepdims)}).output

    convert.__name__ = f"reduce_{op.lower()}"
    return convert


converter("mean")(_reduce("ReduceMean"))
converter("sum", "sum_axis")(_reduce("ReduceSum"))
converter("max", "max_axis")(_reduce("ReduceMax"))
