"""Layer ops as torch layers: Conv, ConvTranspose, BatchNormalization, Gemm, pools, norms.

A layer op whose weights are constants becomes the torch layer holding them (``nn.Conv2d``
etc.); with a computed weight it becomes the functional call. IR pads are
``(top, left, bottom, right)``; torch pads symmetrically, so an asymmetric pad becomes an
explicit ``F.pad`` before the layer (a transposed convolution crops its output instead).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from fc.ir.core import Value
from fc.ir.schemas._rules import pool_out
from fc.reconstruct.torch.activations import apply_activation
from fc.reconstruct.torch.builder import Builder
from fc.reconstruct.torch.registry import LOWERINGS

__all__: list[str] = []


def _const(*vs: Value | None) -> bool:
    return all(v is None or v.const is not None for v in vs)


def _symmetric(pads: tuple[int, ...]) -> bool:
    return pads[0] == pads[2] and pads[1] == pads[3]


def _pad_input(b: Builder, x: fx.Node, pads: tuple[int, ...], value: float = 0.0) -> fx.Node:
    """F.pad for IR pads (top, left, bottom, right); torch orders them last axis first."""
    t, left, bot, right = pads
    return b.call(F.pad, x, (left, right, t, bot), value=value)


@LOWERINGS.register("Conv")
def conv(b: Builder, x: Value, w: Value, bias: Value | None = None, *, strides, pads, dilations,
         group, activation: str, act_alpha, act_beta) -> fx.Node:
    y = b.arg(x)
    padding = (pads[0], pads[1])
    if not _symmetric(pads):
        y, padding = _pad_input(b, y, pads), (0, 0)
    if _const(w, bias):
        m, cg, kh, kw = w.shape
        y = b.layer(nn.Conv2d, dict(in_channels=cg * group, out_channels=m, kernel_size=(kh, kw),
                                    stride=tuple(strides), padding=padding,
                                    dilation=tuple(dilations), groups=group,
                                    bias=bias is not None),
                    [y], params={"weight": w, "bias": bias})
    else:
        y = b.call(F.conv2d, y, w, bias, stride=tuple(strides), padding=padding,
                   dilation=tuple(dilations), groups=group)
    return apply_activation(b, y, activation, act_alpha, act_beta)


@LOWERINGS.register("ConvTranspose")
def conv_transpose(b: Builder, x: Value, w: Value, bias: Value | None = None, *, strides, pads,
                   dilations, output_padding, group, activation: str, act_alpha, act_beta
                   ) -> fx.Node:
    sym = _symmetric(pads)
    padding = (pads[0], pads[1]) if sym else (0, 0)
    if _const(w, bias):
        c, mg, kh, kw = w.shape
        y = b.layer(nn.ConvTranspose2d, dict(
            in_channels=c, out_channels=mg * group, kernel_size=(kh, kw), stride=tuple(strides),
            padding=padding, output_padding=tuple(output_padding), groups=group,
            bias=bias is not None, dilation=tuple(dilations)),
            [x], params={"weight": w, "bias": bias})
    else:
        y = b.call(F.conv_transpose2d, x, w, bias, stride=tuple(strides), padding=padding,
                   output_padding=tuple(output_padding), groups=group, dilation=tuple(dilations))
    if not sym:  # crop the full output: a negative pad
        y = _pad_input(b, y, tuple(-p for p in pads))
    return apply_activation(b, y, activation, act_alpha, act_beta)


_BATCH_NORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@LOWERINGS.register("BatchNormalization")
def batch_norm(b: Builder, x: Value, scale: Value, bias: Value, mean: Value, var: Value, *,
               epsilon) -> fx.Node:
    rank = len(x.shape)
    if _const(scale, bias, mean, var) and rank in _BATCH_NORMS:
        # momentum 0.1 is torch's default: a reconstructed model trains like the source
        return b.layer(_BATCH_NORMS[rank], dict(num_features=x.shape[1], eps=epsilon),
                       [x], params={"weight": scale, "bias": bias},
                       buffers={"running_mean": mean, "running_var": var})
    return b.call(F.batch_norm, x, mean, var, scale, bias, False, 0.0, epsilon)


@LOWERINGS.register("Gemm")
def gemm(b: Builder, a: Value, w: Value, c: Value | None = None, *, alpha, beta, transA, transB,
         activation: str, act_alpha, act_beta) -> fx.Node:
    n = w.shape[0] if transB else w.shape[1]
    linear = (not transA and alpha == 1.0 and (c is None or beta == 1.0) and _const(w, c)
              and (c is None or c.const.size == n and c.shape[-1:] == (n,)))
    if linear:
        y = b.layer(nn.Linear, dict(in_features=w.shape[1] if transB else w.shape[0],
                                    out_features=n, bias=c is not None),
                    [a], params={"weight": (w, not transB), "bias": c})
    else:
        lhs = b.method("t", a) if transA else b.arg(a)
        rhs = b.method("t", w) if transB else b.arg(w)
        y = b.call(torch.matmul, lhs, rhs)
        if alpha != 1.0:
            y = b.call(torch.mul, y, alpha)
        if c is not None:
            cc = b.arg(c) if beta == 1.0 else b.call(torch.mul, c, beta)
            y = b.call(torch.add, y, cc)
    return apply_activation(b, y, activation, act_alpha, act_beta)


@LOWERINGS.register("MatMul")
def matmul(b: Builder, a: Value, w: Value) -> fx.Node:
    return b.call(torch.matmul, a, w)


def _torch_pool_fits(kernel_shape, pads) -> bool:
    """torch pools pad symmetrically and at most half the kernel."""
    return _symmetric(pads) and all(2 * pads[i] <= kernel_shape[i] for i in range(2))


def _explicit_pads(x: Value, kernel_shape, strides, pads, dilations, ceil_mode) -> tuple[int, ...]:
    """IR pads plus the extra bottom/right rows a ceil_mode window reads, so that a floor-mode
    torch pool over the padded input gives the IR's output size."""
    h, w = x.shape[2:]
    out = [pool_out(s, kernel_shape[i], strides[i], pads[i], pads[i + 2], dilations[i], ceil_mode)
           for i, s in enumerate((h, w))]
    extra = [max(0, (out[i] - 1) * strides[i] + dilations[i] * (kernel_shape[i] - 1) + 1
                 - (s + pads[i] + pads[i + 2])) for i, s in enumerate((h, w))]
    return (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])


