"""TensorFlow lowerings of the layer ops: convolutions, pools, normalizations, dense, softmax.

Convolutions and pools run channels-last (NHWC), the only layout TensorFlow's CPU pooling
kernels accept; their weights are arranged once (OIHW -> HWIO, depthwise
``(C*m, 1, kh, kw)`` -> ``(kh, kw, C, m)``, Gemm's ``(N, K)`` -> ``(K, N)``), so the .pb
reads like a Keras model's.

Padding is the IR's explicit ``(top, left, bottom, right)``. Where it is TF's own 'SAME'
(the extra row at the end), convolutions and pools use 'SAME' (whose average excludes the
padding, as ``count_include_pad=0``); otherwise convolutions take TF's explicit padding, and
pools pad explicitly (-inf for max) with an average divided by the IR's count of each window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fc.ir.schemas._rules import pool_out
from fc.reconstruct.tf.activations import activate
from fc.reconstruct.tf.context import NHWC, LowerContext, Lt, identity, inverse
from fc.reconstruct.tf.registry import LOWERINGS

__all__ = ["same_pads", "channel_param"]


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' (begin, end) padding of one axis (the extra one at the end)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _conv_padding(x: Lt, kernel: tuple[int, ...], strides: tuple[int, ...],
                  dilations: tuple[int, ...], pads: tuple[int, ...]) -> Any:
    """IR pads as TF's padding: 'VALID' without any, 'SAME' where they are TF's own (as
    Keras writes them), else explicit NHWC padding."""
    if not any(pads):
        return "VALID"
    if all((pads[i], pads[i + 2]) == same_pads(size, dilations[i] * (kernel[i] - 1) + 1,
                                               strides[i])
           for i, size in enumerate(x.shape[2:])):
        return "SAME"
    return [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]]


def channel_param(ctx: LowerContext, p: Lt, rank: int, perm: tuple[int, ...], *,
                  trainable: bool = True) -> Any:
    """A per-channel ``(C,)`` parameter shaped to broadcast over axis 1 of a rank-``rank``
    value arranged as ``perm`` (``(C,)`` itself for channels-last)."""
    if perm[-1] == 1:
        return ctx.weight(p, trainable=trainable)
    shaped = (p.shape[0],) + (1,) * (rank - 2)
    k = rank - len(shaped)  # the leading axes numpy broadcasting adds
    full = (1,) * k + shaped
    if p.const is None:
        t = ctx.tf.reshape(ctx.ir(p), full)
        return ctx.tf.transpose(t, list(perm))
    arranged = Lt(None, identity(rank), shape=full, dtype=p.dtype, name=p.name,
                  const=p.const.reshape(full))
    return ctx.weight(arranged, perm, trainable=trainable)


def _finish(ctx: LowerContext, y: Any, b: Lt | None, activation: str, alpha: float, beta: float
            ) -> Lt:
    """Bias (channels-last), fused activation, and the NHWC output."""
    if b is not None:
        y = ctx.tf.nn.bias_add(y, ctx.weight(b))
    return ctx.out(activate(ctx, y, activation, alpha, beta), NHWC)


@LOWERINGS.register("Conv")
def conv(ctx: LowerContext, x: Lt, w: Lt, b: Lt | None = None, *, strides: tuple[int, ...],
         pads: tuple[int, ...], dilations: tuple[int, ...], group: int, activation: str,
         act_alpha: float, act_beta: float) -> Lt:
    tf = ctx.tf
    m, cg, kh, kw = w.shape
    c = x.shape[1]
    t = ctx.nhwc(x)
    padding = _conv_padding(x, (kh, kw), strides, dilations, pads)
    if group > 1 and group == c and cg == 1:  # depthwise: (C*mult, 1, kh, kw) -> (kh, kw, C, mult)
        step = strides
        if strides[0] != strides[1]:
            # TF's CPU depthwise kernel takes equal strides only: convolve at stride 1 over
            # the explicitly padded input and keep every stride-th row/column (exact).
            padding = [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]]
            strides = (1, 1)
        if isinstance(padding, list):
            # grappler's shape inference aborts on a depthwise convolution with explicit
            # padding fused with its bias (TF 2.21): pad first, as Keras's ZeroPadding2D does
            t, padding = tf.pad(t, padding), "VALID"
        filt = ctx.weight(w, (2, 3, 1, 0), (kh, kw, c, m // c))
        y = tf.nn.depthwise_conv2d(t, filt, strides=[1, *strides, 1], padding=padding,
                                   dilations=list(dilations))
        if step != strides:
            y = y[:, ::step[0], ::step[1], :]
    elif group == 1:
        y = tf.nn.conv2d(t, ctx.weight(w, (2, 3, 1, 0)), strides=[1, *strides, 1],
                         padding=padding, dilations=[1, *dilations, 1])
    else:
        # Grouped: one Conv2D per group, concatenated. A single grouped Conv2D followed by
        # its BiasAdd is rewritten by grappler's remapper into _FusedConv2D, which refuses
        # groups at run time ("Fused conv implementation does not support grouped
        # convolutions", TF 2.21).
        filt = ctx.weight(w, (2, 3, 1, 0))  # (kh, kw, C/group, M)
        cin, mg = c // group, m // group
        y = tf.concat([tf.nn.conv2d(t[..., g * cin:(g + 1) * cin],
                                    filt[..., g * mg:(g + 1) * mg], strides=[1, *strides, 1],
                                    padding=padding, dilations=[1, *dilations, 1])
                       for g in range(group)], axis=-1)
    return _finish(ctx, y, b, activation, act_alpha, act_beta)


def _dilate_kernel(tf: Any, filt: Any, dilations: tuple[int, ...]) -> Any:
    """An HWxx kernel with ``d - 1`` zeros between its taps along H and W (differentiable,
    so the trainable form keeps training the original taps)."""
    for axis, d in enumerate(dilations):
        if d == 1:
            continue
        k = filt.shape[axis]
        moved = tf.experimental.numpy.moveaxis(filt, axis, 0)
        rest = moved.shape[1:]
        spread = tf.concat([moved[:, None], tf.zeros([k, d - 1, *rest], moved.dtype)], axis=1)
        spread = tf.reshape(spread, [k * d, *rest])[:(k - 1) * d + 1]
        filt = tf.experimental.numpy.moveaxis(spread, 0, axis)
    return filt


@LOWERINGS.register("ConvTranspose")
def conv_transpose(ctx: LowerContext, x: Lt, w: Lt, b: Lt | None = None, *,
                   strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
                   output_padding: tuple[int, ...], group: int, activation: str,
                   act_alpha: float, act_beta: float) -> Lt:
    """The full (VALID) transposed convolution, extended by ``output_padding`` (zero rows at
    the end, where TF allows fewer than a stride, else padded after), then cropped by
    ``pads``."""
    tf = ctx.tf
    c, mg, kh, kw = w.shape
    t = ctx.nhwc(x)
    h, wd = x.shape[2:]
    full = [(size - 1) * s + d * (k - 1) + 1 for size, s, d, k in
            zip((h, wd), strides, dilations, (kh, kw))]
    inner = [op if op < s else 0 for op, s in zip(output_padding, strides)]
    filt = ctx.weight(w, (2, 3, 1, 0))  # (kh, kw, M/group, C)
    if any(d > 1 for d in dilations):
        # TF's CPU Conv2DBackpropInput refuses dilations: the same maths with the kernel
        # dilated (zeros between its taps), at dilation 1.
        filt = _dilate_kernel(tf, filt, dilations)
        dilations = (1, 1)
    batch = tf.shape(t)[0]
    cin = c // group
    ys = []
    for g in range(group):
        tg = t if group == 1 else t[..., g * cin:(g + 1) * cin]
        fg = filt if group == 1 else filt[..., g * cin:(g + 1) * cin]
        shape = tf.stack([batch, full[0] + inner[0], full[1] + inner[1], mg])
        ys.append(tf.nn.conv2d_transpose(tg, fg, shape, strides=[1, *strides, 1], padding="VALID",
                                         dilations=[1, *dilations, 1]))
    y = ys[0] if group == 1 else tf.concat(ys, axis=3)
    outer = [op - i for op, i in zip(output_padding, inner)]
    if any(outer):
        y = tf.pad(y, [[0, 0], [0, outer[0]], [0, outer[1]], [0, 0]])
    hf, wf = full[0] + output_padding[0], full[1] + output_padding[1]
    if any(pads):
        y = y[:, pads[0]:hf - pads[2], pads[1]:wf - pads[3], :]
    return _finish(ctx, y, b, activation, act_alpha, act_beta)


@LOWERINGS.register("BatchNormalization")
def batch_norm(ctx: LowerContext, x: Lt, scale: Lt, b: Lt, mean: Lt, var: Lt, *, epsilon: float
               ) -> Lt:
    """Inference batch norm; 4-D as Keras emits it (FusedBatchNormV3, NHWC). The running
    statistics are never trained. FusedBatchNorm has no float64 kernel: a float64 graph (the
    exact-arithmetic run of a test) takes the unfused ops."""
    tf = ctx.tf
    if x.rank == 4 and x.dtype != "float64":
        y = tf.raw_ops.FusedBatchNormV3(
            x=ctx.nhwc(x), scale=ctx.weight(scale), offset=ctx.weight(b),
            mean=ctx.weight(mean, trainable=False), variance=ctx.weight(var, trainable=False),
            epsilon=epsilon, is_training=False)[0]
        return ctx.out(y, NHWC)
    gamma, beta = (channel_param(ctx, p, x.rank, x.perm) for p in (scale, b))
    mu, sigma2 = (channel_param(ctx, p, x.rank, x.perm, trainable=False) for p in (mean, var))
    y = tf.nn.batch_normalization(ctx.arrange(x, x.perm), mu, sigma2, beta, gamma, epsilon)
    return ctx.out(y, x.perm)


@LOWERINGS.register("Scale")
def scale(ctx: LowerContext, x: Lt, s: Lt, b: Lt | None = None, *, activation: str,
          act_alpha: float, act_beta: float) -> Lt:
    """x * scale[c] + B[c] over axis 1, then the fused activation."""
    y = ctx.arrange(x, x.perm) * channel_param(ctx, s, x.rank, x.perm)
    if b is not None:
        y = y + channel_param(ctx, b, x.rank, x.perm)
    return ctx.out(activate(ctx, y, activation, act_alpha, act_beta), x.perm)


@LOWERINGS.register("Gemm")
def gemm(ctx: LowerContext, a: Lt, b: Lt, c: Lt | None = None, *, alpha: float, beta: float,
         transA: int, transB: int, activation: str, act_alpha: float, act_beta: float) -> Lt:
    """``alpha * A' @ B' + beta * C``; a weight B is stored (K, N), as Keras's Dense kernel."""
    tf = ctx.tf
    ta = ctx.ir(a)
    tb = ctx.weight(b, (1, 0)) if transB else ctx.weight(b)
    y = tf.linalg.matmul(ta, tb, transpose_a=bool(transA))
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        n = ctx.node.output.shape[1]
        if beta == 1.0 and c.shape == (n,):
            y = tf.nn.bias_add(y, ctx.weight(c))
        else:
            tc = ctx.broadcast(c, (0, 1))
            y = y + (tc if beta == 1.0 else beta * tc)
    return ctx.out(activate(ctx, y, activation, act_alpha, act_beta))


