"""Fold a per-channel constant Mul / Add (and Sub / Div) after a layer into its weights.

A layer ``z = L(x)`` whose output channel ``m`` is linear in a slice ``W[m]`` of its weights
plus a bias ``b[m]`` absorbs a per-channel affine map ``z * s[m] + t[m]``::

    W'[m] = W[m] * s[m]          b'[m] = b[m] * s[m] + t[m]     (bias created when absent)

``z - c`` is ``t = -c`` and ``z / c`` is ``s = 1 / c``. The layers are the ops whose schema
gives input 1 the role *weight* and input 2 the role *bias* (Conv, ConvTranspose, Gemm,
Scale), and the slice of channel ``m`` is where the schema says
(``fc.ir.schema.weight_by_out_channel``):

* Conv, W (M, C/g, kh, kw): ``W[m]``.
* ConvTranspose, W (C, M/g, kh, kw): ``W[c, j]`` feeds output channel
  ``(c // (C/g)) * (M/g) + j``.
* Gemm, ``y = alpha * A'B' + beta * C``: column n of B' (``B[:, n]``, or ``B[n, :]`` with
  transB=1); the bias becomes ``C' = beta * C * s + t`` with ``beta' = 1``.
* Scale (``X * scale + B``): ``scale' = scale * s``, ``B' = B * s + t``.

A constant is per-channel when, right-aligned to the output's rank, every dim but axis 1 is
1: (C, 1, 1), (1, C, 1, 1), (C,) after a Gemm, or a scalar. Anything broadcasting over the
batch or spatial dims is refused. The arithmetic runs in float64 and is rounded once to the
weight's dtype, so folding adds at most one rounding per weight.

The layer must not carry a fused activation (``act(z) * s`` is not linear in W). An Add that
carries one passes it on: ``act(z + t) = act(z')``. Weights shared with other nodes are
copied, never mutated (``replace_const_input``).
"""

from __future__ import annotations

import numpy as np

from fc.ir.activations import ACTIVATION_ATTRS
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import BIAS, WEIGHT, all_schemas, weight_by_out_channel, weight_from_out_channel
from fc.passes.infra import (
    FusionPass,
    FusionRule,
    Match,
    absorb_into,
    drop_dead_const,
    producer_of,
    replace_const_input,
)

__all__ = [
    "AFFINE_LAYERS",
    "describe_source",
    "FoldChannelAffine",
    "channel_vector",
    "fold_affine",
    "fold_channel_affine_pass",
    "foldable_layer",
]

# Layers whose output channels are affine in their weight (input 1) and bias (input 2).
AFFINE_LAYERS = tuple(op for op, s in all_schemas().items()
                      if len(s.inputs) >= 3 and (s.inputs[1].role, s.inputs[2].role) == (WEIGHT, BIAS))
ACT_KEYS = tuple(ACTIVATION_ATTRS)


def describe_source(v: Value) -> str:
    """'Relu node 'r1'' / 'a graph input' / 'a constant': for refusal reasons."""
    if v.producer is not None:
        return f"{v.producer.op_type} node {v.producer.name!r}"
    return "a constant" if v.const is not None else "a graph input"


def foldable_layer(x: Value, layers: tuple[str, ...] = AFFINE_LAYERS) -> Node | str:
    """The layer producing ``x`` if a per-channel affine map of ``x`` may fold into its
    weights, else the reason. (That ``x`` has no other user is checked for the match: ``x``
    is its intermediate.)"""
    layer = producer_of(x, layers)
    if layer is None:
        return f"input {x.name!r} comes from {describe_source(x)}, not one of {list(layers)}"
    if layer.attrs.get("activation"):
        return (f"{layer.op_type} {layer.name!r} already has fused activation "
                f"{layer.attrs['activation']!r}")
    for v in layer.inputs[1:3]:
        if v is None:
            continue
        if v.const is None:
            return f"{layer.op_type} {layer.name!r} weight {v.name!r} is not a constant"
        if not np.issubdtype(v.const.dtype, np.floating):
            return f"{layer.op_type} {layer.name!r} weight {v.name!r} is {v.const.dtype}, not floating"
    return layer