@LOWERINGS.register("MaxPool")
def max_pool(b: Builder, x: Value, *, kernel_shape, strides, pads, dilations, ceil_mode
             ) -> fx.Node:
    if _torch_pool_fits(kernel_shape, pads):
        return b.layer(nn.MaxPool2d, dict(kernel_size=tuple(kernel_shape), stride=tuple(strides),
                                          padding=(pads[0], pads[1]), dilation=tuple(dilations),
                                          ceil_mode=bool(ceil_mode)), [x])
    full = _explicit_pads(x, kernel_shape, strides, pads, dilations, ceil_mode)
    y = _pad_input(b, b.arg(x), full, value=float("-inf"))
    return b.layer(nn.MaxPool2d, dict(kernel_size=tuple(kernel_shape), stride=tuple(strides),
                                      dilation=tuple(dilations)), [y])


@LOWERINGS.register("AveragePool")
def average_pool(b: Builder, x: Value, *, kernel_shape, strides, pads, ceil_mode,
                 count_include_pad) -> fx.Node:
    if _torch_pool_fits(kernel_shape, pads):
        return b.layer(nn.AvgPool2d, dict(kernel_size=tuple(kernel_shape), stride=tuple(strides),
                                          padding=(pads[0], pads[1]), ceil_mode=bool(ceil_mode),
                                          count_include_pad=bool(count_include_pad)), [x])
    # Window sums over the explicitly padded input, divided by the IR's divisor map (a
    # constant: the spatial size is static).
    full = _explicit_pads(x, kernel_shape, strides, pads, (1, 1), ceil_mode)
    sums = b.call(F.avg_pool2d, _pad_input(b, b.arg(x), full), tuple(kernel_shape),
                  tuple(strides), divisor_override=1)
    h, w = x.shape[2:]
    counts = []
    for i, size in enumerate((h, w)):
        k, s, p0, p1 = kernel_shape[i], strides[i], pads[i], pads[i + 2]
        out = pool_out(size, k, s, p0, p1, 1, ceil_mode)
        start = np.arange(out) * s
        counts.append(np.minimum(start + k, size + p0 + p1) - start if count_include_pad
                      else np.minimum(start + k, p0 + size) - np.maximum(start, p0))
    return b.call(torch.div, sums, b.constant(np.outer(*counts).astype(x.dtype), "divisor"))


