"""Kernels: tensor ops (to be written)."""
