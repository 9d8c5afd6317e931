"""Activations as plain numpy functions, shared by the standalone activation kernels and by
the ``activation`` attribute that Conv/ConvTranspose/Gemm/Add carry after fusion."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["apply_activation", "sigmoid", "gelu", "ACTIVATIONS"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # exact to the last ulp when scipy is there

        return erf(x).astype(x.dtype, copy=False)
    except ImportError:
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


def gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    if approximate:
        c = np.asarray(math.sqrt(2 / math.pi), x.dtype)
        return (0.5 * x * (1 + np.tanh(c * (x + np.asarray(0.044715, x.dtype) * x ** 3)))).astype(
            x.dtype, copy=False)
    return (0.5 * x * (1 + _erf(x / np.asarray(math.sqrt(2), x.dtype)))).astype(x.dtype, copy=False)


def _f(x: np.ndarray, v: float) -> np.ndarray:
    return np.asarray(v, dtype=x.dtype)


ACTIVATIONS = {
    "relu": lambda x, a, b: np.maximum(x, _f(x, 0)),
    "clip": lambda x, a, b: np.clip(x, _f(x, a), _f(x, b)),
    "leaky_relu": lambda x, a, b: np.where(x >= 0, x, x * _f(x, a)),
    "elu": lambda x, a, b: np.where(x > 0, x, _f(x, a) * np.expm1(np.minimum(x, _f(x, 0)))),
    "sigmoid": lambda x, a, b: sigmoid(x),
    "tanh": lambda x, a, b: np.tanh(x),
    "hard_sigmoid": lambda x, a, b: np.clip(x * _f(x, a) + _f(x, b), _f(x, 0), _f(x, 1)),
    "hard_swish": lambda x, a, b: x * np.clip(x / _f(x, 6) + _f(x, 0.5), _f(x, 0), _f(x, 1)),
    "silu": lambda x, a, b: x * sigmoid(x),
    "gelu": lambda x, a, b: gelu(x, approximate=bool(a)),
}


def apply_activation(x: np.ndarray, activation: str, alpha: float = 0.0, beta: float = 0.0
                     ) -> np.ndarray:
    """``x`` through the named fused activation ("" = identity)."""
    if not activation:
        return x
    return ACTIVATIONS[activation](x, alpha, beta)
