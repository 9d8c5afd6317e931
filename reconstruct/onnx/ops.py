"""ONNX exporters for every IR op (opset 17); the maths of each expansion in its docstring."""

from __future__ import annotations

import math

import numpy as np

from fc.reconstruct.onnx.builder import Builder
from fc.reconstruct.onnx.registry import EXPORTERS, ExportError

_ACT = ("activation", "act_alpha", "act_beta")


def _direct(op_type: str, *, drop_empty: tuple[str, ...] = ()) -> None:
    """Register ``op_type`` as the same ONNX op with the same inputs and attributes (an
    attribute in ``drop_empty`` is omitted when empty: ONNX's default means the same)."""

    def export(b: Builder, *inputs: str | None, **attrs) -> None:
        for k in drop_empty:
            if attrs.get(k) == ():
                del attrs[k]
        b.emit_multi(op_type, list(inputs), b.outs, **attrs)

    export.__name__ = f"export_{op_type.lower()}"
    EXPORTERS.register(op_type)(export)


for _op in ("Abs", "BatchNormalization", "Concat", "DepthToSpace", "DequantizeLinear", "Div",
            "Erf", "Exp", "Flatten", "Gather", "GlobalAveragePool", "GlobalMaxPool", "Identity",
            "InstanceNormalization", "LRN", "LayerNormalization", "Log", "LogSoftmax", "MatMul",
            "Max", "Mean", "Min", "Mul", "Neg", "PRelu", "Pow", "Reciprocal", "Relu", "Sigmoid",
            "Softmax", "SpaceToDepth", "Sqrt", "Sub", "Sum", "Tanh", "AveragePool", "MaxPool",
            "LeakyRelu", "Elu", "HardSigmoid", "HardSwish"):
    _direct(_op)
_direct("ReduceMean", drop_empty=("axes",))
_direct("ReduceMax", drop_empty=("axes",))
_direct("Transpose", drop_empty=("perm",))


# -- layers with a fused activation ----------------------------------------------------------
def _layer(op_type: str) -> None:
    def export(b: Builder, *inputs: str | None, activation: str, act_alpha: float,
               act_beta: float, **attrs) -> None:
        y = b.emit(op_type, list(inputs), b.layer_out(activation), **attrs)
        if activation:
            b.activation(y, activation, act_alpha, act_beta)

    export.__name__ = f"export_{op_type.lower()}"
    EXPORTERS.register(op_type)(export)


for _op in ("Conv", "ConvTranspose", "Gemm", "Add"):
    _layer(_op)


@EXPORTERS.register("Scale")
def scale(b: Builder, x, s, bias=None, *, activation, act_alpha, act_beta):
    """``x * scale + B`` per channel (axis 1): Mul and Add by (C, 1, ..., 1) vectors."""
    rank = len(b.shape(x) or (0, 0))
    shape = [-1] + [1] * (rank - 2)

    def col(v: str, what: str) -> str:
        return b.emit("Reshape", [v, b.ints(shape, f"{what}_shape")], b.tmp(what))

    out = b.layer_out(activation)
    y = b.emit("Mul", [x, col(s, "scale")], out if bias is None else None)
    if bias is not None:
        y = b.emit("Add", [y, col(bias, "bias")], out)
    if activation:
        b.activation(y, activation, act_alpha, act_beta)


# -- activations ONNX-17 spells differently ------------------------------------------------------
@EXPORTERS.register("Clip")
def clip(b: Builder, x, *, min, max):
    b.emit("Clip", [x, b.scalar(min, "min", x), b.scalar(max, "max", x)], b.outs[0])


@EXPORTERS.register("SiLU")
def silu(b: Builder, x):
    """silu(x) = x * sigmoid(x)."""
    b.emit("Mul", [x, b.emit("Sigmoid", [x])], b.outs[0])


