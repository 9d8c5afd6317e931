"""Data movement: cat/split/slice/select, view/reshape/permute/transpose/squeeze/unsqueeze/
expand, constant/reflection/replication pads, nearest/bilinear/bicubic upsampling, pixel
shuffle, reductions.

The batch: a size argument that is the symbolic batch becomes Reshape's ``-1`` (or ``0``
when another dim is inferred). ``expand``
of a batch-1 tensor to the batch (a ViT's class token) has no IR op of its own: it adds a
zero tensor of shape (batch, 1, ..., 1), made from the graph's first input as
``Clip(x[:, :1, ...], 0, 0)`` (exactly 0 for every finite or infinite input), so the
result follows the batch the graph runs at.
"""

from __future__ import annotations

import numpy as np

from fc.errors import ImportError_
from fc.frontend.torch.context import AtenContext, Batch
from fc.frontend.torch.registry import converter
from fc.ir.core import Value

__all__: list[str] = []

_INT64_MAX = 2**63 - 1


def _axis(ctx: AtenContext, i: int, rank: int) -> int:
    a = ctx.attrs.int(i)
    if not -rank <= a < max(rank, 1):
        raise ctx.error(f"dim {a} out of range for rank {rank}")
    return a % rank if rank else 0


@converter("aten.cat.default")
def cat(ctx: AtenContext) -> Value:
    xs = ctx.value_list(0)
    return ctx.emit("Concat", xs, {"axis": ctx.attrs.int(1, 0)})


def _split(ctx: AtenContext, sizes: tuple[int, ...], axis: int) -> list[Value]:
    node = ctx.add_node("Split", [ctx.value(0)], {"axis": axis, "split": sizes},
                        num_outputs=len(sizes))
    return list(node.outputs)


@converter("aten.split_with_sizes.default")
def split_with_sizes(ctx: AtenContext) -> list[Value]:
    return _split(ctx, tuple(ctx.attrs.ints(1)), _axis(ctx, 2, ctx.rank(0)))


@converter("aten.split.Tensor")
def split(ctx: AtenContext) -> list[Value]:
    axis = _axis(ctx, 2, ctx.rank(0))
    dim, size = ctx.shape(0)[axis], ctx.attrs.int(1)
    return _split(ctx, tuple(min(size, dim - s) for s in range(0, dim, size)), axis)


@converter("aten.slice.Tensor")
def slice_(ctx: AtenContext) -> Value:
    rank = ctx.rank(0)
    axis = _axis(ctx, 1, rank)
    start = ctx.attrs.int(2, 0)
    end = ctx.attrs.int(3, _INT64_MAX)
    step = ctx.attrs.int(4, 1)
    dim = ctx.shape(0)[axis]
    if start in (0, -0) and end >= dim and step == 1:
        return ctx.value(0)
    end = max(min(end, _INT64_MAX), -_INT64_MAX)
    return ctx.emit("Slice", [ctx.value(0)], {"starts": (start,), "ends": (end,), "axes": (axis,),
                                              "steps": (step,)})


@converter("aten.select.int")
def select(ctx: AtenContext) -> Value:
    axis = _axis(ctx, 1, ctx.rank(0))
    index = ctx.const_value(np.array(ctx.attrs.int(2), np.int64), f"{ctx.node.name}_index")
    return ctx.emit("Gather", [ctx.value(0), index], {"axis": axis})


def _check_view(ctx: AtenContext) -> str | None:
    if not ctx.sizes_known(1):
        return None
    try:
        sizes = ctx.sizes(1)
    except ImportError_:
        return "a size computed from the batch"
    if any(isinstance(s, Batch) for s in sizes[1:]):
        return "the batch moved out of dim 0"
    return None


@converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
           check=_check_view)
def view(ctx: AtenContext) -> Value:
    raw = ctx.sizes(1)
    # the batch is -1 when nothing else is inferred: a reshape composed with a neighbouring
    # one (cancel_transposes) then still follows the batch; else Reshape's 0 ("copy")
    batch = -1 if -1 not in raw else 0
    sizes = [batch if isinstance(s, Batch) else s for s in raw]
    if tuple(sizes) == ctx.shape(0):
        return ctx.value(0)
    return ctx.emit("Reshape", [ctx.value(0)], {"shape": tuple(sizes)})