@LOWERINGS.register("MatMul")
def matmul(ctx: LowerContext, a: Lt, b: Lt) -> Lt:
    """numpy.matmul: 1-D operands are promoted and the added axis removed again."""
    tf = ctx.tf
    ta, tb = ctx.ir(a), ctx.ir(b)
    if a.rank == 1:
        ta = ta[None, :]
    if b.rank == 1:
        tb = tb[:, None]
    y = tf.linalg.matmul(ta, tb)
    if b.rank == 1:
        y = y[..., 0]
    if a.rank == 1:
        y = y[..., 0, :] if b.rank > 1 else y[..., 0]
    return ctx.out(y)


# -- pooling ---------------------------------------------------------------------------------
def _pool_geometry(x: Lt, kernel: tuple[int, ...], strides: tuple[int, ...],
                   pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: int
                   ) -> tuple[list[int], list[tuple[int, int]], bool]:
    """Output size, per-axis (begin, end) padding that makes a VALID pool produce exactly
    it, and whether the pads are TF's own 'SAME' ones."""
    outs, padding, same = [], [], not ceil_mode and dilations == (1, 1)
    for i, size in enumerate(x.shape[2:]):
        k_eff = dilations[i] * (kernel[i] - 1) + 1
        out = pool_out(size, kernel[i], strides[i], pads[i], pads[i + 2], dilations[i], ceil_mode)
        need = (out - 1) * strides[i] + k_eff  # the padded extent the last window reaches
        padding.append((pads[i], max(pads[i + 2], need - size - pads[i])))
        outs.append(out)
        same = same and (pads[i], pads[i + 2]) == same_pads(size, kernel[i], strides[i]) \
            and out == math.ceil(size / strides[i])
    return outs, padding, same