@LOWERINGS.register("GlobalAveragePool")
def global_average_pool(b: Builder, x: Value) -> fx.Node:
    if len(x.shape) == 4:
        return b.layer(nn.AdaptiveAvgPool2d, dict(output_size=1), [x])
    return b.call(torch.mean, x, tuple(range(2, len(x.shape))), keepdim=True)


@LOWERINGS.register("GlobalMaxPool")
def global_max_pool(b: Builder, x: Value) -> fx.Node:
    if len(x.shape) == 4:
        return b.layer(nn.AdaptiveMaxPool2d, dict(output_size=1), [x])
    return b.call(torch.amax, x, tuple(range(2, len(x.shape))), keepdim=True)


@LOWERINGS.register("LRN")
def lrn(b: Builder, x: Value, *, size, alpha, beta, bias) -> fx.Node:
    if size % 2:
        return b.layer(nn.LocalResponseNorm, dict(size=size, alpha=alpha, beta=beta, k=bias), [x])
    # Even sizes: the IR's window is [c - (size-1)//2, c + size//2], torch's the mirror
    # image, so the sum of squares is written out.
    lo, hi = (size - 1) // 2, size // 2
    sq = b.call(torch.mul, x, x)
    win = b.call(F.pad, b.method("unsqueeze", sq, 1), (0, 0, 0, 0, lo, hi))
    s = b.method("squeeze", b.call(F.avg_pool3d, win, (size, 1, 1), stride=1,
                                   divisor_override=1), 1)
    den = b.call(torch.pow, b.call(torch.add, b.call(torch.mul, s, alpha / size), bias), beta)
    return b.call(torch.div, x, den)


@LOWERINGS.register("LayerNormalization")
def layer_norm(b: Builder, x: Value, scale: Value, bias: Value | None = None, *, axis, epsilon
               ) -> fx.Node:
    ax = axis % len(x.shape)
    shape = tuple(x.shape[ax:])
    if _const(scale, bias) and scale.shape == shape and (bias is None or bias.shape == shape):
        return b.layer(nn.LayerNorm, dict(normalized_shape=shape, eps=epsilon,
                                          elementwise_affine=True, bias=bias is not None),
                       [x], params={"weight": scale, "bias": bias})
    y = b.call(F.layer_norm, x, shape, None, None, epsilon)
    y = b.call(torch.mul, y, scale)
    return y if bias is None else b.call(torch.add, y, bias)


_INSTANCE_NORMS = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}


@LOWERINGS.register("InstanceNormalization")
def instance_norm(b: Builder, x: Value, scale: Value, bias: Value, *, epsilon) -> fx.Node:
    rank = len(x.shape)
    if _const(scale, bias) and rank in _INSTANCE_NORMS:
        return b.layer(_INSTANCE_NORMS[rank], dict(num_features=x.shape[1], eps=epsilon,
                                                   affine=True),
                       [x], params={"weight": scale, "bias": bias})
    return b.call(F.instance_norm, x, None, None, scale, bias, eps=epsilon)


@LOWERINGS.register("Softmax")
def softmax(b: Builder, x: Value, *, axis) -> fx.Node:
    return b.call(torch.softmax, x, axis)


@LOWERINGS.register("LogSoftmax")
def log_softmax(b: Builder, x: Value, *, axis) -> fx.Node:
    return b.call(torch.log_softmax, x, axis)


@LOWERINGS.register("Scale")
def scale(b: Builder, x: Value, s: Value, bias: Value | None = None, *, activation: str,
          act_alpha, act_beta) -> fx.Node:
    """X * scale[c] + B[c] over axis 1: per-channel vectors viewed as (C, 1, ..., 1)."""
    trailing = (1,) * (len(x.shape) - 2)
    y = b.call(torch.mul, x, b.method("view", s, -1, *trailing))
    if bias is not None:
        y = b.call(torch.add, y, b.method("view", bias, -1, *trailing))
    return apply_activation(b, y, activation, act_alpha, act_beta)
