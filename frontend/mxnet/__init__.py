"""fc.frontend.mxnet."""