def _window_pool(ctx: LowerContext, t: Any, kind: str, kernel: tuple[int, ...],
                 strides: tuple[int, ...], dilations: tuple[int, ...], padding: Any) -> Any:
    tf = ctx.tf
    if dilations == (1, 1):
        fn = tf.nn.max_pool2d if kind == "MAX" else tf.nn.avg_pool2d
        return fn(t, list(kernel), [1, *strides, 1], padding)
    # TF pools dilated windows only at stride 1: pool densely, then keep every stride-th
    y = tf.nn.pool(t, list(kernel), kind, strides=[1, 1], padding="VALID",
                   dilations=list(dilations))
    return y[:, ::strides[0], ::strides[1], :]


@LOWERINGS.register("MaxPool")
def max_pool(ctx: LowerContext, x: Lt, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
             pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: int) -> Lt:
    tf = ctx.tf
    t = ctx.nhwc(x)
    _, padding, same = _pool_geometry(x, kernel_shape, strides, pads, dilations, ceil_mode)
    if same:
        return ctx.out(tf.nn.max_pool2d(t, list(kernel_shape), [1, *strides, 1], "SAME"), NHWC)
    if any(p for pair in padding for p in pair):
        t = tf.pad(t, [[0, 0], list(padding[0]), list(padding[1]), [0, 0]],
                   constant_values=-np.inf if x.dtype.startswith("float") else
                   np.iinfo(np.dtype(x.dtype)).min)
    return ctx.out(_window_pool(ctx, t, "MAX", kernel_shape, strides, dilations, "VALID"), NHWC)