@EXPORTERS.register("Gelu")
def gelu(b: Builder, x, *, approximate):
    """none: 0.5 x (1 + erf(x / sqrt(2))); tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "tanh":
        cube = b.emit("Mul", [x, b.emit("Mul", [x, x])])
        inner = b.emit("Add", [x, b.emit("Mul", [cube, b.scalar(0.044715, "c", x)])])
        t = b.emit("Tanh", [b.emit("Mul", [inner, b.scalar(math.sqrt(2 / math.pi), "k", x)])])
    elif approximate == "none":
        t = b.emit("Erf", [b.emit("Div", [x, b.scalar(math.sqrt(2.0), "sqrt2", x)])])
    else:
        raise ExportError(f"Gelu approximate={approximate!r} is not 'none' or 'tanh'")
    one = b.emit("Add", [t, b.scalar(1.0, "one", x)])
    half = b.emit("Mul", [x, b.scalar(0.5, "half", x)])
    b.emit("Mul", [half, one], b.outs[0])


# -- attributes back to inputs ------------------------------------------------------------------
@EXPORTERS.register("Cast")
def cast(b: Builder, x, *, to):
    from fc.reconstruct.onnx.builder import _onnx_dtype

    b.emit("Cast", [x], b.outs[0], to=_onnx_dtype(to))


@EXPORTERS.register("Dropout")
def dropout(b: Builder, x, *, ratio):
    """Inference: the identity."""
    b.emit("Identity", [x], b.outs[0])


@EXPORTERS.register("Pad")
def pad(b: Builder, x, *, pads, mode, value):
    inputs = [x, b.ints(pads, "pads")]
    if mode == "constant":
        inputs.append(b.scalar(value, "value", x))
    b.emit("Pad", inputs, b.outs[0], mode=mode)


@EXPORTERS.register("Reshape")
def reshape(b: Builder, x, *, shape, allowzero):
    b.emit("Reshape", [x, b.ints(shape, "shape")], b.outs[0], allowzero=allowzero or None)


@EXPORTERS.register("Resize")
def resize(b: Builder, x, *, mode, scales, sizes, coordinate_transformation_mode, nearest_mode,
           cubic_coeff_a):
    """Sizes when the IR has them (onnxruntime then derives the scales, as the source did),
    else the scales."""
    if sizes:
        inputs = [x, "", "", b.ints(sizes, "sizes")]
    else:
        inputs = [x, "", b.const(np.asarray(scales, dtype=np.float32), "scales")]
    b.emit("Resize", inputs, b.outs[0], mode=mode,
           coordinate_transformation_mode=coordinate_transformation_mode,
           nearest_mode=nearest_mode, cubic_coeff_a=cubic_coeff_a)


@EXPORTERS.register("Slice")
def slice_(b: Builder, x, *, starts, ends, axes, steps):
    b.emit("Slice", [x, b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes"),
                     b.ints(steps, "steps")], b.outs[0])


@EXPORTERS.register("Split")
def split(b: Builder, x, *, axis, split):
    b.emit_multi("Split", [x, b.ints(split, "split")], b.outs, axis=axis)


@EXPORTERS.register("Squeeze")
def squeeze(b: Builder, x, *, axes):
    b.emit("Squeeze", [x, b.ints(axes, "axes") if axes else None], b.outs[0])


@EXPORTERS.register("Unsqueeze")
def unsqueeze(b: Builder, x, *, axes):
    b.emit("Unsqueeze", [x, b.ints(axes, "axes")], b.outs[0])


@EXPORTERS.register("ReduceSum")
def reduce_sum(b: Builder, x, *, axes, keepdims):
    b.emit("ReduceSum", [x, b.ints(axes, "axes") if axes else None], b.outs[0], keepdims=keepdims)


_ONNX_QUANT = {"int8": (-128, 127), "uint8": (0, 255)}


@EXPORTERS.register("QuantizeLinear")
def quantize_linear(b: Builder, x, scale, zero_point, *, axis, qmin, qmax):
    """ONNX's QuantizeLinear (int8/uint8), then a Clip to [qmin, qmax] when the bit width is
    narrower than the storage type."""
    dt = b.dtype(zero_point)
    if dt not in _ONNX_QUANT:
        raise ExportError(f"zero point dtype {dt} (opset {17} quantizes to int8/uint8 only)")
    full = (qmin, qmax) == _ONNX_QUANT[dt]
    y = b.emit("QuantizeLinear", [x, scale, zero_point], b.outs[0] if full else None, axis=axis)
    if not full:
        b.emit("Clip", [y, b.const(np.asarray(qmin, dtype=dt), "qmin"),
                        b.const(np.asarray(qmax, dtype=dt), "qmax")], b.outs[0])