@converter("aten.permute.default")
def permute(ctx: AtenContext) -> Value:
    rank = ctx.rank(0)
    perm = tuple(d % rank for d in ctx.attrs.ints(1))
    if perm == tuple(range(rank)):
        return ctx.value(0)
    return ctx.emit("Transpose", [ctx.value(0)], {"perm": perm})


@converter("aten.transpose.int")
def transpose(ctx: AtenContext) -> Value:
    rank = ctx.rank(0)
    a, b = _axis(ctx, 1, rank), _axis(ctx, 2, rank)
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.emit("Transpose", [ctx.value(0)], {"perm": tuple(perm)})


@converter("aten.t.default")
def t(ctx: AtenContext) -> Value:
    if ctx.rank(0) < 2:
        return ctx.value(0)
    return ctx.emit("Transpose", [ctx.value(0)], {"perm": (1, 0)})


@converter("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def squeeze(ctx: AtenContext) -> Value:
    """torch leaves a named dim of size != 1 alone; fc's Squeeze would refuse it."""
    shape = ctx.shape(0)
    rank = len(shape)
    if ctx.num_inputs > 1 and ctx.attrs.has(1):
        raw = ctx.attrs.raw(1)
        dims = [raw] if isinstance(raw, int) else list(raw)
        axes = sorted({d % rank for d in dims if shape[d % rank] == 1})
    else:
        axes = [i for i, d in enumerate(shape) if d == 1 and i != 0]
    if not axes:
        return ctx.value(0)
    return ctx.emit("Squeeze", [ctx.value(0)], {"axes": tuple(axes)})


@converter("aten.unsqueeze.default")
def unsqueeze(ctx: AtenContext) -> Value:
    rank = ctx.rank(0) + 1
    return ctx.emit("Unsqueeze", [ctx.value(0)], {"axes": (_axis(ctx, 1, rank),)})


def _batch_zeros(ctx: AtenContext, rank: int) -> Value:
    """Zeros of shape (batch, 1, ..., 1) of ``rank`` dims, following the run-time batch."""
    x = next((v for v in ctx.graph.inputs if v.shape and len(v.shape) >= 1), None)
    if x is None:
        raise ctx.error("expanding to the batch needs a batch-first graph input")
    r = len(x.shape)
    v = x
    if r > 1:
        v = ctx.helper("Slice", [x], {"starts": (0,) * (r - 1), "ends": (1,) * (r - 1),
                                      "axes": tuple(range(1, r)), "steps": (1,) * (r - 1)},
                       suffix="batch_slice")
    v = ctx.helper("Clip", [v], {"min": 0.0, "max": 0.0}, suffix="batch_zero")
    return ctx.helper("Reshape", [v], {"shape": (0,) + (1,) * (rank - 1)}, suffix="batch_zeros")


@converter("aten.expand.default")
def expand(ctx: AtenContext) -> Value:
    """Broadcast to ``sizes`` (-1 keeps a dim). A weight expanded to the symbolic batch gets
    the batch from :func:`_batch_zeros`; a computed tensor already carries it."""
    shape = ctx.shape(0)
    sizes = ctx.sizes(1)
    rank = len(sizes)
    full = (1,) * (rank - len(shape)) + tuple(shape)
    target = tuple(full[i] if isinstance(s, Batch) or s == -1 else s for i, s in enumerate(sizes))
    to_batch = isinstance(sizes[0], Batch) and ctx.is_const(0)
    if target == tuple(shape) and not to_batch:
        return ctx.value(0)
    if ctx.is_const(0):
        x = ctx.value(0) if target == tuple(shape) else ctx.const_value(
            np.ascontiguousarray(np.broadcast_to(ctx.const(0), target)), ctx._weight_key(0)[1])
        return ctx.emit("Add", [x, _batch_zeros(ctx, rank)]) if to_batch else x
    x = ctx.value(0)
    zeros = ctx.const_value(np.zeros((1, *target[1:]), dtype=x.dtype), f"{ctx.node.name}_zeros")
    return ctx.emit("Add", [x, zeros])


@converter("aten.constant_pad_nd.default")
def constant_pad_nd(ctx: AtenContext) -> Value:
    return _pad(ctx, ctx.attrs.ints(1), "constant", float(ctx.scalar(2) or 0.0))


@converter("aten.reflection_pad2d.default", "aten.reflection_pad1d.default")
def reflection_pad(ctx: AtenContext) -> Value:
    return _pad(ctx, ctx.attrs.ints(1), "reflect", 0.0)


@converter("aten.replication_pad2d.default", "aten.replication_pad1d.default")
def replication_pad(ctx: AtenContext) -> Value:
    return _pad(ctx, ctx.attrs.ints(1), "edge", 0.0)


def _pad(ctx: AtenContext, torch_pads: tuple[int, ...], mode: str, value: float) -> Value:
    """torch: (begin, end) pairs from the last dim backwards; fc: all begins, then all ends."""
    rank = ctx.rank(0)
    begin, end = [0] * rank, [0] * rank
    for k in range(len(torch_pads) // 2):
        begin[rank - 1 - k], end[rank - 1 - k] = torch_pads[2 * k], torch_pads[2 * k + 1]
    return ctx.emit("Pad", [ctx.value(0)], {"pads": (*begin, *end), "mode": mode, "value": value})


def _upsample_scales(ctx: AtenContext, size_arg: int, scale_arg: int
                     ) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """(scales, sizes) per dim for Resize: the given scale factors, else out/in with sizes."""
    shape = ctx.shape(0)
    raw_scales = ctx.attrs.raw(scale_arg)
    if raw_scales is not None:
        return (1.0, 1.0, *(float(s) for s in raw_scales)), ()
    out = ctx.attrs.ints(size_arg)
    return ((1.0, 1.0, *(o / i for o, i in zip(out, shape[2:]))),
            (shape[0], shape[1], *out))


@converter("aten.upsample_nearest2d.vec")
def upsample_nearest(ctx: AtenContext) -> Value:
    """torch's nearest: src = floor(dst / scale)."""
    scales, sizes = _upsample_scales(ctx, 1, 2)
    return ctx.emit("Resize", [ctx.value(0)], {
        "mode": "nearest", "scales": scales, "sizes": sizes,
        "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})


def _interpolate(ctx: AtenContext, mode: str) -> Value:
    """torch's bilinear/bicubic: align_corners, else half-pixel centres."""
    scales, sizes = _upsample_scales(ctx, 1, 3)
    ctm = "align_corners" if ctx.attrs.bool(2) else "half_pixel"
    return ctx.emit("Resize", [ctx.value(0)], {
        "mode": mode, "scales": scales, "sizes": sizes, "coordinate_transformation_mode": ctm,
        "cubic_coeff_a": -0.75})


@converter("aten.upsample_bilinear2d.vec")
def upsample_bilinear(ctx: AtenContext) -> Value:
    return _interpolate(ctx, "linear")


@converter("aten.upsample_bicubic2d.vec")
def upsample_bicubic(ctx: AtenContext) -> Value:
    return _interpolate(ctx, "cubic")


@converter("aten.pixel_shuffle.default")
def pixel_shuffle(ctx: AtenContext) -> Value:
    return ctx.emit("DepthToSpace", [ctx.value(0)], {"blocksize": ctx.attrs.int(1),
                                                     "mode": "CRD"})


# -- reductions -------------------------------------------------------------------------------

def _dims(ctx: AtenContext, i: int) -> tuple[int, ...]:
    rank = ctx.rank(0)
    raw = ctx.attrs.raw(i)
    dims = [] if raw is None else ([raw] if isinstance(raw, int) else list(raw))
    return tuple(sorted({d % rank for d in dims})) if dims else tuple(range(rank))


def _check_reduce_dtype(ctx: AtenContext) -> str | None:
    return "dtype" if ctx.attrs.raw("dtype") is not None else None


@converter("aten.mean.dim", check=_check_reduce_dtype)
def mean(ctx: AtenContext) -> Value:
    """A mean over H and W of an NCHW tensor, kept 4-D, is a global average pool."""
    dims, keep = _dims(ctx, 1), ctx.attrs.bool(2, False)
    if ctx.rank(0) == 4 and dims == (2, 3) and keep:
        return ctx.emit("GlobalAveragePool", [ctx.value(0)])
    return ctx.emit("ReduceMean", [ctx.value(0)], {"axes": dims, "keepdims": int(keep)})


@converter("aten.sum.dim_IntList", check=_check_reduce_dtype)
def sum_(ctx: AtenContext) -> Value:
    return ctx.emit("ReduceSum", [ctx.value(0)], {"axes": _dims(ctx, 1),
                                                  "keepdims": int(ctx.attrs.bool(2, False))})


@converter("aten.amax.default")
def amax(ctx: AtenContext) -> Value:
    return ctx.emit("ReduceMax", [ctx.value(0)], {"axes": _dims(ctx, 1),
                                                  "keepdims": int(ctx.attrs.bool(2, False))})

