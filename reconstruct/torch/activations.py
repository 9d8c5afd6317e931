"""The activations of ``fc.ir.activations`` as torch calls, in their fused form (a layer's
``activation``/``act_alpha``/``act_beta``); the standalone activation ops are lowered through
the same entries (``fc.ir.activations.fused_form``).

Each entry builds the call for ``(x, alpha, beta)`` with the meaning the table gives
``act_alpha``/``act_beta``. Hard-sigmoid keeps its general slope and offset
(``F.hardsigmoid`` is only alpha=1/6, beta=1/2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F

from fc.errors import ReconstructError
from fc.reconstruct.torch.builder import Builder

__all__ = ["TORCH_ACTIVATIONS", "apply_activation"]

Emit = Callable[[Builder, fx.Node, float, float], fx.Node]

TORCH_ACTIVATIONS: dict[str, Emit] = {
    "relu": lambda b, x, a, c: b.call(torch.relu, x),
    "clip": lambda b, x, a, c: b.call(torch.clamp, x, a, c),
    "leaky_relu": lambda b, x, a, c: b.call(F.leaky_relu, x, a),
    "elu": lambda b, x, a, c: b.call(F.elu, x, a),
    "sigmoid": lambda b, x, a, c: b.call(torch.sigmoid, x),
    "tanh": lambda b, x, a, c: b.call(torch.tanh, x),
    "hard_sigmoid": lambda b, x, a, c: b.call(torch.clamp, b.call(torch.add, b.call(
        torch.mul, x, a), c), 0.0, 1.0),
    "hard_swish": lambda b, x, a, c: b.call(F.hardswish, x),
    "silu": lambda b, x, a, c: b.call(F.silu, x),
    "gelu": lambda b, x, a, c: b.call(F.gelu, x, approximate="tanh" if a else "none"),
}


def apply_activation(b: Builder, x: fx.Node, name: str, alpha: float = 0.0, beta: float = 0.0
               ) -> fx.Node:
    """``x`` through the fused activation ``name`` (``""``: ``x`` itself)."""
    if not name:
        return x
    try:
        emit = TORCH_ACTIVATIONS[name]
    except KeyError:
        raise ReconstructError(f"activation {name!r} has no torch lowering") from None
    return emit(b, x, alpha, beta)
