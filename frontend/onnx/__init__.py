"""fc.frontend.onnx: ONNX models (opset >= 7) into fc's IR.

``import_onnx(path_or_model, input_shapes=...)`` returns a verified ``fc.ir.Graph`` with static
shapes: constant subgraphs are folded at import, ONNX's constant-tensor inputs become fc
attributes, and every fc node's provenance is its ONNX node's name.
"""

from fc.frontend.onnx.importer import import_onnx
from fc.frontend.onnx.registry import converter, folder, get_converter, supported_ops

__all__ = ["import_onnx", "converter", "folder", "get_converter", "supported_ops"]
