"""Kernels: data-movement ops (Concat, Split, Slice, Reshape, Flatten, Transpose, Squeeze,
Unsqueeze, Pad, Resize, DepthToSpace, SpaceToDepth, Gather).

The ONNX constant-tensor inputs (Slice starts, Reshape shape, Pad pads, Resize scales, ...)
arrive as attributes. Shapes are resolved with the schema module's helpers
(``slice_bounds``, ``reshape_shape``, ``resize_shape``) so a kernel and its shape rule cannot
disagree. Kernels return views where numpy gives them (reshape, transpose, slice, split): the
interpreter never writes into an array.

Resize follows onnxruntime (the oracle of the tests), not only the ONNX text: coordinates are
computed in float32 as ``x_original = f(x_resized, scale, ...)``, an axis whose scale is 1
and whose size is kept maps to itself, linear clamps the source coordinate into the input,
cubic clamps the neighbours (edge). Interpolation is separable: per resized axis we build an
(out, taps) index array and weight array and gather-multiply-add, which is bilinear on 4-D
NCHW and the same formula on any rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fc.errors import ExecutionError
from fc.ir.schemas.tensor import reshape_shape, resize_shape, slice_bounds
from fc.np_ops.registry import kernel

__all__ = [
    "concat",
    "split",
    "slice_",
    "reshape",
    "flatten",
    "transpose",
    "squeeze",
    "unsqueeze",
    "pad",
    "resize",
    "depth_to_space",
    "space_to_depth",
    "gather",
]


def _axis(op: str, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ExecutionError(f"{op}: {what}={axis} out of range for rank {rank}")
    return axis % rank


@kernel("Concat")
def concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=_axis("Concat", axis, xs[0].ndim))


@kernel("Split")
def split(x: np.ndarray, *, axis: int, split: Sequence[int]) -> list[np.ndarray]:
    """One view per piece of ``axis``; the sizes come from the ``split`` attribute."""
    ax = _axis("Split", axis, x.ndim)
    if sum(split) != x.shape[ax] or any(s < 0 for s in split):
        raise ExecutionError(f"Split: split {list(split)} does not sum to dim {x.shape[ax]} "
                             f"of axis {axis}")
    return np.split(x, np.cumsum(split)[:-1], axis=ax)


@kernel("Slice")
def slice_(x: np.ndarray, *, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
           steps: Sequence[int]) -> np.ndarray:
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ExecutionError(f"Slice: starts {list(starts)}, ends {list(ends)}, axes {list(axes)}, "
                             f"steps {list(steps)} differ in length")
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        ax = _axis("Slice", a, x.ndim, "axes")
        start, end, _ = slice_bounds(x.shape[ax], s, e, st)
        # A clamped end of -1 (negative step) means "through index 0": Python needs None.
        index[ax] = slice(start, None if end < 0 else end, st)
    return x[tuple(index)]


@kernel("Reshape")
def reshape(x: np.ndarray, *, shape: Sequence[int], allowzero: int) -> np.ndarray:
    # Resolved against the actual input, so shape=(0, -1) follows a changed batch size.
    return x.reshape(reshape_shape(x.shape, tuple(shape), allowzero))


@kernel("Flatten")
def flatten(x: np.ndarray, *, axis: int) -> np.ndarray:
    if not -x.ndim <= axis <= x.ndim:
        raise ExecutionError(f"Flatten: axis={axis} out of range for rank {x.ndim}")
    ax = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))


@kernel("Transpose")
def transpose(x: np.ndarray, *, perm: Sequence[int]) -> np.ndarray:
    """perm=() reverses the axes (ONNX default)."""
    return np.transpose(x, tuple(perm) if perm else None)


@kernel("Squeeze")
def squeeze(x: np.ndarray, *, axes: Sequence[int]) -> np.ndarray:
    """axes=() removes every dim of size 1."""
    if not axes:
        return x.reshape(tuple(d for d in x.shape if d != 1))
    ax = tuple(_axis("Squeeze", a, x.ndim, "axes") for a in axes)
    bad = [a for a in ax if x.shape[a] != 1]
    if bad:
        raise ExecutionError(f"Squeeze: axes {list(axes)} of shape {list(x.shape)} are not all 1")
    return np.squeeze(x, axis=ax)


@kernel("Unsqueeze")
def unsqueeze(x: np.ndarray, *, axes: Sequence[int]) -> np.ndarray:
    """Negative axes count in the *output* rank, as in ONNX and np.expand_dims."""
    rank = x.ndim + len(axes)
    ax = tuple(_axis("Unsqueeze", a, rank, "axes") for a in axes)
    if len(set(ax)) != len(ax):
        raise ExecutionError(f"Unsqueeze: repeated axes {list(axes)}")
    return np.expand_dims(x, ax)


@kernel("Pad")
def pad(x: np.ndarray, *, pads: Sequence[int], mode: str, value: float) -> np.ndarray:
    """ONNX layout (all begins, then all ends). Negative pads crop first, then the positive
    pads are added to the cropped tensor (what onnxruntime does), so reflect/edge mirror the
    cropped data."""
    r = x.ndim
    if len(pads) != 2 * r:
        raise ExecutionError(f"Pad: pads {list(pads)} needs {2 * r} values for rank {r}")
    begin, end = pads[:r], pads[r:]
    crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begin, end, x.shape))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if not any(b or e for b, e in width):
        return x
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    if mode == "reflect":
        for (b, e), d in zip(width, x.shape):
            if (b or e) and max(b, e) >= d:
                raise ExecutionError(f"Pad: reflect pads {list(pads)} must be smaller than dim {d} "
                                     f"of input {list(x.shape)}")
        return np.pad(x, width, mode="reflect")
    if mode == "edge":
        if any((b or e) and d == 0 for (b, e), d in zip(width, x.shape)):
            raise ExecutionError(f"Pad: edge mode cannot pad an empty dim of {list(x.shape)}")
        return np.pad(x, width, mode="edge")
    raise ExecutionError(f"Pad: mode {mode!r} not constant/reflect/edge")


# -- Resize ------------------------------------------------------------------------------

def _source_coords(mode: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """x_original for every output index, in float32 like onnxruntime."""
    f32 = np.float32
    x = np.arange(out_len, dtype=f32)
    s, half = f32(scale), f32(0.5)
    if mode == "half_pixel":
        return (x + half) / s - half
    if mode == "pytorch_half_pixel":
        return (x + half) / s - half if out_len > 1 else np.zeros(out_len, f32)
    if mode == "align_corners":
        if out_len == 1:
            return np.zeros(out_len, f32)
        return x * f32(in_len - 1) / f32(out_len - 1)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    raise ExecutionError(f"Resize: coordinate_transformation_mode {mode!r} not supported")


def _nearest_index(xo: np.ndarray, nearest_mode: str, in_len: int) -> np.ndarray:
    x = xo.astype(np.float64)  # exact: x +- 0.5 must not round in float32
    if nearest_mode == "round_prefer_floor":
        i = np.ceil(x - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    elif nearest_mode == "floor":
        i = np.floor(x)
    elif nearest_mode == "ceil":
        i = np.ceil(x)
    else:
        raise ExecutionError(f"Resize: nearest_mode {nearest_mode!r} not supported")
    return np.clip(i, 0, in_len - 1).astype(np.intp)


def _linear_taps(xo: np.ndarray, in_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Two neighbours of the source coordinate clamped into [0, in_len-1]."""
    x = np.clip(xo, np.float32(0), np.float32(in_len - 1))
    i0 = np.minimum(x.astype(np.intp), in_len - 1)
    i1 = np.minimum(i0 + 1, in_len - 1)
    same = i0 == i1
    # |x - i| per side, as onnxruntime computes them (exact in float32 for these ranges).
    w0 = np.where(same, np.float32(0.5), np.abs(x - i1.astype(np.float32)))
    w1 = np.where(same, np.float32(0.5), np.abs(x - i0.astype(np.float32)))
    return np.stack([i0, i1], 1), np.stack([w0, w1], 1)


