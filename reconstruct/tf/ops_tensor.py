"""TensorFlow lowerings of the data-movement ops.

Ops with axes (Concat, Split, Slice, Pad, Squeeze, Gather) map their axes to the input's
arrangement instead of moving data; a Transpose only relabels the arrangement (no TF op at
all). Reshape and Flatten depend on the IR's row-major order, so they take their input in
the IR's own order: the one place a channels-last activation is transposed back (the
Flatten before a classifier that has no global pooling).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fc.ir.schemas.tensor import resize_shape, slice_bounds
from fc.reconstruct.tf.context import NHWC, LowerContext, Lt, common_perm, inverse, reduce_axes
from fc.reconstruct.tf.registry import LOWERINGS

__all__ = ["resize_matrix"]


@LOWERINGS.register("Concat")
def concat(ctx: LowerContext, *xs: Lt, axis: int) -> Lt:
    rank = xs[0].rank
    perm = common_perm(xs, rank)
    ax = inverse(perm)[axis % rank]
    return ctx.out(ctx.tf.concat([ctx.arrange(x, perm) for x in xs], axis=ax), perm)


@LOWERINGS.register("Split")
def split(ctx: LowerContext, x: Lt, *, axis: int, split: tuple[int, ...]) -> list[Lt]:
    ax = inverse(x.perm)[axis % x.rank]
    parts = ctx.tf.split(ctx.arrange(x, x.perm), list(split), axis=ax)
    return [ctx.out(t, x.perm, i) for i, t in enumerate(parts)]


def _py_slice(dim: int, start: int, end: int, step: int, batch: bool) -> slice:
    """One axis of an IR Slice (ONNX clamping) as a Python slice. The batch axis has no
    static size, so its bounds stay open where ONNX's huge sentinels mean 'to the end'."""
    if batch:
        big = 2**31 - 1
        return slice(None if abs(start) >= big else start,
                     None if abs(end) >= big else end, step)
    s, e, _ = slice_bounds(dim, start, end, step)
    return slice(s, None if (step < 0 and e < 0) else e, step)


@LOWERINGS.register("Slice")
def slice_(ctx: LowerContext, x: Lt, *, starts: tuple[int, ...], ends: tuple[int, ...],
           axes: tuple[int, ...], steps: tuple[int, ...]) -> Lt:
    where = inverse(x.perm)
    index = [slice(None)] * x.rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= x.rank
        index[where[a]] = _py_slice(x.shape[a], s, e, st, batch=a == 0)
    return ctx.out(ctx.arrange(x, x.perm)[tuple(index)], x.perm)


def _target_shape(ctx: LowerContext, x: Any, shape: tuple[int, ...], allowzero: int) -> Any:
    """The IR Reshape target for ``tf.reshape``: a 0 copies the input's dim (the batch, in
    practice), which becomes -1 when it is the only unknown, else ``tf.shape``."""
    copies = [i for i, d in enumerate(shape) if d == 0 and not allowzero]
    if not copies:
        return list(shape)
    if len(copies) == 1 and -1 not in shape:
        return [-1 if i in copies else d for i, d in enumerate(shape)]
    dyn = ctx.tf.shape(x)
    return ctx.tf.stack([dyn[i] if i in copies else d for i, d in enumerate(shape)])


@LOWERINGS.register("Reshape")
def reshape(ctx: LowerContext, x: Lt, *, shape: tuple[int, ...], allowzero: int) -> Lt:
    t = ctx.ir(x)
    return ctx.out(ctx.tf.reshape(t, _target_shape(ctx, t, shape, allowzero)))


@LOWERINGS.register("Flatten")
def flatten(ctx: LowerContext, x: Lt, *, axis: int) -> Lt:
    ax = axis % x.rank if axis < 0 else axis
    target = [-1, math.prod(x.shape[ax:])] if ax > 0 else [1, -1]
    return ctx.out(ctx.tf.reshape(ctx.ir(x), target))


@LOWERINGS.register("Transpose")
def transpose(ctx: LowerContext, x: Lt, *, perm: tuple[int, ...]) -> Lt:
    """No data moves: y = transpose(x, perm) is x's tensor with its axes relabelled."""
    q = perm or tuple(reversed(range(x.rank)))
    where = inverse(q)  # IR axis a of x is axis where[a] of y
    return ctx.out(ctx.arrange(x, x.perm), tuple(where[p] for p in x.perm))


