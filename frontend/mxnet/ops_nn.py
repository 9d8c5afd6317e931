"""Converters of MXNet's layer operators: Convolution, Deconvolution, BatchNorm, InstanceNorm,
LayerNorm, LRN, Pooling, FullyConnected, the softmax family, the regression outputs and
UpSampling (NCHW only).

MXNet semantics that need care (each checked against mxnet in tests/frontend/mxnet):

* ``BatchNorm`` with ``fix_gamma=True`` (the *symbol* API default; gluon writes ``False``)
  ignores the stored gamma and uses 1. Inference always uses the moving statistics, so
  ``use_global_stats`` and ``momentum`` do not matter here.
* ``Pooling`` with ``pooling_convention='full'`` sizes the output ``1 + ceil((n + 2p - k) /
  s)`` without the rule of ONNX/torch/fc ``ceil_mode`` that drops a last window starting in
  the end padding. Where the two disagree (one window per axis at most), fc emits the
  ``ceil_mode`` pool and appends what mxnet computes for that window, which lies wholly
  outside the input: ``-FLT_MAX`` (max, an empty max in mxnet) or ``0`` (avg: an empty sum).
  Both are exact; the partial windows before it follow the same divisor rule in mxnet and
  fc (pads counted, the part past the padded input not).
* ``FullyConnected`` with ``flatten=True`` flattens all axes after the first; with
  ``flatten=False`` it applies to the last axis of an N-d input (``MatMul`` by ``W.T``).
* ``SoftmaxOutput`` at inference is a softmax (over axis 1 of the input flattened to 2-D, or
  over axis 1 with ``multi_output``, or the last axis with ``preserve_shape``); its label
  input is a training input and is dropped. (mxnet 1.9.1's oneDNN kernel takes the last axis
  for a 4-D input without ``preserve_shape``, against its documentation and its native
  kernel; fc follows the documentation and the native kernel.)
* ``Deconvolution`` with ``target_shape`` derives pad and adj from it exactly as mxnet does.
"""

from __future__ import annotations

import math

import numpy as np

from fc.frontend.mxnet.context import ConvertContext, MxAttrs
from fc.frontend.mxnet.registry import converter
from fc.ir.core import Value
from fc.ir.schema import FLT_MAX
from fc.ir.schemas._rules import pool_out

__all__: list[str] = []

def _spatial_unsupported(kind: str, attrs: MxAttrs, default_layout: str = "NCHW") -> str | None:
    kernel = attrs.ints("kernel")
    if len(kernel) != 2:
        return f"{len(kernel)}-D {kind}"
    layout = attrs.str("layout", default_layout)
    if layout != "NCHW":
        return f"layout={layout}"
    return None


def _require_4d(ctx: ConvertContext) -> None:
    """A 2-D kernel needs an NCHW input (mxnet itself fails on any other rank)."""
    rank = ctx.rank(0)
    if rank != 4:
        raise ctx.error(f"kernel {list(ctx.attrs.ints('kernel'))} needs a rank-4 NCHW input, "
                        f"got input {ctx.input_name(0)!r} of shape {list(ctx.shape(0))}")


def _pairs(ctx: ConvertContext, name: str, default: int) -> tuple[int, int]:
    values = ctx.attrs.ints(name, ()) or (default, default)
    if len(values) != 2:
        raise ctx.error(f"attribute {name!r}={list(values)} needs 2 values (NCHW)")
    return values[0], values[1]


# -- convolution ------------------------------------------------------------------------------

