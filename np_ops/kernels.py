"""Imports every kernel module so their ``@kernel`` registrations run (an explicit list)."""

from fc.np_ops import activation_kernels, conv, elementwise, fused, nn, quant, tensor

__all__ = ["activation_kernels", "conv", "elementwise", "fused", "nn", "quant", "tensor"]
