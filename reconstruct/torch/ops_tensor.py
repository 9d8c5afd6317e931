"""Data-movement ops as torch calls: concat/split/slice, reshapes, pad, resize, gather.

The IR's shapes are static but its batch dim is not (a graph compiled at batch 1 runs at
batch 8), so a Reshape's ``0`` ("copy this dim") becomes ``-1`` when it is the only unknown,
and ``x.size(i)`` otherwise; block rearrangements use ``-1`` for the batch.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from fc.errors import ReconstructError
from fc.ir.core import Value
from fc.ir.schemas.tensor import slice_bounds
from fc.reconstruct.torch.builder import Builder
from fc.reconstruct.torch.registry import LOWERINGS

__all__: list[str] = []


def _fail(b: Builder, msg: str) -> ReconstructError:
    assert b.node is not None
    return ReconstructError(f"node {b.node.name!r} ({b.node.op_type}): {msg}")


@LOWERINGS.register("Concat")
def concat(b: Builder, *xs: Value, axis) -> fx.Node:
    return b.call(torch.cat, list(xs), axis)


@LOWERINGS.register("Split")
def split(b: Builder, x: Value, *, axis, split) -> list[fx.Node]:
    assert b.node is not None
    parts = b.call(torch.split, x, list(split), axis)
    return [b.call(operator.getitem, parts, i, name=v.name) for i, v in enumerate(b.node.outputs)]


@LOWERINGS.register("Slice")
def slice_(b: Builder, x: Value, *, starts, ends, axes, steps) -> fx.Node:
    """``x[..., start:end:step, ...]``; a negative step flips the axis first (torch slices
    only forward)."""
    rank = len(x.shape)
    index: list[slice] = [slice(None)] * rank
    flip = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        ax = a % rank
        dim = x.shape[ax]
        start, _, length = slice_bounds(dim, s, e, st)
        if st > 0:
            index[ax] = slice(start, start + length * st if length else start, st)
        else:  # element start - k*|st| sits at dim-1-start + k*|st| of the flipped axis
            flip.append(ax)
            first = dim - 1 - start
            index[ax] = slice(first, first + length * -st if length else first, -st)
    y = b.call(torch.flip, x, tuple(flip)) if flip else b.arg(x)
    while len(index) > 1 and index[-1] == slice(None):
        index.pop()
    return b.call(operator.getitem, y, tuple(index))


@LOWERINGS.register("Reshape")
def reshape(b: Builder, x: Value, *, shape, allowzero) -> fx.Node:
    dims: list = list(shape)
    copies = [i for i, d in enumerate(dims) if d == 0] if not allowzero else []
    if len(copies) == 1 and -1 not in dims:
        dims[copies[0]] = -1
    else:
        for i in copies:
            dims[i] = b.method("size", x, i, name=f"{b._out_name}_dim{i}")
    return b.method("reshape", x, *dims)


@LOWERINGS.register("Flatten")
def flatten(b: Builder, x: Value, *, axis) -> fx.Node:
    """Always 2-D: (prod(shape[:axis]), prod(shape[axis:]))."""
    ax = axis % len(x.shape) if axis < 0 else axis
    if ax == 0:
        return b.method("reshape", x, 1, -1)
    y = b.call(torch.flatten, x, ax) if ax < len(x.shape) else b.method("unsqueeze", x, -1)
    return y if ax == 1 else b.call(torch.flatten, y, 0, ax - 1)


@LOWERINGS.register("Transpose")
def transpose(b: Builder, x: Value, *, perm) -> fx.Node:
    return b.method("permute", x, *(perm or reversed(range(len(x.shape)))))


@LOWERINGS.register("Squeeze")
def squeeze(b: Builder, x: Value, *, axes) -> fx.Node:
    if not axes:
        return b.call(torch.squeeze, x)
    return b.call(torch.squeeze, x, tuple(a % len(x.shape) for a in axes))


@LOWERINGS.register("Unsqueeze")
def unsqueeze(b: Builder, x: Value, *, axes) -> fx.Node:
    rank = len(x.shape) + len(axes)
    y = b.arg(x)
    for a in sorted(a % rank for a in axes):
        y = b.call(torch.unsqueeze, y, a)
    return y


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


@LOWERINGS.register("Pad")
def pad(b: Builder, x: Value, *, pads, mode, value) -> fx.Node:
    rank = len(x.shape)
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    while pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    if not pairs:
        return b.arg(x)
    flat = tuple(p for pair in reversed(pairs) for p in pair)  # torch: last axis first
    if mode == "constant":
        return b.call(F.pad, x, flat, value=value)
    return b.call(F.pad, x, flat, mode=_PAD_MODES[mode])


_LINEAR = {3: "linear", 4: "bilinear", 5: "trilinear"}


@LOWERINGS.register("Resize")
def resize(b: Builder, x: Value, *, mode, scales, sizes, coordinate_transformation_mode,
           nearest_mode, cubic_coeff_a) -> fx.Node:
    """``F.interpolate`` where its coordinate mapping is the IR's, index gathers for the other
    nearest modes; anything else is refused with the reason."""
    assert b.node is not None
    rank, ctm = len(x.shape), coordinate_transformation_mode
    out = tuple(b.node.outputs[0].shape)
    spatial = scales[1] == 1.0 and out[:2] == tuple(x.shape[:2])
    # torch maps coordinates with 1/scale_factor when it is given one (the IR's rule), and
    # with in/out for size= (the IR's rule when the model gave sizes).
    size_kw: dict | None = None
    if tuple(math.floor(d * s) for d, s in zip(x.shape[2:], scales[2:])) == out[2:]:
        size_kw = {"scale_factor": tuple(float(s) for s in scales[2:])}
    elif sizes:
        size_kw = {"size": out[2:]}
    if mode == "nearest":
        torch_mode = {("asymmetric", "floor"): "nearest",
                      ("half_pixel", "round_prefer_ceil"): "nearest-exact",
                      ("pytorch_half_pixel", "round_prefer_ceil"): "nearest-exact",
                      ("tf_half_pixel_for_nn", "floor"): "nearest-exact"}.get((ctm, nearest_mode))
        if torch_mode is not None and spatial and size_kw is not None:
            return b.call(F.interpolate, x, **size_kw, mode=torch_mode)
        return _nearest_by_index(b, x, out, scales, ctm, nearest_mode)
    align = ctm == "align_corners"
    if not spatial:
        problem = "it resizes the batch or channel axis"
    elif size_kw is None:
        problem = f"scales {list(scales)} give output {list(out)} only in float32 rounding"
    elif ctm not in ("align_corners", "half_pixel", "pytorch_half_pixel"):
        problem = f"coordinate_transformation_mode {ctm!r} (torch has align_corners, half_pixel)"
    elif ctm == "pytorch_half_pixel" and 1 in out[2:]:
        problem = "pytorch_half_pixel to an output size of 1"
    elif mode == "linear" and rank in _LINEAR:
        return b.call(F.interpolate, x, **size_kw, mode=_LINEAR[rank], align_corners=align)
    elif mode == "cubic" and rank == 4 and cubic_coeff_a == -0.75:
        return b.call(F.interpolate, x, **size_kw, mode="bicubic", align_corners=align)
    else:
        problem = f"rank {rank} with cubic_coeff_a={cubic_coeff_a}"
    raise _fail(b, f"{mode} resize has no torch equivalent: {problem}")


def _nearest_by_index(b: Builder, x: Value, out: tuple[int, ...], scales, ctm: str,
                      nearest_mode: str) -> fx.Node:
    """Nearest resize as one ``index_select`` per resized axis, with the source indices of
    the IR's coordinate mode (static: the spatial sizes are)."""
    from fc.np_ops.tensor import _nearest_index, _source_coords

    y = b.arg(x)
    for ax in range(1, len(x.shape)):
        if out[ax] == x.shape[ax] and np.float32(scales[ax]) == 1:
            continue
        src = _source_coords(ctm, out[ax], x.shape[ax], scales[ax])
        idx = _nearest_index(src, nearest_mode, x.shape[ax]).astype(np.int64)
        y = b.call(torch.index_select, y, ax, b.constant(idx, f"index{ax}"))
    return y