@LOWERINGS.register("Squeeze")
def squeeze(ctx: LowerContext, x: Lt, *, axes: tuple[int, ...]) -> Lt:
    ir_axes = axes or tuple(i for i, d in enumerate(x.shape) if d == 1)
    tensor_axes, perm = reduce_axes(x.perm, ir_axes, 0)
    return ctx.out(ctx.tf.squeeze(ctx.arrange(x, x.perm), axis=tensor_axes), perm)


@LOWERINGS.register("Unsqueeze")
def unsqueeze(ctx: LowerContext, x: Lt, *, axes: tuple[int, ...]) -> Lt:
    rank = x.rank + len(axes)
    t = ctx.ir(x)
    for a in sorted(a % rank for a in axes):
        t = ctx.tf.expand_dims(t, a)
    return ctx.out(t)


def _edge_pad(tf: Any, t: Any, widths: list[tuple[int, int]]) -> Any:
    """Repeat the edge values (the IR's 'edge' mode, which TF's pad has not)."""
    rank = len(widths)
    for ax, (b, e) in enumerate(widths):
        first = t[tuple(slice(0, 1) if i == ax else slice(None) for i in range(rank))]
        last = t[tuple(slice(-1, None) if i == ax else slice(None) for i in range(rank))]
        parts = [tf.repeat(first, b, axis=ax)] if b else []
        parts.append(t)
        if e:
            parts.append(tf.repeat(last, e, axis=ax))
        if len(parts) > 1:
            t = tf.concat(parts, axis=ax)
    return t


