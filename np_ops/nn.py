"""Kernels: nn ops (to be written)."""
