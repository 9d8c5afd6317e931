"""Kernels: elementwise ops (to be written)."""
