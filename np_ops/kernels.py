"""Imports every kernel module so their ``@kernel`` registrations run (an explicit list)."""

from fc.np_ops import elementwise, fused, nn, tensor

__all__ = ["elementwise", "fused", "nn", "tensor"]
