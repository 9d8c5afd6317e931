"""TensorFlow layer ops: convolutions, batch norm, matrix products, pools.

Each becomes fc's NCHW node between two Transposes (``nchw_layer``) unless the node is
already NCHW; the weights are rearranged once, here: a Conv2D filter ``(kh, kw, C/g, M)``
becomes ``(M, C/g, kh, kw)``, a depthwise one ``(kh, kw, C, m)`` ``(C*m, 1, kh, kw)``
(output channel ``c*m + j``, TF's order), a transposed convolution's ``(kh, kw, M, C)``
``(C, M, kh, kw)``.

'SAME' padding is TF's: ``total = max((ceil(in/s) - 1)*s + (k-1)*d + 1 - in, 0)``, the extra
row or column at the end (``begin = total // 2``); 'SAME' average pooling divides by the
elements inside the input only (``count_include_pad=0``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fc.frontend.tf.context import GraphView, TFContext, nchw_layer
from fc.frontend.tf.registry import converter
from fc.ir.core import Value

__all__ = ["same_pads", "window_pads"]


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's 'SAME' (begin, end) padding of one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _hw(fmt: str, values: tuple[int, ...]) -> tuple[int, int]:
    """The (H, W) entries of a 4-element NHWC/NCHW attribute."""
    return (values[1], values[2]) if fmt == "NHWC" else (values[2], values[3])


def window_pads(ctx: TFContext, in_hw: tuple[int, int], kernel: tuple[int, int],
                strides: tuple[int, int], dilations: tuple[int, int], fmt: str
                ) -> tuple[int, int, int, int]:
    """fc's (top, left, bottom, right) from TF's ``padding`` (SAME/VALID/EXPLICIT)."""
    padding = ctx.attrs.str("padding")
    if padding == "VALID":
        return (0, 0, 0, 0)
    if padding == "SAME":
        (t, b), (left, r) = (same_pads(s, k, st, d) for s, k, st, d in
                             zip(in_hw, kernel, strides, dilations))
        return (t, left, b, r)
    explicit = ctx.attrs.ints("explicit_paddings")
    pairs = [explicit[2 * i:2 * i + 2] for i in range(4)]
    (t, b), (left, r) = (pairs[1], pairs[2]) if fmt == "NHWC" else (pairs[2], pairs[3])
    return (t, left, b, r)


def _conv_check(ctx: TFContext) -> str | None:
    fmt = ctx.attrs.str("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        return f"data_format={fmt}"
    if ctx.attrs.str("padding") not in ("SAME", "VALID", "EXPLICIT"):
        return f"padding={ctx.attrs.str('padding')}"
    return None


def _geometry(ctx: TFContext, fmt: str) -> tuple[tuple[int, int], tuple[int, int]]:
    strides = _hw(fmt, ctx.attrs.ints("strides", (1, 1, 1, 1)))
    dilations = _hw(fmt, ctx.attrs.ints("dilations", (1, 1, 1, 1)))
    return strides, dilations


# -- dilated convolutions as TF traces them: SpaceToBatchND -> conv -> BatchToSpaceND -------
_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")


def _dilation_wrap(ctx: TFContext) -> tuple[str, tuple[int, int], tuple[int, ...]] | None:
    """For a conv between SpaceToBatchND and BatchToSpaceND (``tf.nn.convolution``'s dilated
    form): (the real input tensor, dilations, fc pads). The conv's own padding is VALID."""
    s2b = ctx.producer(0)
    if s2b is None or s2b.op != "SpaceToBatchND":
        return None
    reader = ctx.view.only_reader(ctx.name)
    b2s = ctx.view.nodes.get(reader) if reader else None
    if b2s is None or b2s.op != "BatchToSpaceND" or ctx.attrs.str("padding") != "VALID":
        return None
    x_t, block_t, pads_t = GraphView.data_inputs(s2b)
    block, pads = ctx.view.const_of(block_t), ctx.view.const_of(pads_t)
    crops = ctx.view.const_of(GraphView.data_inputs(b2s)[2])
    if block is None or pads is None or crops is None or np.shape(block) != (2,):
        return None
    pads, crops = np.asarray(pads).reshape(2, 2), np.asarray(crops).reshape(2, 2)
    (pt, pb), (pl, pr) = pads - np.asarray([[0, crops[0, 1]], [0, crops[1, 1]]])
    if crops[0, 0] or crops[1, 0] or min(pt, pb, pl, pr) < 0:
        return None
    return x_t, (int(block[0]), int(block[1])), (int(pt), int(pl), int(pb), int(pr))


def _space_to_batch_check(ctx: TFContext) -> str | None:
    readers = ctx.view.readers.get(ctx.name, [])
    ok = readers and all(ctx.view.nodes[r].op in _CONV_OPS and ctx.view.only_reader(r) and
                         ctx.view.nodes[ctx.view.only_reader(r)].op == "BatchToSpaceND"
                         for r in readers if r in ctx.view.nodes)
    return None if ok else "outside a dilated convolution"