def channel_vector(const: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray | str:
    """``const`` as a float64 (C,) vector over axis 1 of ``out_shape``, or why it is not one."""
    rank = len(out_shape)
    if const.ndim > rank:
        return f"constant of shape {const.shape} has more dims than the output {out_shape}"
    shape = (1,) * (rank - const.ndim) + const.shape
    over = [i for i, d in enumerate(shape) if d != 1 and i != 1]
    if over:
        kind = "batch" if 0 in over else "spatial"
        return f"constant of shape {const.shape} broadcasts over the {kind} dims of {out_shape}"
    if shape[1] not in (1, out_shape[1]):
        return f"constant of shape {const.shape} does not match {out_shape[1]} channels"
    if not np.all(np.isfinite(const)):
        return f"constant of shape {const.shape} has non-finite values"
    return np.broadcast_to(np.asarray(const, np.float64).reshape(-1), (out_shape[1],)).copy()


def _scale_weight(layer: Node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """float64 ``w`` with the slice of each output channel m multiplied by ``s[m]``."""
    rows = weight_by_out_channel(layer, w)
    return weight_from_out_channel(layer, rows * s.reshape(-1, *(1,) * (rows.ndim - 1)))


def fold_affine(graph: Graph, layer: Node, s: np.ndarray | None, t: np.ndarray | None) -> None:
    """Rewrite ``layer``'s weights so it computes ``layer(x) * s + t`` (float64 (M,) vectors;
    None = 1 / 0)."""
    w_v = layer.inputs[1]
    b_v = layer.inputs[2] if len(layer.inputs) > 2 else None
    if s is not None:
        w = _scale_weight(layer, w_v.const.astype(np.float64), s)
        replace_const_input(graph, layer, 1, w.astype(w_v.const.dtype), f"{w_v.name}_folded")
    if layer.op_type == "Gemm":
        beta = layer.attrs["beta"]
        live = b_v is not None and beta != 0.0  # beta = 0 ignores C
        if t is None and not live:
            return
        b = beta * b_v.const.astype(np.float64) if live else np.zeros(1)
        b = b * s if s is not None else b
        b = b + t if t is not None else b
        layer.attrs["beta"] = 1.0
    else:
        if t is None and b_v is None:
            return
        b = b_v.const.astype(np.float64) if b_v is not None else 0.0
        b = b * s if s is not None else b
        b = b + t if t is not None else b
    dtype = b_v.const.dtype if b_v is not None else w_v.const.dtype
    name = f"{b_v.name}_folded" if b_v is not None else f"{layer.name}_bias"
    replace_const_input(graph, layer, 2, np.asarray(b, dtype=dtype), name)


def take_activation(layer: Node, node: Node) -> None:
    """Move ``node``'s fused activation (if it has one) to ``layer`` (which has none)."""
    if node.attrs.get("activation"):
        for k in ACT_KEYS:
            layer.attrs[k] = node.attrs[k]


class FoldChannelAffine(FusionRule):
    """``layer -> Mul/Add/Sub/Div(per-channel constant)`` becomes one layer."""

    name = "fold_channel_affine"
    anchor_ops = ("Mul", "Add", "Sub", "Div")

    def check(self, graph: Graph, node: Node) -> Match | str:
        a, b = node.inputs
        if node.op_type in ("Sub", "Div") and (b.const is None or a.const is not None):
            return f"only x {'-' if node.op_type == 'Sub' else '/'} constant folds"
        x, c = (a, b) if b.const is not None else (b, a)
        if c.const is None:
            return "neither operand is a constant"
        if x.const is not None:
            return "both operands are constants (constant folding's job)"
        if x.shape is None:
            return f"shape of {x.name!r} is unknown"
        vec = channel_vector(c.const, x.shape)
        if isinstance(vec, str):
            return vec
        if node.op_type == "Div" and np.any(vec == 0):
            return f"divisor {c.name!r} has zeros"
        layer = foldable_layer(x)
        if isinstance(layer, str):
            return layer
        if node.op_type in ("Mul", "Div"):
            s, t = (vec if node.op_type == "Mul" else 1.0 / vec), None
        else:
            s, t = None, (vec if node.op_type == "Add" else -vec)
        return Match(node, [layer, node], layer=layer, scale=s, shift=t, const=c)

    def rewrite(self, graph: Graph, match: Match) -> None:
        layer, node = match.layer, match.anchor
        fold_affine(graph, layer, match.scale, match.shift)
        take_activation(layer, node)
        absorb_into(graph, layer, [node])
        drop_dead_const(graph, match.const)


def fold_channel_affine_pass() -> FusionPass:
    return FusionPass(FoldChannelAffine())