@LOWERINGS.register("DepthToSpace")
def depth_to_space(b: Builder, x: Value, *, blocksize, mode) -> fx.Node:
    if mode == "CRD":
        return b.layer(nn.PixelShuffle, dict(upscale_factor=blocksize), [x])
    _, c, h, w = x.shape
    k = blocksize
    y = b.method("reshape", x, -1, k, k, c // (k * k), h, w)
    y = b.method("permute", y, 0, 3, 4, 1, 5, 2)
    return b.method("reshape", y, -1, c // (k * k), h * k, w * k)


@LOWERINGS.register("SpaceToDepth")
def space_to_depth(b: Builder, x: Value, *, blocksize) -> fx.Node:
    _, c, h, w = x.shape
    k = blocksize
    y = b.method("reshape", x, -1, c, h // k, k, w // k, k)
    y = b.method("permute", y, 0, 3, 5, 1, 2, 4)
    return b.method("reshape", y, -1, c * k * k, h // k, w // k)


@LOWERINGS.register("Gather")
def gather(b: Builder, x: Value, indices: Value, *, axis) -> fx.Node:
    """``np.take``: indexing with the (constant or computed) index tensor on ``axis``."""
    ax = axis % len(x.shape)
    return b.call(operator.getitem, x, (slice(None),) * ax + (b.arg(indices),))