@converter("SpaceToBatchND", check=_space_to_batch_check)
def space_to_batch(ctx: TFContext) -> Value:
    """Only a dilated convolution's wrapper: the conv reads the input before it, so this
    stands in (unread) for the rearranged tensor."""
    return ctx.add_node("Identity", [ctx.value(0)]).output


def _batch_to_space_check(ctx: TFContext) -> str | None:
    conv = ctx.producer(0)
    return None if conv is not None and conv.op in _CONV_OPS else "outside a dilated convolution"


@converter("BatchToSpaceND", check=_batch_to_space_check)
def batch_to_space(ctx: TFContext) -> Value:
    """The conv before it computed the dilated result already."""
    return ctx.value(0)


def _conv_input(ctx: TFContext, fmt: str, kernel: tuple[int, int]
                ) -> tuple[Value, tuple[int, ...], dict[str, Any]]:
    """The conv's input value, its TF shape, and strides/dilations/pads (undoing a dilation
    wrapper)."""
    wrap = _dilation_wrap(ctx)
    strides, dilations = _geometry(ctx, fmt)
    if wrap is not None:
        x_t, dilations, pads = wrap
        x = ctx.view.env[x_t]
        return x, tuple(x.shape), {"strides": strides, "dilations": dilations, "pads": pads}
    x_shape = ctx.shape(0)
    pads = window_pads(ctx, _hw(fmt, x_shape), kernel, strides, dilations, fmt)
    return ctx.value(0), x_shape, {"strides": strides, "dilations": dilations, "pads": pads}


