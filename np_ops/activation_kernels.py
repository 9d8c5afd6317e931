"""Kernels of the activation ops of ``fc.ir.activations``: one per table entry, which also
computes the entry's fused form (``fc.np_ops.activation.apply_activation``).

Every kernel returns an array of its input's dtype: scalars are converted to that dtype
first, because numpy would promote ``float32 * 0.1`` (a Python or float64 scalar operand
of a 0-d array) differently from an array operand. Floating-point exceptions are silenced
(``np.errstate``), as in numpy/torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fc.errors import ExecutionError
from fc.np_ops.activation import gelu, sigmoid
from fc.np_ops.registry import kernel

__all__: list[str] = []

Array = np.ndarray


def _f(x: Array, v: float) -> Array:
    return np.asarray(v, dtype=x.dtype)


def _clip(x: Array, lo: float, hi: float) -> Array:
    """min(max(x, lo), hi); so hi wins when lo > hi (ONNX Clip), NaN propagates."""
    return np.minimum(np.maximum(x, _f(x, lo)), _f(x, hi))


def _run(fn: Callable[[Array], Array], x: Array) -> Array:
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        return np.asarray(fn(x), dtype=x.dtype)


@kernel("Relu")
def relu(x: Array) -> Array:
    return _run(lambda x: np.maximum(x, _f(x, 0)), x)


def _bound(v: float, dtype: np.dtype) -> np.generic:
    """A float Clip bound in ``dtype``; +-FLT_MAX saturates to the integer range (a plain
    cast of 3.4e38 to int32 is undefined) and overflows to +-inf in float16."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return dtype.type(int(min(max(v, float(info.min)), float(info.max))))
    with np.errstate(over="ignore"):
        return dtype.type(v)


@kernel("Clip")
def clip(x: Array, *, min: float, max: float) -> Array:  # the schema's names
    """min(max(x, min), max): ``max`` wins when min > max, as ONNX specifies."""
    x = np.asarray(x)
    return np.asarray(np.minimum(np.maximum(x, _bound(min, x.dtype)), _bound(max, x.dtype)),
                      dtype=x.dtype)


@kernel("LeakyRelu")
def leaky_relu(x: Array, *, alpha: float) -> Array:
    return _run(lambda x: np.where(x >= 0, x, x * _f(x, alpha)), x)


@kernel("Elu")
def elu(x: Array, *, alpha: float) -> Array:
    return _run(lambda x: np.where(x > 0, x, _f(x, alpha) * np.expm1(np.minimum(x, _f(x, 0)))), x)


@kernel("Sigmoid")
def sigmoid_kernel(x: Array) -> Array:
    return _run(sigmoid, x)


@kernel("Tanh")
def tanh(x: Array) -> Array:
    return _run(np.tanh, x)


@kernel("HardSigmoid")
def hard_sigmoid(x: Array, *, alpha: float, beta: float) -> Array:
    return _run(lambda x: _clip(x * _f(x, alpha) + _f(x, beta), 0, 1), x)


@kernel("HardSwish")
def hard_swish(x: Array) -> Array:
    return _run(lambda x: x * _clip(x / _f(x, 6) + _f(x, 0.5), 0, 1), x)


@kernel("SiLU")
def silu(x: Array) -> Array:
    return _run(lambda x: x * sigmoid(x), x)


@kernel("Gelu")
def gelu_kernel(x: Array, *, approximate: str) -> Array:
    if approximate not in ("none", "tanh"):
        raise ExecutionError(f"Gelu attribute 'approximate'={approximate!r} not one of "
                             f"['none', 'tanh']")
    return gelu(np.asarray(x), approximate=approximate == "tanh")
