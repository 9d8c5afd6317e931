"""The TensorFlow form of every activation of ``fc.ir.activations``, in its fused form (a
layer's ``activation``/``act_alpha``/``act_beta``, with the table's formulas); the standalone
activation ops are lowered through the same entries (``fused_form``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fc.reconstruct.tf.context import LowerContext

__all__ = ["ACTIVATIONS", "activate", "clip", "elu", "gelu"]


def clip(tf: Any, x: Any, lo: float, hi: float) -> Any:
    if lo == 0.0 and hi == 6.0:
        return tf.nn.relu6(x)
    return tf.minimum(tf.maximum(x, lo), hi)  # hi wins when lo > hi, as in the IR


def elu(tf: Any, x: Any, alpha: float) -> Any:
    if alpha == 1.0:
        return tf.nn.elu(x)
    return tf.where(x > 0, x, alpha * tf.math.expm1(tf.minimum(x, 0.0)))


def gelu(tf: Any, x: Any, approximate: bool) -> Any:
    """``tf.nn.gelu``'s formulas with its constants in ``x``'s dtype: tf.nn.gelu casts them
    from float32 (``cast(0.7071067811865476, dtype)``), which puts a float64 graph 1.3e-9 off
    the exact GELU (tanh form 2.2e-10); in float32 the two graphs are the same numbers."""
    half = tf.constant(0.5, x.dtype)
    if approximate:
        inner = tf.constant(math.sqrt(2 / math.pi), x.dtype) * (
            x + tf.constant(0.044715, x.dtype) * x * x * x)
        return half * x * (tf.constant(1.0, x.dtype) + tf.tanh(inner))
    return half * x * tf.math.erfc(-x * tf.constant(math.sqrt(0.5), x.dtype))


# activation name -> fn(tf, x, alpha, beta), the IR's formula for each
ACTIVATIONS: dict[str, Callable[[Any, Any, float, float], Any]] = {
    "relu": lambda tf, x, a, b: tf.nn.relu(x),
    "clip": lambda tf, x, a, b: clip(tf, x, a, b),
    "leaky_relu": lambda tf, x, a, b: tf.nn.leaky_relu(x, alpha=a),
    "elu": lambda tf, x, a, b: elu(tf, x, a),
    "sigmoid": lambda tf, x, a, b: tf.sigmoid(x),
    "tanh": lambda tf, x, a, b: tf.tanh(x),
    "hard_sigmoid": lambda tf, x, a, b: clip(tf, a * x + b, 0.0, 1.0),
    "hard_swish": lambda tf, x, a, b: x * clip(tf, x / 6.0 + 0.5, 0.0, 1.0),
    "silu": lambda tf, x, a, b: tf.nn.silu(x),
    "gelu": lambda tf, x, a, b: gelu(tf, x, bool(a)),
}


def activate(ctx: LowerContext, t: Any, activation: str, alpha: float, beta: float) -> Any:
    """``t`` through a fused activation (``""`` = none)."""
    if not activation:
        return t
    try:
        fn = ACTIVATIONS[activation]
    except KeyError:
        raise ctx.error(f"activation {activation!r} has no TensorFlow form") from None
    return fn(ctx.tf, t, alpha, beta)