def _window_counts(size: int, out: int, k: int, s: int, p0: int, p1: int, include_pad: int
                   ) -> np.ndarray:
    """How many elements each window of one axis averages: the padded input's for
    ``count_include_pad`` (never the ceil-mode overhang), else the real input's."""
    lo, hi = (-p0, size + p1) if include_pad else (0, size)
    starts = np.arange(out) * s - p0
    return np.minimum(starts + k, hi) - np.maximum(starts, lo)


@LOWERINGS.register("AveragePool")
def average_pool(ctx: LowerContext, x: Lt, *, kernel_shape: tuple[int, ...],
                 strides: tuple[int, ...], pads: tuple[int, ...], ceil_mode: int,
                 count_include_pad: int) -> Lt:
    tf = ctx.tf
    t = ctx.nhwc(x)
    outs, padding, same = _pool_geometry(x, kernel_shape, strides, pads, (1, 1), ceil_mode)
    if same and not (count_include_pad and any(pads)):
        return ctx.out(tf.nn.avg_pool2d(t, list(kernel_shape), [1, *strides, 1], "SAME"), NHWC)
    if any(p for pair in padding for p in pair):
        t = tf.pad(t, [[0, 0], list(padding[0]), list(padding[1]), [0, 0]])
    y = tf.nn.avg_pool2d(t, list(kernel_shape), [1, *strides, 1], "VALID")
    counts = [_window_counts(size, out, k, s, pads[i], pads[i + 2], count_include_pad)
              for i, (size, out, k, s) in enumerate(zip(x.shape[2:], outs, kernel_shape, strides))]
    window = kernel_shape[0] * kernel_shape[1]
    divisor = np.outer(counts[0], counts[1])
    if (divisor != window).any():  # TF divided by the whole window; the IR by these counts
        factor = (window / divisor).astype(np.dtype(x.dtype))[None, :, :, None]
        y = y * tf.constant(factor, name="count_correction")
    return ctx.out(y, NHWC)


