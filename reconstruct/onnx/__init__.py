"""IR -> ONNX export (``fcc export onnx``): either IR as an ONNX model onnxruntime runs.

``to_onnx(graph)`` builds the ``onnx.ModelProto``; ``export_onnx(graph, path)`` also runs
``onnx.checker`` (full check) and writes the file atomically. See ``builder.py`` for what
changes on the way (fused activations expanded, Scale as Mul + Add, attributes back to
inputs) and what is kept (fc's node names, provenance, graph layouts).
"""

from fc.reconstruct.onnx.builder import OPSET, export_onnx, to_onnx

__all__ = ["OPSET", "to_onnx", "export_onnx"]