@converter("Convolution", check=lambda ctx: _spatial_unsupported("convolution", ctx.attrs))
def convolution(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    _require_4d(ctx)
    kernel = a.ints("kernel")
    stride, dilate, pad = _pairs(ctx, "stride", 1), _pairs(ctx, "dilate", 1), _pairs(ctx, "pad", 0)
    num_filter = a.int("num_filter")
    w = ctx.value(1)
    if w.shape is not None and (w.shape[0] != num_filter or tuple(w.shape[2:]) != kernel):
        raise ctx.error(f"weight {w.name!r} has shape {list(w.shape)}, but num_filter="
                        f"{num_filter} and kernel={list(kernel)}")
    b = None if a.bool("no_bias", False) else ctx.value(2)
    return ctx.add_node("Conv", [ctx.value(0), w, b], {
        "strides": stride, "pads": (*pad, *pad), "dilations": dilate,
        "group": a.int("num_group", 1)}).output


@converter("Deconvolution", check=lambda ctx: _spatial_unsupported("deconvolution", ctx.attrs))
def deconvolution(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    _require_4d(ctx)
    kernel = a.ints("kernel")
    stride, dilate = _pairs(ctx, "stride", 1), _pairs(ctx, "dilate", 1)
    pad, adj = _pairs(ctx, "pad", 0), _pairs(ctx, "adj", 0)
    target = a.ints("target_shape", ())
    if any(target):
        # mxnet's DeconvolutionParam::InferPad: the full output minus the target is split
        # into a symmetric pad, the odd remainder going to adj (extra at the end).
        if len(target) != 2:
            raise ctx.error(f"attribute 'target_shape'={list(target)} needs 2 values")
        size = ctx.shape(0)[2:]
        pads, adjs = [], []
        for i in range(2):
            full = stride[i] * (size[i] - 1) + dilate[i] * (kernel[i] - 1) + 1
            if full < target[i]:
                raise ctx.error(f"target_shape {list(target)} is larger than the full output "
                                f"{full} of axis {i + 2}")
            over = full - target[i]
            adjs.append(over % 2)
            pads.append((over + 1) // 2)
        pad, adj = (pads[0], pads[1]), (adjs[0], adjs[1])
    w = ctx.value(1)
    group = a.int("num_group", 1)
    num_filter = a.int("num_filter")
    if w.shape is not None and (w.shape[1] * group != num_filter or tuple(w.shape[2:]) != kernel):
        raise ctx.error(f"weight {w.name!r} has shape {list(w.shape)}, but num_filter="
                        f"{num_filter}, num_group={group} and kernel={list(kernel)}")
    b = None if a.bool("no_bias", True) else ctx.value(2)
    return ctx.add_node("ConvTranspose", [ctx.value(0), w, b], {
        "strides": stride, "pads": (*pad, *pad), "dilations": dilate, "output_padding": adj,
        "group": group}).output


# -- normalization ----------------------------------------------------------------------------

def _bn_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    axis = a.int("axis", 1)
    return None if axis in (1, -3) else f"axis={axis}"


@converter("BatchNorm", "BatchNorm_v1", check=_bn_check)
def batch_norm(ctx: ConvertContext) -> list[Value | None]:
    a = ctx.attrs
    x = ctx.value(0)
    axis = a.int("axis", 1)
    if axis % len(x.shape) != 1:
        raise ctx.error(f"attribute 'axis'={axis} is not the channel axis 1 of input "
                        f"{list(x.shape)}")
    gamma = ctx.value(1)
    if a.bool("fix_gamma", True):
        # mxnet ignores the stored gamma: the scale is 1
        gamma = ctx.const_value(np.ones(ctx.shape(1), dtype=ctx.dtype(1)),
                                f"{ctx.input_name(1)}_fixed")
    y = ctx.add_node("BatchNormalization",
                     [x, gamma, ctx.value(2), ctx.value(3), ctx.value(4)],
                     {"epsilon": a.float("eps", 1e-3)}).output
    return [y, None, None]  # mean/var outputs (output_mean_var) are training-only


@converter("InstanceNorm")
def instance_norm(ctx: ConvertContext) -> Value:
    return ctx.add_node("InstanceNormalization", [ctx.value(0), ctx.value(1), ctx.value(2)],
                        {"epsilon": ctx.attrs.float("eps", 1e-3)}).output


@converter("LayerNorm")
def layer_norm(ctx: ConvertContext) -> list[Value | None]:
    axis = ctx.attrs.int("axis", -1)
    rank = ctx.rank(0)
    if axis % rank != rank - 1:
        # mxnet normalizes over one axis; fc's LayerNormalization over [axis, rank)
        raise ctx.error(f"attribute 'axis'={axis}: only the last axis is supported")
    y = ctx.add_node("LayerNormalization", [ctx.value(0), ctx.value(1), ctx.value(2)],
                     {"axis": -1, "epsilon": ctx.attrs.float("eps", 1e-5)}).output
    return [y, None, None]


@converter("LRN")
def lrn(ctx: ConvertContext) -> list[Value | None]:
    a = ctx.attrs
    y = ctx.add_node("LRN", [ctx.value(0)], {
        "size": a.int("nsize"), "alpha": a.float("alpha", 1e-4), "beta": a.float("beta", 0.75),
        "bias": a.float("knorm", 2.0)}).output
    return [y, None]


# -- pooling ----------------------------------------------------------------------------------

def _pool_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    pool_type = a.str("pool_type", "max")
    if pool_type not in ("max", "avg", "sum"):
        return f"pool_type={pool_type}"
    convention = a.str("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        return f"pooling_convention={convention}"
    if a.bool("global_pool", False):
        layout = a.str("layout", "NCHW")
        return None if layout in ("NCHW", "NCW", "NCDHW") else f"layout={layout}"
    return _spatial_unsupported("pooling", a)


def _pool_sizes(size: int, k: int, s: int, p: int) -> tuple[int, int]:
    """(valid, full) output sizes of mxnet's Pooling for one axis."""
    span = size + 2 * p - k
    return 1 + span // s, 1 + math.ceil(span / s)


@converter("Pooling", check=_pool_check)
def pooling(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    pool_type = a.str("pool_type", "max")
    x = ctx.value(0)
    rank = len(x.shape)
    if a.bool("global_pool", False):
        if pool_type == "sum":
            return ctx.add_node("ReduceSum", [x], {"axes": tuple(range(2, rank)),
                                                   "keepdims": 1}).output
        op = "GlobalMaxPool" if pool_type == "max" else "GlobalAveragePool"
        return ctx.add_node(op, [x]).output
    _require_4d(ctx)
    kernel = a.ints("kernel")
    stride, pad = _pairs(ctx, "stride", 1), _pairs(ctx, "pad", 0)
    size = ctx.shape(0)[2:]
    if any(p >= k for p, k in zip(pad, kernel)):
        raise ctx.error(f"pad {list(pad)} must be smaller than kernel {list(kernel)}")
    sizes = [_pool_sizes(size[i], kernel[i], stride[i], pad[i]) for i in range(2)]
    valid = [v for v, _ in sizes]
    ceil_mode = 0
    extra = [0, 0]
    full = [f for _, f in sizes]
    if a.str("pooling_convention", "valid") == "full" and full != valid:
        ceil_mode = 1
        # fc's ceil_mode drops a last window that starts in the end padding; mxnet keeps it
        extra = [full[i] - pool_out(size[i], kernel[i], stride[i], pad[i], pad[i], 1, 1)
                 for i in range(2)]
    attrs = {"kernel_shape": kernel, "strides": stride, "pads": (*pad, *pad),
             "ceil_mode": ceil_mode}
    if pool_type == "max":
        op = "MaxPool"
    else:
        op = "AveragePool"
        attrs["count_include_pad"] = int(a.bool("count_include_pad", True) or pool_type == "sum")
    if pool_type == "sum" and ceil_mode:
        raise ctx.error("pool_type='sum' with pooling_convention='full' and partial windows is "
                        "not supported (fc has no sum pooling; avg * window size differs there)")
    last = pool_type != "sum" and not any(extra)
    y = ctx.add_node(op, [x], attrs, final=last, suffix="" if last else "pool").output
    if pool_type == "sum":
        window = ctx.scalar(float(kernel[0] * kernel[1]), x.dtype, "window")
        return ctx.add_node("Mul", [y, window]).output
    if any(extra):
        # the windows mxnet adds lie wholly outside the input: an empty max is mxnet's
        # lowest float, an empty sum is 0 whatever the divisor
        value = -FLT_MAX if pool_type == "max" else 0.0
        pads = (0, 0, 0, 0, 0, 0, extra[0], extra[1])
        return ctx.add_node("Pad", [y], {"pads": pads, "mode": "constant", "value": value}).output
    return y


# -- dense ------------------------------------------------------------------------------------

@converter("FullyConnected")
def fully_connected(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    x = ctx.value(0)
    w = ctx.value(1)
    num_hidden = a.int("num_hidden")
    if w.shape is not None and (len(w.shape) != 2 or w.shape[0] != num_hidden):
        raise ctx.error(f"weight {w.name!r} has shape {list(w.shape)}, but num_hidden={num_hidden}")
    b = None if a.bool("no_bias", False) else ctx.value(2)
    rank = len(x.shape)
    if rank < 2:
        raise ctx.error(f"input {x.name!r} of shape {list(x.shape)} must be at least 2-D")
    if a.bool("flatten", True) or rank == 2:
        if rank > 2:
            x = ctx.add_node("Flatten", [x], {"axis": 1}, final=False, suffix="flatten").output
        return ctx.add_node("Gemm", [x, w, b], {"transB": 1}).output
    # flatten=False: y[..., n] = sum_k x[..., k] W[n, k] (+ b[n])
    if ctx.is_const(1):
        wt = ctx.const_value(np.ascontiguousarray(ctx.const(1).T), f"{w.name}_T")
    else:
        wt = ctx.add_node("Transpose", [w], {"perm": (1, 0)}, final=False,
                          suffix="weight_T").output
    y = ctx.add_node("MatMul", [x, wt], final=b is None,
                     suffix="" if b is None else "matmul").output
    return y if b is None else ctx.add_node("Add", [y, b]).output


# -- softmax and outputs ----------------------------------------------------------------------

def _softmax(ctx: ConvertContext, op: str) -> Value:
    a = ctx.attrs
    if a.bool("use_length", False):
        raise ctx.error("use_length=True (masked softmax) is not supported")
    x = ctx.value(0)
    temperature = a.float("temperature", None)
    if temperature is not None and temperature != 1.0:
        t = ctx.scalar(temperature, x.dtype, "temperature")
        x = ctx.add_node("Div", [x, t], final=False, suffix="temperature").output
    return ctx.add_node(op, [x], {"axis": a.int("axis", -1)}).output


@converter("softmax")
def softmax(ctx: ConvertContext) -> Value:
    return _softmax(ctx, "Softmax")


@converter("log_softmax")
def log_softmax(ctx: ConvertContext) -> Value:
    return _softmax(ctx, "LogSoftmax")


def _softmax_flat(ctx: ConvertContext, x: Value) -> Value:
    """Softmax over all axes but the first, in the input's shape."""
    if len(x.shape) == 2:
        return ctx.add_node("Softmax", [x], {"axis": 1}).output
    flat = ctx.add_node("Flatten", [x], {"axis": 1}, final=False, suffix="flatten").output
    y = ctx.add_node("Softmax", [flat], {"axis": 1}, final=False, suffix="softmax").output
    return ctx.add_node("Reshape", [y], {"shape": (0, *x.shape[1:])}).output


@converter("SoftmaxActivation")
def softmax_activation(ctx: ConvertContext) -> Value:
    # mode 'instance' flattens to 2-D keeping the last axis (mshadow FlatTo2D), so it is a
    # softmax over the last axis; 'channel' is over axis 1
    mode = ctx.attrs.str("mode", "instance")
    if mode not in ("instance", "channel"):
        raise ctx.error(f"attribute 'mode'={mode!r} is not instance/channel")
    axis = 1 if mode == "channel" else -1
    return ctx.add_node("Softmax", [ctx.value(0)], {"axis": axis}).output


@converter("SoftmaxOutput", "Softmax", label_inputs=(1,))
def softmax_output(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    x = ctx.value(0)
    if a.bool("multi_output", False):
        return ctx.add_node("Softmax", [x], {"axis": 1}).output
    if a.bool("preserve_shape", False):
        return ctx.add_node("Softmax", [x], {"axis": -1}).output
    return _softmax_flat(ctx, x)


@converter("LinearRegressionOutput", "MAERegressionOutput", label_inputs=(1,))
def regression_output(ctx: ConvertContext) -> Value:
    return ctx.add_node("Identity", [ctx.value(0)]).output


@converter("LogisticRegressionOutput", label_inputs=(1,))
def logistic_regression_output(ctx: ConvertContext) -> Value:
    return ctx.add_node("Sigmoid", [ctx.value(0)]).output


# -- upsampling -------------------------------------------------------------------------------

def _upsampling_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    sample_type = a.str("sample_type", "nearest")
    return None if sample_type in ("nearest", "bilinear") else f"sample_type={sample_type}"


@converter("UpSampling", check=_upsampling_check)
def upsampling(ctx: ConvertContext) -> Value:
    a = ctx.attrs
    scale = a.int("scale")
    if a.str("sample_type", "nearest") == "bilinear":
        # mxnet's bilinear UpSampling is a depthwise Deconvolution with the given weight
        kernel = 2 * scale - scale % 2
        pad = math.ceil((scale - 1) / 2)
        x, w = ctx.value(0), ctx.value(1)
        if w.shape is not None and tuple(w.shape[1:]) != (1, kernel, kernel):
            raise ctx.error(f"weight {w.name!r} has shape {list(w.shape)}, expected "
                            f"({x.shape[1]}, 1, {kernel}, {kernel}) for scale {scale}")
        return ctx.add_node("ConvTranspose", [x, w], {
            "strides": (scale, scale), "pads": (pad,) * 4, "group": x.shape[1]}).output
    # nearest: out[i] = in[i // s] is ONNX Resize asymmetric + floor; later inputs are scaled
    # to the first one's output size, then concatenated on channels or summed
    n = ctx.num_inputs
    size = ctx.shape(0)[2:]
    out_h, out_w = size[0] * scale, size[1] * scale
    parts = []
    for i in range(n):
        h, w = ctx.shape(i)[2:]
        if out_h % h or out_w % w or out_h // h != out_w // w:
            raise ctx.error(f"input {i} of spatial size {h}x{w} does not scale to "
                            f"{out_h}x{out_w} by one integer factor")
        s = float(out_h // h)
        final = n == 1
        parts.append(ctx.add_node("Resize", [ctx.value(i)], {
            "mode": "nearest", "scales": (1.0, 1.0, s, s),
            "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
            final=final, suffix="" if final else f"resize{i}").output)
    if n == 1:
        return parts[0]
    if a.str("multi_input_mode", "concat") == "sum":
        return ctx.add_node("Sum", parts).output
    return ctx.add_node("Concat", parts, {"axis": 1}).output
