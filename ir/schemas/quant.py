"""Schemas of the quantization boundary ops of ``IR_quantized_for_CModel``.

``QuantizeLinear``: y = clamp(round_half_even(x / scale) + zero_point, qmin, qmax), stored in
``zero_point``'s dtype; ``DequantizeLinear``: y = (x - zero_point) * scale in float32. As in
ONNX, ``scale``/``zero_point`` are scalars (per tensor) or 1-D along ``axis`` (per channel).
``qmin``/``qmax`` make the bit width explicit (an int8 tensor of a 4-bit strategy clamps to
[-8, 7]); with the storage dtype's own bounds the op is ONNX's.
"""

from __future__ import annotations

from fc.ir.schema import INT, Attr, TensorType, register_op
from fc.ir.schemas._rules import check, norm_axis

__all__ = ["QUANT_DTYPES"]

QUANT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "int64")  # int64: 16-bit biases


def _check_params(x, scale, zero_point, axis):
    check(scale.dtype == "float32", f"scale must be float32, got {scale.dtype}")
    check(zero_point.dtype in QUANT_DTYPES, f"zero_point dtype {zero_point.dtype} not one of "
                                            f"{QUANT_DTYPES}")
    check(scale.shape == zero_point.shape, f"scale {scale.shape} and zero_point "
                                           f"{zero_point.shape} differ")
    check(scale.rank <= 1, f"scale {scale.shape} must be a scalar or 1-D")
    if scale.rank == 1:
        ax = norm_axis(axis, x.rank)
        check(x.shape[ax] == scale.shape[0], f"{scale.shape[0]} scales for axis {axis} of "
                                             f"size {x.shape[ax]}")


@register_op("QuantizeLinear", inputs=("x", "y_scale", "y_zero_point"),
             attrs={"axis": Attr(INT, 1), "qmin": Attr(INT), "qmax": Attr(INT)})
def quantize_linear(x, scale, zero_point, *, axis, qmin, qmax):
    check(x.dtype == "float32", f"x must be float32, got {x.dtype}")
    _check_params(x, scale, zero_point, axis)
    check(qmin <= qmax, f"qmin {qmin} > qmax {qmax}")
    return TensorType(x.shape, zero_point.dtype)


@register_op("DequantizeLinear", inputs=("x", "x_scale", "x_zero_point"),
             attrs={"axis": Attr(INT, 1)})
def dequantize_linear(x, scale, zero_point, *, axis):
    check(x.dtype == zero_point.dtype, f"x dtype {x.dtype} differs from zero_point's "
                                       f"{zero_point.dtype}")
    _check_params(x, scale, zero_point, axis)
    return TensorType(x.shape, "float32")
