"""TensorFlow data-movement ops: reshapes, slices, concatenation, padding, resizing, block
rearrangements, and the shape queries that fold to constants (the IR's shapes are static).

A Reshape's target that keeps the input's leading dim keeps it as 0 ("copy"): that dim is the
batch, so a graph imported at batch 1 runs at any batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fc.frontend.tf.context import GraphView, TFContext, nchw_layer
from fc.frontend.tf.registry import converter
from fc.ir.core import Value

__all__: list[str] = []

_BIG = 2**63 - 1


def _ints(ctx: TFContext, i: int, what: str) -> tuple[int, ...]:
    return tuple(int(d) for d in np.ravel(ctx.const(i, what)))


def _repeat(ctx: TFContext, target: tuple[int, ...]) -> tuple[str, int, int] | None:
    """``Reshape(Tile(ExpandDims(x, a + 1), m at a + 1), x's shape with dim a times m)``, how
    Keras repeats along axis ``a`` (UpSampling2D): (x's tensor, a, m)."""
    tile = ctx.producer(0)
    if tile is None or tile.op != "Tile":
        return None
    expand = ctx.view.producer(GraphView.data_inputs(tile)[0])
    mult = ctx.view.const_of(GraphView.data_inputs(tile)[1])
    if expand is None or expand.op != "ExpandDims" or mult is None:
        return None
    x_t, dim_t = GraphView.data_inputs(expand)
    dim, x = ctx.view.const_of(dim_t), ctx.view.env.get(x_t)
    if dim is None or not isinstance(x, Value) or x.shape is None:
        return None
    rank = len(x.shape)
    a = int(np.ravel(dim)[0]) % (rank + 1) - 1
    mult = [int(m) for m in np.ravel(mult)]
    if a < 0 or mult != [mult[a + 1] if i == a + 1 else 1 for i in range(rank + 1)]:
        return None
    expected = tuple(d * mult[a + 1] if i == a else d for i, d in enumerate(x.shape))
    resolved = tuple(x.shape[i] if d == 0 else d for i, d in enumerate(target))
    if -1 in resolved or resolved != expected:
        return None
    return x_t, a, mult[a + 1]


@converter("Reshape")
def reshape(ctx: TFContext) -> Value:
    shape = list(_ints(ctx, 1, "shape"))
    rep = _repeat(ctx, tuple(shape))
    if rep is not None and len(shape) == 4 and rep[1] in (1, 2):
        # a nearest-neighbour upsampling of one spatial axis: fc's Resize (NCHW)
        x_t, a, m = rep
        x = ctx.view.env[x_t]
        n, h, w, c = x.shape
        scales = (1.0, 1.0, float(m), 1.0) if a == 1 else (1.0, 1.0, 1.0, float(m))
        sizes = (n, c, h * m, w) if a == 1 else (n, c, h, w * m)
        return nchw_layer(ctx, "Resize", x, [], {
            "mode": "nearest", "scales": scales, "sizes": sizes,
            "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})
    x_shape = ctx.shape(0)
    if shape and x_shape and shape[0] == x_shape[0]:
        shape[0] = 0
    return ctx.add_node("Reshape", [ctx.value(0)], {"shape": tuple(shape)}).output


@converter("Tile")
def tile(ctx: TFContext) -> Value:
    """Copies concatenated along every axis with a multiple above 1."""
    v = ctx.value(0)
    mult = _ints(ctx, 1, "multiples")
    axes = [a for a, m in enumerate(mult) if m > 1]
    if not axes:
        return ctx.add_node("Identity", [v]).output
    for k, a in enumerate(axes):
        last = k == len(axes) - 1
        v = ctx.add_node("Concat", [v] * mult[a], {"axis": a}, final=last,
                         suffix="" if last else f"tile{a}").output
    return v


@converter("Squeeze")
def squeeze(ctx: TFContext) -> Value:
    rank = ctx.rank(0)
    dims = ctx.attrs.ints("squeeze_dims", ())
    axes = tuple(sorted(d % rank for d in dims)) if dims else \
        tuple(i for i, d in enumerate(ctx.shape(0)) if d == 1)
    return ctx.add_node("Squeeze", [ctx.value(0)], {"axes": axes}).output


@converter("ExpandDims")
def expand_dims(ctx: TFContext) -> Value:
    axis = _ints(ctx, 1, "dim")[0]
    rank = ctx.rank(0) + 1
    return ctx.add_node("Unsqueeze", [ctx.value(0)], {"axes": (axis % rank,)}).output


@converter("Transpose")
def transpose(ctx: TFContext) -> Value:
    return ctx.add_node("Transpose", [ctx.value(0)], {"perm": _ints(ctx, 1, "perm")}).output


@converter("ConcatV2")
def concat(ctx: TFContext) -> Value:
    n = ctx.num_inputs - 1
    axis = _ints(ctx, n, "axis")[0]
    return ctx.add_node("Concat", [ctx.value(i) for i in range(n)],
                        {"axis": axis % ctx.rank(0)}).output


@converter("Pack")
def pack(ctx: TFContext) -> Value:
    rank = ctx.rank(0) + 1
    axis = ctx.attrs.int("axis", 0) % rank
    parts = [ctx.add_node("Unsqueeze", [ctx.value(i)], {"axes": (axis,)}, suffix=f"expand{i}",
                          final=False).output for i in range(ctx.num_inputs)]
    return ctx.add_node("Concat", parts, {"axis": axis}).output


def _pads(ctx: TFContext) -> tuple[int, ...]:
    p = np.asarray(ctx.const(1, "paddings")).reshape(-1, 2)
    return tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1])


@converter("Pad", "PadV2")
def pad(ctx: TFContext) -> Value:
    value = float(np.ravel(ctx.const(2, "constant_values"))[0]) if ctx.has_input(2) else 0.0
    return ctx.add_node("Pad", [ctx.value(0)], {"pads": _pads(ctx), "mode": "constant",
                                                "value": value}).output


def _mirror_check(ctx: TFContext) -> str | None:
    mode = ctx.attrs.str("mode")
    if mode == "REFLECT":
        return None
    p = ctx.known_const(1)
    if mode == "SYMMETRIC" and (p is None or np.all(np.asarray(p) <= 1)):
        return None  # mirroring with the edge, by at most 1, repeats the edge
    return f"mode={mode}" + (" with pads > 1" if mode == "SYMMETRIC" else "")


@converter("MirrorPad", check=_mirror_check)
def mirror_pad(ctx: TFContext) -> Value:
    mode = "reflect" if ctx.attrs.str("mode") == "REFLECT" else "edge"
    return ctx.add_node("Pad", [ctx.value(0)], {"pads": _pads(ctx), "mode": mode}).output


# -- slicing ---------------------------------------------------------------------------------
def _strided_check(ctx: TFContext) -> str | None:
    e = ctx.attrs.int("ellipsis_mask", 0)
    return "several ellipses" if e & (e - 1) else None


@converter("StridedSlice", check=_strided_check)
def strided_slice(ctx: TFContext) -> Value:
    """TF's slice spec (masks, ellipsis, new and shrunk axes) as Slice, then Squeeze (shrunk
    axes) and Unsqueeze (new axes)."""
    begin, end, strides = (_ints(ctx, i, w) for i, w in ((1, "begin"), (2, "end"),
                                                          (3, "strides")))
    a = ctx.attrs
    bm, em, el, na, sh = (a.int(k, 0) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                                 "new_axis_mask", "shrink_axis_mask"))
    shape = ctx.shape(0)
    rank = len(shape)
    consumed = sum(1 for i in range(len(begin)) if not (el >> i) & 1 and not (na >> i) & 1)
    starts, ends, axes, steps, shrink, new_axes = [], [], [], [], [], []
    dim = out = 0
    for i in range(len(begin)):
        if (el >> i) & 1:
            k = rank - consumed
            dim, out = dim + k, out + k
        elif (na >> i) & 1:
            new_axes.append(out)
            out += 1
        elif (sh >> i) & 1:
            b = begin[i]
            starts.append(b), ends.append(_BIG if b == -1 else b + 1), axes.append(dim)
            steps.append(1), shrink.append(dim)
            dim += 1
        else:
            s = strides[i]
            lo, hi = (0, _BIG) if s > 0 else (_BIG, -_BIG - 1)
            b = lo if (bm >> i) & 1 else begin[i]
            e = hi if (em >> i) & 1 else end[i]
            if not (s == 1 and b == 0 and e >= shape[dim]):  # (the whole axis: no slice)
                starts.append(b), ends.append(e), axes.append(dim), steps.append(s)
            dim, out = dim + 1, out + 1
    v = ctx.value(0)
    steps_left = [bool(starts), bool(shrink), bool(new_axes)]
    if starts:
        last = not any(steps_left[1:])
        v = ctx.add_node("Slice", [v], {"starts": tuple(starts), "ends": tuple(ends),
                                        "axes": tuple(axes), "steps": tuple(steps)},
                         final=last, suffix="" if last else "slice").output
    if shrink:
        last = not new_axes
        v = ctx.add_node("Squeeze", [v], {"axes": tuple(shrink)}, final=last,
                         suffix="" if last else "squeeze").output
    if new_axes:
        v = ctx.add_node("Unsqueeze", [v], {"axes": tuple(new_axes)}).output
    if not any(steps_left):
        v = ctx.add_node("Identity", [v]).output
    return v


@converter("Slice")
def slice_(ctx: TFContext) -> Value:
    begin, size = _ints(ctx, 1, "begin"), _ints(ctx, 2, "size")
    ends = tuple(_BIG if s == -1 else b + s for b, s in zip(begin, size))
    return ctx.add_node("Slice", [ctx.value(0)], {
        "starts": begin, "ends": ends, "axes": tuple(range(len(begin))),
        "steps": (1,) * len(begin)}).output


@converter("Split")
def split(ctx: TFContext) -> list[Value]:
    axis = _ints(ctx, 0, "split_dim")[0]
    shape = ctx.shape(1)
    n = ctx.attrs.int("num_split")
    ax = axis % len(shape)
    if shape[ax] % n:
        raise ctx.error(f"dim {shape[ax]} of axis {axis} does not split into {n}")
    node = ctx.add_node("Split", [ctx.value(1)], {"axis": ax, "split": (shape[ax] // n,) * n},
                        num_outputs=n)
    return list(node.outputs)


@converter("SplitV")
def split_v(ctx: TFContext) -> list[Value]:
    sizes = list(_ints(ctx, 1, "size_splits"))
    axis = _ints(ctx, 2, "split_dim")[0]
    shape = ctx.shape(0)
    ax = axis % len(shape)
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[ax] - (sum(sizes) + 1)
    node = ctx.add_node("Split", [ctx.value(0)], {"axis": ax, "split": tuple(sizes)},
                        num_outputs=len(sizes))
    return list(node.outputs)


def _gather_check(ctx: TFContext) -> str | None:
    return None if ctx.attrs.int("batch_dims", 0) == 0 else "batch_dims"


@converter("GatherV2", check=_gather_check)
def gather(ctx: TFContext) -> Value:
    axis = _ints(ctx, 2, "axis")[0] % ctx.rank(0)
    idx = ctx.const(1, "indices").astype(np.int64)
    return ctx.add_node("Gather", [ctx.value(0), ctx.const_value(idx, ctx.weight_name(1))],
                        {"axis": axis}).output


# -- shapes (static in the IR: they fold) ---------------------------------------------------
def _out_dtype(ctx: TFContext) -> np.dtype:
    return np.dtype(ctx.attrs.str("out_type", "int32"))


@converter("Shape")
def shape(ctx: TFContext) -> list[np.ndarray]:
    return [np.asarray(ctx.shape(0), _out_dtype(ctx))]


@converter("Size")
def size(ctx: TFContext) -> list[np.ndarray]:
    return [np.asarray(int(np.prod(ctx.shape(0))), _out_dtype(ctx))]


@converter("Rank")
def rank(ctx: TFContext) -> list[np.ndarray]:
    return [np.asarray(ctx.rank(0), np.int32)]


# -- resizing and blocks (NCHW ops in fc) -----------------------------------------------------
def _resize(mode: str, modes: Callable[[bool, bool], tuple[str, str]]) -> Callable[..., Value]:
    def convert(ctx: TFContext) -> Value:
        n, h, w, c = ctx.shape(0)
        oh, ow = _ints(ctx, 1, "size")
        ctm, nearest = modes(ctx.attrs.bool("align_corners", False),
                             ctx.attrs.bool("half_pixel_centers", False))
        attrs = {"mode": mode, "scales": (1.0, 1.0, oh / h, ow / w), "sizes": (n, c, oh, ow),
                 "coordinate_transformation_mode": ctm, "nearest_mode": nearest}
        return nchw_layer(ctx, "Resize", ctx.value(0), [], attrs)

    return convert


def _resize_check(ctx: TFContext) -> str | None:
    if ctx.attrs.bool("align_corners", False) and ctx.attrs.bool("half_pixel_centers", False):
        return "align_corners with half_pixel_centers"
    return None


converter("ResizeBilinear", check=_resize_check)(_resize("linear", lambda ac, hp: (
    "align_corners" if ac else "half_pixel" if hp else "asymmetric", "round_prefer_floor")))
converter("ResizeNearestNeighbor", check=_resize_check)(_resize("nearest", lambda ac, hp: (
    ("align_corners", "round_prefer_ceil") if ac else
    ("tf_half_pixel_for_nn", "floor") if hp else ("asymmetric", "floor"))))


@converter("DepthToSpace")
def depth_to_space(ctx: TFContext) -> Value:
    return nchw_layer(ctx, "DepthToSpace", ctx.value(0), [],
                      {"blocksize": ctx.attrs.int("block_size"), "mode": "DCR"}, ctx.data_format())


@converter("SpaceToDepth")
def space_to_depth(ctx: TFContext) -> Value:
    return nchw_layer(ctx, "SpaceToDepth", ctx.value(0), [],
                      {"blocksize": ctx.attrs.int("block_size")}, ctx.data_format())