@converter("Conv2D", check=_conv_check)
def conv2d(ctx: TFContext) -> Value:
    fmt = ctx.data_format()
    filt = ctx.const(1, "filter")  # (kh, kw, C/group, M)
    x, x_shape, attrs = _conv_input(ctx, fmt, filt.shape[:2])
    kh, kw, cg, m = filt.shape
    c = x_shape[3] if fmt == "NHWC" else x_shape[1]
    if c % cg or m % (c // cg):
        raise ctx.error(f"filter {list(filt.shape)} does not fit {c} input channels")
    w = ctx.const_value(_oihw(filt), ctx.weight_name(1))
    return nchw_layer(ctx, "Conv", x, [w], {**attrs, "group": c // cg}, fmt)


def _oihw(filt: np.ndarray, tile: int = 128, tap_tile: int = 64) -> np.ndarray:
    """TF's ``(kh, kw, I, O)`` filter as a contiguous ``(O, I, kh, kw)`` array, the same values.

    ``np.ascontiguousarray(filt.transpose(3, 2, 0, 1))`` walks the source with a large stride
    in every dimension (0.28 s of ResNet-50's 0.5 s conversion). Copied in cache-sized tiles
    instead: a 1x1 filter as ``(I, O)`` -> ``(O, I)`` tiles of ``tile`` squared; a larger one
    as ``(taps, I, O)`` -> ``(O, I, taps)`` blocks of ``tap_tile`` channels each way, all taps
    of a block at once (ResNet-50's 3x3 filters: 66 ms naive, 28 ms a tap plane at a time,
    19-24 ms in blocks; CPU time, warm memory)."""
    kh, kw, i, o = filt.shape
    taps = filt.reshape(kh * kw, i, o)
    out = np.empty((o, i, kh * kw), filt.dtype)
    if kh * kw == 1:
        plane, src = out[:, :, 0], taps[0]
        for r in range(0, o, tile):
            for c in range(0, i, tile):
                plane[r:r + tile, c:c + tile] = src[c:c + tile, r:r + tile].T
    else:
        for r in range(0, o, tap_tile):
            for c in range(0, i, tap_tile):
                out[r:r + tap_tile, c:c + tap_tile] = \
                    taps[:, c:c + tap_tile, r:r + tap_tile].transpose(2, 1, 0)
    return out.reshape(o, i, kh, kw)


@converter("DepthwiseConv2dNative", check=_conv_check)
def depthwise_conv2d(ctx: TFContext) -> Value:
    fmt = ctx.data_format()
    filt = ctx.const(1, "filter")  # (kh, kw, C, multiplier)
    kh, kw, c, mult = filt.shape
    x, _, attrs = _conv_input(ctx, fmt, (kh, kw))
    w = filt.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)
    w_value = ctx.const_value(np.ascontiguousarray(w), ctx.weight_name(1))
    return nchw_layer(ctx, "Conv", x, [w_value], {**attrs, "group": c}, fmt)


@converter("Conv2DBackpropInput", check=_conv_check)
def conv2d_transpose(ctx: TFContext) -> Value:
    """The gradient of a Conv2D w.r.t. its input: fc's ConvTranspose. The forward conv's
    padding of the output size decides the crop: ``pads`` at the start, the rest at the end
    (where it is negative it becomes ``output_padding``)."""
    fmt = ctx.data_format()
    out_size = tuple(int(d) for d in ctx.const(0, "input_sizes"))
    filt = ctx.const(1, "filter")  # (kh, kw, M, C)
    kh, kw, m, c = filt.shape
    x_shape = ctx.shape(2)
    strides, dilations = _geometry(ctx, fmt)
    out_hw = _hw(fmt, out_size)
    in_hw = _hw(fmt, x_shape)
    begin = window_pads(ctx, out_hw, (kh, kw), strides, dilations, fmt)
    pads, out_pad = [begin[0], begin[1], 0, 0], [0, 0]
    for i, (o, n, s, d, k) in enumerate(zip(out_hw, in_hw, strides, dilations, (kh, kw))):
        full = (n - 1) * s + d * (k - 1) + 1
        end = full - pads[i] - o
        if end >= 0:
            pads[i + 2] = end
        else:
            out_pad[i] = -end
    w = ctx.const_value(_oihw(filt), ctx.weight_name(1))
    attrs = {"strides": strides, "dilations": dilations, "pads": tuple(pads),
             "output_padding": tuple(out_pad)}
    return nchw_layer(ctx, "ConvTranspose", ctx.value(2), [w], attrs, fmt)


def _fused_bn_check(ctx: TFContext) -> str | None:
    if ctx.attrs.bool("is_training", True):
        return "is_training=True"
    fmt = ctx.attrs.str("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        return f"data_format={fmt}"
    used = [k for k in range(1, 6) if f"{ctx.name}:{k}" in ctx.view.read_tensors]
    return f"batch statistics (output {used[0]}) are read" if used else None


@converter("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", check=_fused_bn_check)
def fused_batch_norm(ctx: TFContext) -> list[Value | None]:
    """Inference batch norm (TF1 and Keras 2 graphs); only output 0 is read."""
    params = [ctx.value(i) for i in range(1, 5)]
    y = nchw_layer(ctx, "BatchNormalization", ctx.value(0), params,
                   {"epsilon": ctx.attrs.float("epsilon", 1e-3)}, ctx.data_format())
    return [y, None, None, None, None, None]


# -- matrix products -------------------------------------------------------------------------
@converter("MatMul")
def matmul(ctx: TFContext) -> Value:
    """A weight B (Keras' Dense) makes a Gemm; two computed operands a MatMul."""
    ta, tb = ctx.attrs.bool("transpose_a", False), ctx.attrs.bool("transpose_b", False)
    if ctx.is_const(1) and ctx.rank(0) == 2:
        return ctx.add_node("Gemm", [ctx.value(0), ctx.value(1)],
                            {"transA": int(ta), "transB": int(tb)}).output
    a = _swap_last(ctx, ctx.value(0), ta, "a")
    b = _swap_last(ctx, ctx.value(1), tb, "b")
    return ctx.add_node("MatMul", [a, b]).output


def _swap_last(ctx: TFContext, v: Value, swap: bool, which: str) -> Value:
    if not swap:
        return v
    rank = len(v.shape)
    perm = (*range(rank - 2), rank - 1, rank - 2)
    return ctx.add_node("Transpose", [v], {"perm": perm}, suffix=f"transpose_{which}",
                        final=False).output


@converter("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def batch_matmul(ctx: TFContext) -> Value:
    a = _swap_last(ctx, ctx.value(0), ctx.attrs.bool("adj_x", False), "a")
    b = _swap_last(ctx, ctx.value(1), ctx.attrs.bool("adj_y", False), "b")
    return ctx.add_node("MatMul", [a, b]).output


# -- pools -----------------------------------------------------------------------------------
def _pool_check(ctx: TFContext) -> str | None:
    fmt = ctx.attrs.str("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        return f"data_format={fmt}"
    ksize = ctx.attrs.ints("ksize", (1, 1, 1, 1))
    strides = ctx.attrs.ints("strides", (1, 1, 1, 1))
    if len(ksize) != 4 or len(strides) != 4:
        return "ksize/strides not 4-D"
    n, c = (0, 3) if fmt == "NHWC" else (0, 1)
    if ksize[n] != 1 or ksize[c] != 1 or strides[n] != 1 or strides[c] != 1:
        return "pooling across batch or channels"
    return None


def _pool(ctx: TFContext, op: str) -> Value:
    fmt = ctx.data_format()
    kernel = _hw(fmt, ctx.attrs.ints("ksize"))
    strides = _hw(fmt, ctx.attrs.ints("strides"))
    pads = window_pads(ctx, _hw(fmt, ctx.shape(0)), kernel, strides, (1, 1), fmt)
    attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if op == "AveragePool":
        attrs["count_include_pad"] = 0
    return nchw_layer(ctx, op, ctx.value(0), [], attrs, fmt)


@converter("MaxPool", check=_pool_check)
def max_pool(ctx: TFContext) -> Value:
    return _pool(ctx, "MaxPool")


@converter("AvgPool", check=_pool_check)
def avg_pool(ctx: TFContext) -> Value:
    return _pool(ctx, "AveragePool")
