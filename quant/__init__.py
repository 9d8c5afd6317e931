"""fc.quant: calibration, quantization strategies, the quantized IR, error reports.

The flow (DESIGN.md, Quantization): the fused IR runs over calibration images with an
observer (``calibration``), a strategy turns the table into parameters (``strategies``,
``plan`` says which tensors), ``quantize`` writes the QDQ-form ``IR_quantized_for_CModel``,
``simulate``/``report`` compare it with the float run layer by layer. ``pipeline`` holds the
config-driven jobs behind ``fcc quant``.
"""

from fc.quant.calibration import CalibrationTable, Calibrator, TensorStats, threshold
from fc.quant.config import QuantConfig, load_config
from fc.quant.plan import Plan, make_plan
from fc.quant.qparams import QParams, dequantize, fake_quant, quantize
from fc.quant.quantize import QuantSpec, build_spec, quantized_graph
from fc.quant.strategies import STRATEGIES, Range, Strategy, get_strategy

__all__ = ["CalibrationTable", "Calibrator", "TensorStats", "threshold", "QuantConfig",
           "load_config", "Plan", "make_plan", "QParams", "dequantize", "fake_quant", "quantize",
           "QuantSpec", "build_spec", "quantized_graph", "STRATEGIES", "Range", "Strategy",
           "get_strategy"]
