"""Schemas of data-movement ops. Everything ONNX passes as constant tensor inputs (Reshape's
shape, Slice's starts, Pad's pads, Resize's scales, ...) is an attribute here: the IR has
static shapes, so these are known at import.

Batch convention: dim 0 is the batch. Reshape's ``shape`` uses 0 ("copy this dim") for it
where the importer can tell, so a graph compiled at batch 1 also runs at batch 8.
"""

from __future__ import annotations

import math

import numpy as np

from fc.ir.schema import FLOAT, FLOATS, INT, INTS, STRING, Attr, TensorType, register_op
from fc.ir.schemas._rules import check, norm_axis

__all__ = ["slice_bounds", "reshape_shape", "resize_shape"]


@register_op("Concat", inputs=("inputs*",), attrs={"axis": Attr(INT)})
def concat(*xs, axis):
    rank = xs[0].rank
    ax = norm_axis(axis, rank)
    for x in xs:
        check(x.rank == rank and all(d == e for i, (d, e) in enumerate(zip(x.shape, xs[0].shape))
                                     if i != ax),
              f"shapes {[x.shape for x in xs]} differ outside axis {axis}")
        check(x.dtype == xs[0].dtype, f"input dtypes differ: {[x.dtype for x in xs]}")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    return TensorType(tuple(shape), xs[0].dtype)


@register_op("Split", inputs=("X",), outputs=("outputs",), variadic_outputs=True,
             attrs={"axis": Attr(INT, 0), "split": Attr(INTS)})
def split(x, *, axis, split):
    """Cut ``axis`` into pieces of the sizes in ``split`` (one output each)."""
    ax = norm_axis(axis, x.rank)
    check(sum(split) == x.shape[ax] and all(s >= 0 for s in split),
          f"split {list(split)} does not sum to dim {x.shape[ax]} of axis {axis}")
    return [TensorType(x.shape[:ax] + (s,) + x.shape[ax + 1:], x.dtype) for s in split]


def slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX Slice clamping: returns (start, end, length) for one axis."""
    check(step != 0, "Slice step must not be 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    length = max(0, math.ceil((end - start) / step))
    return start, end, length


@register_op("Slice", inputs=("data",),
             attrs={"starts": Attr(INTS), "ends": Attr(INTS), "axes": Attr(INTS),
                    "steps": Attr(INTS)})
def slice_(x, *, starts, ends, axes, steps):
    """data[starts:ends:steps] on ``axes`` with ONNX clamping (ends may be +-2**63-1)."""
    check(len(starts) == len(ends) == len(axes) == len(steps),
          "starts, ends, axes and steps must have the same length")
    shape = list(x.shape)
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        ax = norm_axis(a, x.rank, "axes")
        check(ax not in seen, f"axis {a} repeated")
        seen.add(ax)
        shape[ax] = slice_bounds(x.shape[ax], s, e, st)[2]
    return TensorType(tuple(shape), x.dtype)


def reshape_shape(in_shape: tuple[int, ...], shape: tuple[int, ...], allowzero: int = 0
                  ) -> tuple[int, ...]:
    """Resolve ONNX Reshape's 0 (copy) and -1 (infer) codes."""
    out = [in_shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
    check(all(d >= -1 for d in out) and out.count(-1) <= 1, f"invalid target shape {list(shape)}")
    total = math.prod(in_shape)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        check(known > 0 and total % known == 0, f"cannot reshape {in_shape} to {list(shape)}")
        out[out.index(-1)] = total // known
    check(math.prod(out) == total, f"cannot reshape {in_shape} to {list(shape)}")
    return tuple(out)


@register_op("Reshape", inputs=("data",), outputs=("reshaped",),
             attrs={"shape": Attr(INTS), "allowzero": Attr(INT, 0)})
def reshape(x, *, shape, allowzero):
    return TensorType(reshape_shape(x.shape, shape, allowzero), x.dtype)


@register_op("Flatten", inputs=("X",), attrs={"axis": Attr(INT, 1)})
def flatten(x, *, axis):
    """(d0..d[axis-1], d[axis]..) -> 2-D."""
    check(-x.rank <= axis <= x.rank, f"axis={axis} out of range for rank {x.rank}")
    ax = axis + x.rank if axis < 0 else axis  # ONNX: -1 is the last axis, as elsewhere
    return TensorType((math.prod(x.shape[:ax]), math.prod(x.shape[ax:])), x.dtype)


@register_op("Transpose", inputs=("data",), outputs=("transposed",), attrs={"perm": Attr(INTS, ())})
def transpose(x, *, perm):
    """perm=() reverses the axes."""
    perm = perm or tuple(reversed(range(x.rank)))
    check(sorted(perm) == list(range(x.rank)), f"perm {list(perm)} is not a permutation of "
                                               f"{x.rank} axes")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


@register_op("Squeeze", inputs=("data",), outputs=("squeezed",), attrs={"axes": Attr(INTS, ())})
def squeeze(x, *, axes):
    """axes=() removes every dim of size 1."""
    if not axes:
        return TensorType(tuple(d for d in x.shape if d != 1), x.dtype)
    ax = {norm_axis(a, x.rank, "axes") for a in axes}
    for a in ax:
        check(x.shape[a] == 1, f"cannot squeeze axis {a} of size {x.shape[a]}")
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in ax), x.dtype)


