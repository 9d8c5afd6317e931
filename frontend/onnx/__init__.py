"""fc.frontend.onnx."""
