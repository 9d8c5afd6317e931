"""Layer ops: convolution (1-D/2-D, transposed, groups, dilation), batch/layer/group norm,
linear/addmm/mm/bmm/matmul, pools (max, avg with ceil_mode and count_include_pad, adaptive
avg where it is a fixed or global pool), softmax/log_softmax.

ATen's 2-D ``padding`` is symmetric ``[ph, pw]``; fc's pads are (top, left, bottom, right).
A 1-D convolution is a 2-D one over a height of 1 (Unsqueeze, Conv, Squeeze), its weight
stored (M, C/g, 1, k) under the same state-dict name.
"""

from __future__ import annotations

import numpy as np

from fc.frontend.torch.context import AtenContext
from fc.frontend.torch.registry import converter
from fc.ir.core import Value

__all__: list[str] = []


def _pair(v: tuple[int, ...], what: str, ctx: AtenContext) -> tuple[int, int]:
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ctx.error(f"{what} {list(v)} needs 1 or 2 values")
    return (v[0], v[1])


def _ones(ctx: AtenContext, n: int | tuple[int, ...], value: float, suffix: str) -> Value:
    return ctx.const_value(np.full(n, value, dtype=np.float32), f"{ctx.node.name}_{suffix}")


# -- convolution ------------------------------------------------------------------------------

def _check_conv(ctx: AtenContext) -> str | None:
    w = ctx.known_shape(1)
    if w is not None and len(w) not in (3, 4):
        return f"{len(w) - 2}-D"
    if w is not None and len(w) == 3 and not ctx.is_const(1):
        return "1-D with a computed weight"
    return None


@converter("aten.convolution.default", check=_check_conv)
def convolution(ctx: AtenContext) -> Value:
    stride, padding, dilation = ctx.attrs.ints(3), ctx.attrs.ints(4), ctx.attrs.ints(5)
    transposed, out_pad, groups = ctx.attrs.bool(6), ctx.attrs.ints(7), ctx.attrs.int(8)
    one_d = ctx.rank(1) == 3
    x, w, b = ctx.value(0), None, ctx.value(2)
    if one_d:  # (N, C, L) -> (N, C, 1, L) with a (.., 1, k) kernel
        stride, padding, dilation = (1, stride[0]), (0, padding[0]), (1, dilation[0])
        out_pad = (0, out_pad[0])
        x = ctx.helper("Unsqueeze", [x], {"axes": (2,)}, suffix="as2d")
        wc = ctx.const(1)
        w = ctx.const_value(wc.reshape(wc.shape[0], wc.shape[1], 1, wc.shape[2]),
                            ctx._weight_key(1)[1])
    else:
        w = ctx.value(1)
        stride, padding, dilation = (_pair(stride, "stride", ctx), _pair(padding, "padding", ctx),
                                     _pair(dilation, "dilation", ctx))
    pads = (padding[0], padding[1], padding[0], padding[1])
    attrs = {"strides": stride, "pads": pads, "dilations": dilation, "group": groups}
    op = "Conv"
    if transposed:
        op = "ConvTranspose"
        attrs["output_padding"] = _pair(tuple(out_pad), "output_padding", ctx)
    if not one_d:
        return ctx.emit(op, [x, w, b], attrs)
    y = ctx.helper(op, [x, w, b], attrs, suffix="conv2d")
    return ctx.emit("Squeeze", [y], {"axes": (2,)})


# -- normalization ----------------------------------------------------------------------------

@converter("aten._native_batch_norm_legit_no_training.default")
def batch_norm(ctx: AtenContext) -> list[Value | None]:
    c = ctx.shape(0)[1]
    scale = ctx.value(1) if ctx.has_input(1) else _ones(ctx, c, 1.0, "scale")
    bias = ctx.value(2) if ctx.has_input(2) else _ones(ctx, c, 0.0, "bias")
    y = ctx.emit("BatchNormalization", [ctx.value(0), scale, bias, ctx.value(3), ctx.value(4)],
                 {"epsilon": ctx.attrs.float(6)})
    return [y, None, None]


@converter("aten.native_layer_norm.default")
def layer_norm(ctx: AtenContext) -> list[Value | None]:
    shape = ctx.attrs.ints(1)
    scale = ctx.value(2) if ctx.has_input(2) else _ones(ctx, tuple(shape), 1.0, "scale")
    y = ctx.emit("LayerNormalization", [ctx.value(0), scale, ctx.value(3)],
                 {"axis": -len(shape), "epsilon": ctx.attrs.float(4)})
    return [y, None, None]


@converter("aten.native_group_norm.default")
def group_norm(ctx: AtenContext) -> list[Value | None]:
    """Normalize (N, G, C/G * HW) per (n, g) with InstanceNormalization, then the per-channel
    affine: y = norm(x) * weight[c] + bias[c]."""
    shape = ctx.shape(0)
    g = ctx.attrs.int(6)
    flat = ctx.helper("Reshape", [ctx.value(0)], {"shape": (0, g, -1)}, suffix="groups")
    norm = ctx.helper("InstanceNormalization",
                      [flat, _ones(ctx, g, 1.0, "gscale"), _ones(ctx, g, 0.0, "gbias")],
                      {"epsilon": ctx.attrs.float(7)}, suffix="norm")
    back = {"shape": (0, *shape[1:])}
    affine = [(i, op) for i, op in ((1, "Mul"), (2, "Add")) if ctx.has_input(i)]
    if not affine:
        return [ctx.emit("Reshape", [norm], back), None, None]
    y = ctx.helper("Reshape", [norm], back, suffix="ungroup")
    trail = (1,) * (len(shape) - 2)
    for k, (i, op) in enumerate(affine):
        v = ctx.const_value(ctx.const(i).reshape(-1, *trail), ctx._weight_key(i)[1])
        y = (ctx.emit(op, [y, v]) if k == len(affine) - 1
             else ctx.helper(op, [y, v], suffix=op.lower()))
    return [y, None, None]


