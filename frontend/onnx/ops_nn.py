"""Layer ONNX ops: Conv/ConvTranspose, pools, normalizations, Gemm/MatMul, Softmax, Flatten.

fc's layers are 2-D NCHW, so 1-D and 3-D convolutions/pools are refused by their check (listed
with the model's other refusals).
``auto_pad`` is resolved to explicit ``pads`` here (the IR has no auto_pad), using the input's
static shape:

    out = ceil(in / stride),  total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)
    SAME_UPPER: begin = total // 2 (extra at the end);  SAME_LOWER: begin = total - total // 2

ConvTranspose's ``output_shape`` (and SAME auto_pad, whose output is ``in * stride``) becomes
pads as in the ONNX spec (and onnxruntime): ``total = full - output_shape`` with
``full = (in - 1) * stride + output_padding + (k - 1) * dilation + 1``; SAME_UPPER puts
``total // 2`` at the head, NOTSET/SAME_LOWER ``total - total // 2``. A negative total (an
output larger than the kernels reach) becomes extra ``output_padding`` (bias-only rows).
"""

from __future__ import annotations

import math

from fc.frontend.onnx.context import ConvertContext
from fc.frontend.onnx.registry import converter
from fc.ir.core import Value

__all__ = ["check_2d", "same_pads"]