@register_op("Unsqueeze", inputs=("data",), outputs=("expanded",), attrs={"axes": Attr(INTS)})
def unsqueeze(x, *, axes):
    rank = x.rank + len(axes)
    ax = {norm_axis(a, rank, "axes") for a in axes}
    check(len(ax) == len(axes), f"repeated axes {list(axes)}")
    it = iter(x.shape)
    return TensorType(tuple(1 if i in ax else next(it) for i in range(rank)), x.dtype)


@register_op("Pad", inputs=("data",), outputs=("output",),
             attrs={"pads": Attr(INTS), "mode": Attr(STRING, "constant"), "value": Attr(FLOAT, 0.0)})
def pad(x, *, pads, mode, value):
    """pads = (x1_begin, x2_begin, ..., x1_end, x2_end, ...) over all axes; negative crops.
    mode: constant, reflect (mirror without the edge), edge (repeat the edge)."""
    check(len(pads) == 2 * x.rank, f"pads {list(pads)} needs {2 * x.rank} values")
    check(mode in ("constant", "reflect", "edge"), f"mode {mode!r} not constant/reflect/edge")
    shape = tuple(d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape))
    check(all(d >= 0 for d in shape), f"pads {list(pads)} crop {x.shape} below zero")
    if mode == "reflect":
        for i, d in enumerate(x.shape):
            check(pads[i] < d and pads[i + x.rank] < d,
                  f"reflect pads {list(pads)} must be smaller than dim {d}")
    return TensorType(shape, x.dtype)


def resize_shape(in_shape: tuple[int, ...], scales: tuple[float, ...], sizes: tuple[int, ...]
                 ) -> tuple[int, ...]:
    """Output shape of Resize: dim 0 (batch) is kept; others from ``sizes`` when given, else
    floor(in * scale) with the product taken in float32, as onnxruntime does (10 * 0.7f is
    6.99999988 in float64 but rounds to 7.0 in float32, and onnxruntime outputs 7)."""
    if sizes:
        return (in_shape[0], *sizes[1:])
    return (in_shape[0], *(int(math.floor(np.float32(d) * np.float32(s)))
                           for d, s in zip(in_shape[1:], scales[1:])))


@register_op(
    "Resize",
    inputs=("X",),
    attrs={
        "mode": Attr(STRING, "nearest"),
        "scales": Attr(FLOATS),
        "sizes": Attr(INTS, ()),
        "coordinate_transformation_mode": Attr(STRING, "half_pixel"),
        "nearest_mode": Attr(STRING, "round_prefer_floor"),
        "cubic_coeff_a": Attr(FLOAT, -0.75),
    },
)
def resize(x, *, mode, scales, sizes, coordinate_transformation_mode, nearest_mode, cubic_coeff_a):
    """ONNX Resize (opset 11+ semantics). ``scales`` is per dim and drives the coordinate
    transform; ``sizes`` (per dim, or empty) fixes the output size when the model gave it.
    The batch dim is never resized (scales[0] == 1)."""
    check(len(scales) == x.rank, f"scales {list(scales)} needs {x.rank} values")
    check(not sizes or len(sizes) == x.rank, f"sizes {list(sizes)} needs {x.rank} values")
    check(scales[0] == 1.0, f"scales[0]={scales[0]}: the batch dim cannot be resized")
    check(all(s > 0 for s in scales), f"scales {list(scales)} must be positive")
    check(mode in ("nearest", "linear", "cubic"), f"mode {mode!r} not nearest/linear/cubic")
    check(coordinate_transformation_mode in (
        "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"),
        f"coordinate_transformation_mode {coordinate_transformation_mode!r} not supported")
    check(nearest_mode in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"),
          f"nearest_mode {nearest_mode!r} not supported")
    return TensorType(resize_shape(x.shape, scales, sizes), x.dtype)


@register_op("DepthToSpace", inputs=("input",), outputs=("output",),
             attrs={"blocksize": Attr(INT), "mode": Attr(STRING, "DCR")})
def depth_to_space(x, *, blocksize, mode):
    """(N, C*b*b, H, W) -> (N, C, H*b, W*b); mode CRD is PyTorch's PixelShuffle."""
    check(x.rank == 4, f"input {x.shape} must be 4-D")
    check(mode in ("DCR", "CRD"), f"mode {mode!r} not DCR/CRD")
    n, c, h, w = x.shape
    b = blocksize
    check(b >= 1 and c % (b * b) == 0, f"channels {c} not divisible by blocksize^2 = {b * b}")
    return TensorType((n, c // (b * b), h * b, w * b), x.dtype)


@register_op("SpaceToDepth", inputs=("input",), outputs=("output",),
             attrs={"blocksize": Attr(INT)})
def space_to_depth(x, *, blocksize):
    """(N, C, H, W) -> (N, C*b*b, H/b, W/b), the inverse of DepthToSpace DCR."""
    check(x.rank == 4, f"input {x.shape} must be 4-D")
    n, c, h, w = x.shape
    b = blocksize
    check(b >= 1 and h % b == 0 and w % b == 0, f"spatial {h}x{w} not divisible by {b}")
    return TensorType((n, c * b * b, h // b, w // b), x.dtype)


@register_op("Gather", inputs=("data", "indices"), outputs=("output",), attrs={"axis": Attr(INT, 0)})
def gather(x, indices, *, axis):
    """np.take(data, indices, axis); indices is a constant integer tensor."""
    ax = norm_axis(axis, x.rank)
    check(indices.dtype in ("int32", "int64"), f"indices dtype {indices.dtype} must be int32/int64")
    return TensorType(x.shape[:ax] + indices.shape + x.shape[ax + 1:], x.dtype)