# -- dense ------------------------------------------------------------------------------------

def _check_linear(ctx: AtenContext) -> str | None:
    r = ctx.known_rank(0)
    return "1-D input" if r == 1 else None


@converter("aten.linear.default", check=_check_linear)
def linear(ctx: AtenContext) -> Value:
    """A Gemm with the weight in torch's (out, in) layout (transB); inputs of rank > 2 are
    flattened to (-1, in) around it, which keeps the batch free."""
    shape = ctx.shape(0)
    x, w, b = ctx.value(0), ctx.value(1), ctx.value(2)
    if len(shape) == 2:
        return ctx.emit("Gemm", [x, w, b], {"transB": 1})
    flat = ctx.helper("Reshape", [x], {"shape": (-1, shape[-1])}, suffix="rows")
    y = ctx.helper("Gemm", [flat, w, b], {"transB": 1}, suffix="gemm")
    return ctx.emit("Reshape", [y], {"shape": (-1, *shape[1:-1], ctx.shape(1)[0])})


@converter("aten.addmm.default")
def addmm(ctx: AtenContext) -> Value:
    return ctx.emit("Gemm", [ctx.value(1), ctx.value(2), ctx.value(0)],
                    {"beta": float(ctx.scalar(3)), "alpha": float(ctx.scalar(4))})


@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def matmul(ctx: AtenContext) -> Value:
    return ctx.emit("MatMul", [ctx.value(0), ctx.value(1)])


# -- pooling ----------------------------------------------------------------------------------

def _pool_geometry(ctx: AtenContext) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    kernel = _pair(ctx.attrs.ints(1), "kernel_size", ctx)
    stride = ctx.attrs.ints(2, ())
    stride = kernel if not stride else _pair(stride, "stride", ctx)
    p = _pair(ctx.attrs.ints(3, (0,)), "padding", ctx)
    return kernel, stride, (p[0], p[1], p[0], p[1])


def _check_max_pool_indices(ctx: AtenContext) -> str | None:
    for user in ctx.node.users:
        if user.args[1:2] != (0,):
            return "indices used"
    return None


@converter("aten.max_pool2d.default")
def max_pool2d(ctx: AtenContext) -> Value:
    kernel, stride, pads = _pool_geometry(ctx)
    return ctx.emit("MaxPool", [ctx.value(0)], {
        "kernel_shape": kernel, "strides": stride, "pads": pads,
        "dilations": _pair(ctx.attrs.ints(4, (1,)), "dilation", ctx),
        "ceil_mode": int(ctx.attrs.bool(5, False))})


@converter("aten.max_pool2d_with_indices.default", check=_check_max_pool_indices)
def max_pool2d_with_indices(ctx: AtenContext) -> list[Value | None]:
    return [max_pool2d(ctx), None]


def _check_avg_pool(ctx: AtenContext) -> str | None:
    return "divisor_override" if ctx.attrs.has(6) else None


@converter("aten.avg_pool2d.default", check=_check_avg_pool)
def avg_pool2d(ctx: AtenContext) -> Value:
    kernel, stride, pads = _pool_geometry(ctx)
    return ctx.emit("AveragePool", [ctx.value(0)], {
        "kernel_shape": kernel, "strides": stride, "pads": pads,
        "ceil_mode": int(ctx.attrs.bool(4, False)),
        "count_include_pad": int(ctx.attrs.bool(5, True))})


def _check_adaptive(ctx: AtenContext) -> str | None:
    shape = ctx.known_shape(0)
    out = ctx.attrs.ints(1)
    if shape is None:
        return None
    if len(shape) != 4:
        return f"rank {len(shape)}"
    if any(o != 1 and s % o for s, o in zip(shape[2:], out)):
        return f"output {list(out)} does not divide input {list(shape[2:])}"
    return None


@converter("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default",
           check=_check_adaptive)
def adaptive_avg_pool2d(ctx: AtenContext) -> Value:
    """A global pool for output (1, 1), else the fixed pool it equals (in = k * out)."""
    h, w = ctx.shape(0)[2:]
    oh, ow = _pair(ctx.attrs.ints(1), "output_size", ctx)
    if (oh, ow) == (1, 1):
        return ctx.emit("GlobalAveragePool", [ctx.value(0)])
    if (oh, ow) == (h, w):
        return ctx.value(0)
    k = (h // oh, w // ow)
    return ctx.emit("AveragePool", [ctx.value(0)], {"kernel_shape": k, "strides": k})


# -- softmax ----------------------------------------------------------------------------------

@converter("aten._softmax.default")
def softmax(ctx: AtenContext) -> Value:
    return ctx.emit("Softmax", [ctx.value(0)], {"axis": ctx.attrs.int(1)})


@converter("aten._log_softmax.default")
def log_softmax(ctx: AtenContext) -> Value:
    return ctx.emit("LogSoftmax", [ctx.value(0)], {"axis": ctx.attrs.int(1)})