@LOWERINGS.register("Pad")
def pad(ctx: LowerContext, x: Lt, *, pads: tuple[int, ...], mode: str, value: float) -> Lt:
    """Negative pads crop first, then the positive ones pad (as the IR's kernel)."""
    tf = ctx.tf
    r = x.rank
    t = ctx.arrange(x, x.perm)
    begin = [pads[p] for p in x.perm]  # per tensor axis
    end = [pads[p + r] for p in x.perm]
    if any(b < 0 or e < 0 for b, e in zip(begin, end)):
        t = t[tuple(slice(max(-b, 0), e if e < 0 else None) for b, e in zip(begin, end))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if not any(b or e for b, e in widths):
        return ctx.out(tf.identity(t), x.perm)
    if mode == "constant":
        y = tf.pad(t, widths, constant_values=tf.cast(value, t.dtype))
    elif mode == "reflect":
        y = tf.pad(t, widths, mode="REFLECT")
    elif mode == "edge":
        y = _edge_pad(tf, t, widths)
    else:
        raise ctx.error(f"mode {mode!r} is not constant/reflect/edge")
    return ctx.out(y, x.perm)


# -- Resize ----------------------------------------------------------------------------------
def resize_matrix(in_len: int, out_len: int, scale: float, *, mode: str,
                  coordinate_transformation_mode: str, nearest_mode: str, cubic_coeff_a: float,
                  dtype: str) -> np.ndarray:
    """The (out_len, in_len) matrix of one axis of an IR Resize: every mode is separable and
    linear in the input, so this is the IR's own Resize of the identity."""
    from fc.np_ops import call

    eye = np.eye(in_len, dtype=np.dtype(dtype))
    cols = call("Resize", eye, mode=mode, scales=(1.0, scale), sizes=(in_len, out_len),
                coordinate_transformation_mode=coordinate_transformation_mode,
                nearest_mode=nearest_mode, cubic_coeff_a=cubic_coeff_a)
    return np.ascontiguousarray(cols.T)


# (mode, coordinate transform, nearest mode) -> TF op and its flags, where TF computes exactly
# the IR's sampling (given the output is exactly in * scale)
_NATIVE = {
    ("linear", "half_pixel", None): ("ResizeBilinear", False, True),
    ("linear", "pytorch_half_pixel", None): ("ResizeBilinear", False, True),
    ("linear", "align_corners", None): ("ResizeBilinear", True, False),
    ("linear", "asymmetric", None): ("ResizeBilinear", False, False),
    ("nearest", "asymmetric", "floor"): ("ResizeNearestNeighbor", False, False),
    ("nearest", "tf_half_pixel_for_nn", "floor"): ("ResizeNearestNeighbor", False, True),
    ("nearest", "align_corners", "round_prefer_ceil"): ("ResizeNearestNeighbor", True, False),
}


@LOWERINGS.register("Resize")
def resize(ctx: LowerContext, x: Lt, *, mode: str, scales: tuple[float, ...],
           sizes: tuple[int, ...], coordinate_transformation_mode: str, nearest_mode: str,
           cubic_coeff_a: float) -> Lt:
    """TF's ResizeBilinear/ResizeNearestNeighbor where they sample exactly as the IR (4-D,
    channels and batch kept, output = input * scale); otherwise the separable interpolation
    matrices of each resized axis, applied with tensordot."""
    tf = ctx.tf
    out_shape = resize_shape(x.shape, scales, sizes)
    key = (mode, coordinate_transformation_mode, nearest_mode if mode == "nearest" else None)
    native = _NATIVE.get(key)
    exact = x.rank == 4 and out_shape[1] == x.shape[1] and all(
        o == i * s for o, i, s in zip(out_shape[2:], x.shape[2:], scales[2:]))
    if coordinate_transformation_mode == "pytorch_half_pixel" and min(out_shape[2:]) == 1:
        exact = False  # a length-1 output samples coordinate 0 there, not the centre
    if native is not None and exact:
        op, align, half = native
        fn = tf.raw_ops.ResizeBilinear if op == "ResizeBilinear" else \
            tf.raw_ops.ResizeNearestNeighbor
        y = fn(images=ctx.nhwc(x), size=list(out_shape[2:]), align_corners=align,
               half_pixel_centers=half)
        if y.dtype != ctx.tf.as_dtype(np.dtype(x.dtype)):
            y = tf.cast(y, np.dtype(x.dtype))
        return ctx.out(y, NHWC)
    if not x.dtype.startswith("float"):
        raise ctx.error(f"mode {mode!r} with coordinate_transformation_mode "
                        f"{coordinate_transformation_mode!r} needs a float input, got {x.dtype}")
    t = ctx.arrange(x, x.perm)
    where = inverse(x.perm)
    for a in range(1, x.rank):
        if out_shape[a] == x.shape[a] and np.float32(scales[a]) == 1:
            continue
        m = resize_matrix(x.shape[a], out_shape[a], scales[a], mode=mode,
                          coordinate_transformation_mode=coordinate_transformation_mode,
                          nearest_mode=nearest_mode, cubic_coeff_a=cubic_coeff_a, dtype=x.dtype)
        ax = where[a]
        # tensordot puts the new axis last; move it back to where it was
        t = tf.tensordot(t, tf.constant(m.T, name=f"interpolation_{a}"), axes=[[ax], [0]])
        order = list(range(x.rank - 1))
        order.insert(ax, x.rank - 1)
        t = tf.transpose(t, order)
    return ctx.out(t, x.perm)


# -- block rearrangements --------------------------------------------------------------------
@LOWERINGS.register("DepthToSpace")
def depth_to_space(ctx: LowerContext, x: Lt, *, blocksize: int, mode: str) -> Lt:
    """TF's DepthToSpace is DCR; CRD (PyTorch's PixelShuffle) first reorders the channels."""
    tf = ctx.tf
    t = ctx.nhwc(x)
    if mode == "CRD":
        c, b = x.shape[1] // (blocksize * blocksize), blocksize
        # DCR channel (i*b + j)*C + k reads CRD channel k*b*b + i*b + j
        order = np.arange(c * b * b).reshape(c, b, b).transpose(1, 2, 0).ravel()
        t = tf.gather(t, order, axis=3)
    elif mode != "DCR":
        raise ctx.error(f"mode {mode!r} is not DCR/CRD")
    return ctx.out(tf.nn.depth_to_space(t, blocksize), NHWC)


@LOWERINGS.register("SpaceToDepth")
def space_to_depth(ctx: LowerContext, x: Lt, *, blocksize: int) -> Lt:
    return ctx.out(ctx.tf.nn.space_to_depth(ctx.nhwc(x), blocksize), NHWC)


@LOWERINGS.register("Gather")
def gather(ctx: LowerContext, x: Lt, indices: Lt, *, axis: int) -> Lt:
    """Constant indices; a scalar or 1-D index keeps the input's arrangement."""
    tf = ctx.tf
    a = axis % x.rank
    idx = ctx.const(indices, "indices")
    if a != 0:  # TF's CPU gather refuses negative indices; the IR counts them from the end
        idx = np.where(idx < 0, idx + x.shape[a], idx)
    if idx.ndim > 1:
        return ctx.out(tf.gather(ctx.ir(x), idx, axis=a))
    ax = inverse(x.perm)[a]
    y = tf.gather(ctx.arrange(x, x.perm), idx, axis=ax)
    perm = x.perm if idx.ndim == 1 else reduce_axes(x.perm, (a,), 0)[1]
    return ctx.out(y, perm)