def same_pads(size: int, k: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """(begin, end) padding of one axis for auto_pad SAME_UPPER/SAME_LOWER."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    begin = total // 2 if upper else total - total // 2
    return begin, total - begin


def check_2d(ctx: ConvertContext) -> str | None:
    """fc's layers are 2-D NCHW: refuse 1-D and 3-D ones. The rank comes from the input,
    else (up front, before the input is known) from the weight or the kernel shape."""
    rank = ctx.known_rank(0)
    if rank is None and ctx.op_type in ("Conv", "ConvTranspose"):
        rank = ctx.known_rank(1)
    if rank is None:
        kernel = ctx.attrs.ints("kernel_shape", None)
        rank = None if kernel is None else len(kernel) + 2
    return f"{rank - 2}-D" if rank is not None and rank != 4 else None


def _checks(*checks):  # type: ignore[no-untyped-def]
    """One check made of several: the first refusal wins."""

    def check(ctx: ConvertContext) -> str | None:
        for c in checks:
            reason = c(ctx)
            if reason:
                return reason
        return None

    return check


def _window_pads(ctx: ConvertContext, kernel: tuple[int, ...], strides: tuple[int, ...],
                 dilations: tuple[int, ...]) -> tuple[int, ...]:
    """Explicit (top, left, bottom, right) pads from ``pads``/``auto_pad``."""
    auto_pad = ctx.attrs.str("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return ctx.attrs.ints("pads", (0, 0, 0, 0))
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"auto_pad={auto_pad!r} is not NOTSET/VALID/SAME_UPPER/SAME_LOWER")
    h, w = ctx.shape(0)[2:]
    upper = auto_pad == "SAME_UPPER"
    (t, b), (left, r) = (same_pads(s, k, st, d, upper)
                         for s, k, st, d in zip((h, w), kernel, strides, dilations))
    return (t, left, b, r)


@converter("Conv", since=1, check=check_2d)
def conv(ctx: ConvertContext) -> Value:
    w_shape = ctx.shape(1)
    kernel = ctx.attrs.ints("kernel_shape", w_shape[2:])
    if tuple(kernel) != tuple(w_shape[2:]):
        raise ctx.error(f"kernel_shape {list(kernel)} differs from W's {list(w_shape[2:])}")
    strides = ctx.attrs.ints("strides", (1, 1))
    dilations = ctx.attrs.ints("dilations", (1, 1))
    attrs = {"strides": strides, "dilations": dilations, "group": ctx.attrs.int("group", 1),
             "pads": _window_pads(ctx, kernel, strides, dilations)}
    return ctx.add_node("Conv", [ctx.value(0), ctx.value(1), ctx.value(2)], attrs).output


@converter("ConvTranspose", since=1, check=check_2d)
def conv_transpose(ctx: ConvertContext) -> Value:
    in_hw = ctx.shape(0)[2:]
    kernel = ctx.attrs.ints("kernel_shape", ctx.shape(1)[2:])
    strides = ctx.attrs.ints("strides", (1, 1))
    dilations = ctx.attrs.ints("dilations", (1, 1))
    out_pad = list(ctx.attrs.ints("output_padding", (0, 0)))
    auto_pad = ctx.attrs.str("auto_pad", "NOTSET")
    output_shape = ctx.attrs.ints("output_shape", None)
    if output_shape is not None and len(output_shape) == 4:
        output_shape = output_shape[2:]  # some exporters give N and C too
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and output_shape is None:
        output_shape = tuple(s * st for s, st in zip(in_hw, strides))
    if output_shape is None:
        pads = (0, 0, 0, 0) if auto_pad == "VALID" else ctx.attrs.ints("pads", (0, 0, 0, 0))
    else:
        begin, end = [0, 0], [0, 0]
        for i in range(2):
            full = (in_hw[i] - 1) * strides[i] + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            total = full - output_shape[i]
            if total < 0:  # a larger output than the kernel reaches: bias-only rows at the end
                out_pad[i] -= total
                total = 0
            begin[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            end[i] = total - begin[i]
        pads = (begin[0], begin[1], end[0], end[1])
    attrs = {"strides": strides, "dilations": dilations, "group": ctx.attrs.int("group", 1),
             "pads": pads, "output_padding": tuple(out_pad)}
    return ctx.add_node("ConvTranspose", [ctx.value(0), ctx.value(1), ctx.value(2)], attrs).output


def _bn_check(ctx: ConvertContext) -> str | None:
    # Inference only: spatial=0 (opset 7-8, per-activation statistics), training_mode=1
    # (opset 14+) and the running/saved statistics outputs have no fc equivalent.
    if ctx.opset < 9 and ctx.attrs.int("spatial", 1) == 0:
        return "spatial=0"
    if ctx.attrs.int("training_mode", 0):
        return "training_mode=1"
    return ctx.outputs_used_reason(1, "training statistics output")


@converter("BatchNormalization", since=7, check=_bn_check)
def batch_norm(ctx: ConvertContext) -> Value:
    return ctx.add_node("BatchNormalization", [ctx.value(i) for i in range(5)],
                        {"epsilon": ctx.attrs.float("epsilon", 1e-5)}).output


@converter("InstanceNormalization", since=6)
def instance_norm(ctx: ConvertContext) -> Value:
    return ctx.add_node("InstanceNormalization", [ctx.value(i) for i in range(3)],
                        {"epsilon": ctx.attrs.float("epsilon", 1e-5)}).output


@converter("LayerNormalization", since=17,
           check=lambda ctx: ctx.outputs_used_reason(1, "Mean/InvStdDev output"))
def layer_norm(ctx: ConvertContext) -> Value:
    return ctx.add_node("LayerNormalization", [ctx.value(0), ctx.value(1), ctx.value(2)],
                        {"axis": ctx.attrs.int("axis", -1),
                         "epsilon": ctx.attrs.float("epsilon", 1e-5)}).output


@converter("LRN", since=1)
def lrn(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    return ctx.add_node("LRN", [ctx.value(0)], {
        "size": a.int("size"), "alpha": a.float("alpha", 1e-4),
        "beta": a.float("beta", 0.75), "bias": a.float("bias", 1.0)}).output


@converter("Gemm", since=7)
def gemm(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    return ctx.add_node("Gemm", [ctx.value(0), ctx.value(1), ctx.value(2)], {
        "alpha": a.float("alpha", 1.0), "beta": a.float("beta", 1.0),
        "transA": a.int("transA", 0), "transB": a.int("transB", 0)}).output


@converter("MatMul", since=1)
def matmul(ctx: ConvertContext) -> Value:
    return ctx.add_node("MatMul", [ctx.value(0), ctx.value(1)]).output


def _pool_attrs(ctx: ConvertContext) -> dict[str, object]:
    kernel = ctx.attrs.ints("kernel_shape")
    if len(kernel) != 2:
        raise ctx.error(f"kernel_shape {list(kernel)} must have 2 values for a rank-4 input")
    strides = ctx.attrs.ints("strides", (1, 1))
    dilations = ctx.attrs.ints("dilations", (1, 1))
    return {"kernel_shape": kernel, "strides": strides,
            "ceil_mode": ctx.attrs.int("ceil_mode", 0),
            "pads": _window_pads(ctx, kernel, strides, dilations), "dilations": dilations}


def _max_pool_check(ctx: ConvertContext) -> str | None:
    if ctx.attrs.int("storage_order", 0):
        return "storage_order=1"
    return ctx.outputs_used_reason(1, "Indices output")


@converter("MaxPool", since=1, check=_checks(check_2d, _max_pool_check))
def max_pool(ctx: ConvertContext) -> Value:
    return ctx.add_node("MaxPool", [ctx.value(0)], _pool_attrs(ctx)).output


def _average_pool_check(ctx: ConvertContext) -> str | None:
    dilations = ctx.attrs.ints("dilations", None)
    if dilations is not None and any(d != 1 for d in dilations):
        return f"dilations={list(dilations)}"
    return None


@converter("AveragePool", since=1, check=_checks(check_2d, _average_pool_check))
def average_pool(ctx: ConvertContext) -> Value:
    attrs = _pool_attrs(ctx)
    del attrs["dilations"]
    attrs["count_include_pad"] = ctx.attrs.int("count_include_pad", 0)
    return ctx.add_node("AveragePool", [ctx.value(0)], attrs).output


@converter("GlobalAveragePool", since=1)
def global_average_pool(ctx: ConvertContext) -> Value:
    return ctx.add_node("GlobalAveragePool", [ctx.value(0)]).output


@converter("GlobalMaxPool", since=1)
def global_max_pool(ctx: ConvertContext) -> Value:
    return ctx.add_node("GlobalMaxPool", [ctx.value(0)]).output


@converter("Flatten", since=1)
def flatten(ctx: ConvertContext) -> Value:
    return ctx.add_node("Flatten", [ctx.value(0)], {"axis": ctx.attrs.int("axis", 1)}).output


def _softmax(op: str, legacy: bool):  # type: ignore[no-untyped-def]
    """Softmax/LogSoftmax. Before opset 13 the op flattens the input to 2-D at ``axis``
    (default 1) and normalizes over the whole second part; that equals fc's one-axis op only
    when ``axis`` is the last axis, otherwise it becomes Flatten(axis) -> op(-1) -> Reshape."""

    def convert(ctx: ConvertContext) -> Value:
        x = ctx.value(0)
        rank = len(x.shape)
        axis = ctx.attrs.int("axis", 1 if legacy else -1)
        if not -rank <= axis < rank:
            raise ctx.error(f"axis={axis} out of range for rank {rank}")
        axis %= rank
        if not legacy or axis == rank - 1:
            return ctx.add_node(op, [x], {"axis": axis if legacy else ctx.attrs.int("axis", -1)}
                                ).output
        flat = ctx.add_node("Flatten", [x], {"axis": axis}, suffix="flatten", final=False).output
        y = ctx.add_node(op, [flat], {"axis": -1}, suffix=op.lower(), final=False).output
        # -1 for dim 0 keeps the graph batch-independent whatever ``axis`` merged into it.
        return ctx.add_node("Reshape", [y], {"shape": (-1, *x.shape[1:])}).output

    return convert


converter("Softmax", since=1, until=12)(_softmax("Softmax", legacy=True))
converter("Softmax", since=13)(_softmax("Softmax", legacy=False))
converter("LogSoftmax", since=1, until=12)(_softmax("LogSoftmax", legacy=True))
converter("LogSoftmax", since=13)(_softmax("LogSoftmax", legacy=False))
