"""The TensorFlow form of every activation of ``fc.ir.activations``, in its fused form (a
layer's ``activation``/``act_alpha``/``act_beta``, with the table's formulas); the standalone
activation ops are lowered through the same entries (``fused_form``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fc.reconstruct.tf.context import LowerContext

__all__ = ["ACTIVATIONS", "activate", "clip", "elu"]


def clip(tf: Any, x: Any, lo: float, hi: float) -> Any:
    if lo == 0.0 and hi == 6.0:
        return tf.nn.relu6(x)
    return tf.minimum(tf.maximum(x, lo), hi)  # hi wins when lo > hi, as in the IR


def elu(tf: Any, x: Any, alpha: float) -> Any:
    if alpha == 1.0:
        return tf.nn.elu(x)
    return tf.where(x > 0, x, alpha * tf.math.expm1(tf.minimum(x, 0.0)))


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
    "gelu": lambda tf, x, a, b: tf.nn.gelu(x, approximate=bool(a)),
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