def _cubic_taps(xo: np.ndarray, in_len: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Keys cubic on floor(x)-1 .. floor(x)+2, neighbours clamped to the edge."""
    fl = np.floor(xo.astype(np.float64))
    t = xo.astype(np.float64) - fl
    w = np.stack([
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
    ], 1).astype(np.float32)
    idx = np.clip(fl.astype(np.intp)[:, None] + np.arange(-1, 3), 0, in_len - 1)
    return idx, w


def _apply_taps(x: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    bshape = [1] * x.ndim
    bshape[axis] = -1
    w = w.astype(x.dtype)
    out = np.take(x, idx[:, 0], axis=axis) * w[:, 0].reshape(bshape)
    for k in range(1, idx.shape[1]):
        out += np.take(x, idx[:, k], axis=axis) * w[:, k].reshape(bshape)
    return out


@kernel("Resize")
def resize(x: np.ndarray, *, mode: str, scales: Sequence[float], sizes: Sequence[int],
           coordinate_transformation_mode: str, nearest_mode: str, cubic_coeff_a: float
           ) -> np.ndarray:
    """``scales`` drives the coordinate transform, ``sizes`` (when given) the output dims —
    as onnxruntime does after turning an ONNX ``sizes`` input into scales = sizes/in."""
    if len(scales) != x.ndim or (sizes and len(sizes) != x.ndim):
        raise ExecutionError(f"Resize: scales {list(scales)} / sizes {list(sizes)} need "
                             f"{x.ndim} values for input {list(x.shape)}")
    if mode not in ("nearest", "linear", "cubic"):
        raise ExecutionError(f"Resize: mode {mode!r} not nearest/linear/cubic")
    out_shape = resize_shape(x.shape, tuple(scales), tuple(sizes))
    # An axis with scale 1 and an unchanged size maps to itself in every mode.
    axes = [i for i in range(1, x.ndim)
            if not (out_shape[i] == x.shape[i] and np.float32(scales[i]) == 1)]
    if mode == "nearest":
        for ax in axes:
            xo = _source_coords(coordinate_transformation_mode, out_shape[ax], x.shape[ax], scales[ax])
            x = np.take(x, _nearest_index(xo, nearest_mode, x.shape[ax]), axis=ax)
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise ExecutionError(f"Resize: mode {mode!r} needs a float input, got {x.dtype}")
    dtype = x.dtype
    y = x.astype(np.result_type(dtype, np.float32), copy=False)
    # Shrinking axes first: later axes then work on fewer elements.
    for ax in sorted(axes, key=lambda a: out_shape[a] / max(x.shape[a], 1)):
        xo = _source_coords(coordinate_transformation_mode, out_shape[ax], x.shape[ax], scales[ax])
        idx, w = (_linear_taps(xo, x.shape[ax]) if mode == "linear"
                  else _cubic_taps(xo, x.shape[ax], cubic_coeff_a))
        y = _apply_taps(y, ax, idx, w)
    return y.astype(dtype, copy=False)


# -- block rearrangements -------------------------------------------------------------------

@kernel("DepthToSpace")
def depth_to_space(x: np.ndarray, *, blocksize: int, mode: str) -> np.ndarray:
    """DCR: depth is (b, b, C) outermost first; CRD: (C, b, b), PyTorch's PixelShuffle."""
    n, c, h, w = x.shape
    b = blocksize
    if c % (b * b):
        raise ExecutionError(f"DepthToSpace: channels {c} not divisible by blocksize^2 = {b * b}")
    oc = c // (b * b)
    if mode == "DCR":
        y = x.reshape(n, b, b, oc, h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        y = x.reshape(n, oc, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise ExecutionError(f"DepthToSpace: mode {mode!r} not DCR/CRD")
    return y.reshape(n, oc, h * b, w * b)


@kernel("SpaceToDepth")
def space_to_depth(x: np.ndarray, *, blocksize: int) -> np.ndarray:
    """The inverse of DepthToSpace DCR: output channel = (by * b + bx) * C + c."""
    n, c, h, w = x.shape
    b = blocksize
    if h % b or w % b:
        raise ExecutionError(f"SpaceToDepth: spatial {h}x{w} not divisible by blocksize {b}")
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@kernel("Gather")
def gather(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    """np.take along ``axis``; indices in [-d, d-1], negatives count from the end."""
    ax = _axis("Gather", axis, x.ndim)
    idx = np.asarray(indices)
    d = x.shape[ax]
    if idx.size and (idx.min() < -d or idx.max() >= d):
        raise ExecutionError(f"Gather: indices in [{idx.min()}, {idx.max()}] out of range for "
                             f"dim {d} of axis {axis}")
    return np.take(x, idx, axis=ax)