def _global(name: str) -> Any:
    def lower(ctx: LowerContext, x: Lt) -> Lt:
        where = inverse(x.perm)
        axes = sorted(where[a] for a in range(2, x.rank))
        return ctx.out(getattr(ctx.tf.math, name)(ctx.arrange(x, x.perm), axis=axes,
                                                  keepdims=True), x.perm)

    return lower


LOWERINGS.register("GlobalAveragePool")(_global("reduce_mean"))
LOWERINGS.register("GlobalMaxPool")(_global("reduce_max"))


# -- normalizations, softmax -----------------------------------------------------------------
@LOWERINGS.register("LRN")
def lrn(ctx: LowerContext, x: Lt, *, size: int, alpha: float, beta: float, bias: float) -> Lt:
    """Across channels. An odd ``size`` is TF's LRN (whose alpha is not divided by size);
    an even one (the IR's window then reaches one channel further up than down), or any in
    float64 (TF's LRN kernel has none), sums the squares with a banded channel matrix."""
    tf = ctx.tf
    t = ctx.nhwc(x)
    if size % 2 and x.dtype != "float64":
        y = tf.nn.local_response_normalization(t, depth_radius=(size - 1) // 2, bias=bias,
                                               alpha=alpha / size, beta=beta)
        return ctx.out(y, NHWC)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    band = np.array([[1.0 if -hi <= j - i <= lo else 0.0 for j in range(c)] for i in range(c)],
                    np.dtype(x.dtype))  # band[i, j]: channel i adds into output j
    sums = tf.tensordot(t * t, tf.constant(band, name="window"), axes=[[3], [0]])
    return ctx.out(t / tf.pow(bias + (alpha / size) * sums, beta), NHWC)


def _normalize(ctx: LowerContext, t: Any, axes: list[int], epsilon: float) -> Any:
    tf = ctx.tf
    mean = tf.reduce_mean(t, axis=axes, keepdims=True)
    centred = t - mean
    var = tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True)
    return centred * tf.math.rsqrt(var + epsilon)


@LOWERINGS.register("LayerNormalization")
def layer_norm(ctx: LowerContext, x: Lt, s: Lt, b: Lt | None = None, *, axis: int,
               epsilon: float) -> Lt:
    where = inverse(x.perm)
    axes = sorted(where[a] for a in range(axis % x.rank, x.rank))
    y = _normalize(ctx, ctx.arrange(x, x.perm), axes, epsilon) * ctx.broadcast(s, x.perm)
    if b is not None:
        y = y + ctx.broadcast(b, x.perm)
    return ctx.out(y, x.perm)


@LOWERINGS.register("InstanceNormalization")
def instance_norm(ctx: LowerContext, x: Lt, s: Lt, b: Lt, *, epsilon: float) -> Lt:
    where = inverse(x.perm)
    axes = sorted(where[a] for a in range(2, x.rank))
    y = _normalize(ctx, ctx.arrange(x, x.perm), axes, epsilon)
    y = y * channel_param(ctx, s, x.rank, x.perm) + channel_param(ctx, b, x.rank, x.perm)
    return ctx.out(y, x.perm)


@LOWERINGS.register("Softmax")
def softmax(ctx: LowerContext, x: Lt, *, axis: int) -> Lt:
    where = inverse(x.perm)
    return ctx.out(ctx.tf.nn.softmax(ctx.arrange(x, x.perm), axis=where[axis % x.rank]), x.perm)


@LOWERINGS.register("LogSoftmax")
def log_softmax(ctx: LowerContext, x: Lt, *, axis: int) -> Lt:
    where = inverse(x.perm)
    return ctx.out(ctx.tf.nn.log_softmax(ctx.arrange(x, x.perm), axis=where[axis % x.rank]),
                   x.perm)
