"""Imports every kernel module so their ``@kernel`` registrations run (an explicit list)."""

from fc.np_ops import elementwise, nn, tensor

__all__ = ["elementwise", "nn", "tensor"]
