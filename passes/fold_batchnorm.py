"""Fold inference BatchNormalization into the preceding layer, or turn it into a Scale.

BatchNormalization over axis 1 is a per-channel affine map::

    y = (z - mean) / sqrt(var + eps) * gamma + beta = z * s + t
    s = gamma / sqrt(var + eps),   t = beta - mean * s

so after a Conv / ConvTranspose / Gemm / Scale ``z = W x + b`` it folds into the weights
(``fold_channel_affine.fold_affine`` holds the per-layer slicing)::

    W'[m] = W[m] * s[m],   b' = b * s + t = (b - mean) * s + beta

For Gemm "channel" is an output feature (a column of A'B', so a BN on the (N, M) output);
for ConvTranspose the output channels are split per group (see fold_channel_affine).
s and t are computed in float64 and the folded weights rounded once to their dtype (float32).

``FoldBatchNorm`` also folds a ``Scale`` (``X * scale + B``, possibly with an activation that
the layer then takes over) the same way, so the order in which the pipeline runs it and
``BatchNormToScale`` does not matter.

``BatchNormToScale`` rewrites a BatchNormalization that nothing foldable precedes (a graph
input, a layer with a fused activation, a layer output with other users) into the hardware
op ``Scale(X, s, t)``, in place (same node name, output value and provenance).

Refusals: a BN parameter or layer weight that is not a constant, ``var + eps <= 0``, a layer
output with other users or that is a graph output, a layer that already carries a fused
activation (``act(z)`` is not affine in W). Shared weights: a layer weight or bias that other
nodes also use is *copied* (copy-on-write, ``replace_const_input``), never mutated, so the
fold still happens and the other users keep their values; this costs the size of that weight.
"""

from __future__ import annotations

import numpy as np

from fc.ir.core import Graph, Node
from fc.passes.fold_channel_affine import fold_affine, foldable_layer, take_activation
from fc.passes.infra import FusionPass, FusionRule, Match, absorb_into, drop_dead_const, retype_node

__all__ = [
    "FoldBatchNorm",
    "BatchNormToScale",
    "bn_affine",
    "fold_batchnorm_pass",
    "batchnorm_to_scale_pass",
]

BN_PARAMS = ("scale", "B", "mean", "var")


def bn_affine(node: Node) -> tuple[np.ndarray, np.ndarray] | str:
    """(s, t) in float64 for a BatchNormalization or Scale node, or why they are not known."""
    names = BN_PARAMS if node.op_type == "BatchNormalization" else ("scale", "B")
    params = []
    for name, v in zip(names, node.inputs[1:]):
        if v is None:
            params.append(None)
            continue
        if v.const is None:
            return f"{node.op_type} parameter {name!r} ({v.name!r}) is not a constant"
        params.append(v.const.astype(np.float64))
    if node.op_type == "Scale":
        s = params[0]
        t = params[1] if len(params) > 1 and params[1] is not None else np.zeros_like(s)
    else:
        gamma, beta, mean, var = params
        denom = var + node.attrs["epsilon"]
        if np.any(denom <= 0):
            return f"var + epsilon <= 0 in {node.inputs[4].name!r}"
        s = gamma / np.sqrt(denom)
        t = beta - mean * s
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        return "non-finite scale or shift"
    return s, t


class FoldBatchNorm(FusionRule):
    """``Conv/ConvTranspose/Gemm/Scale -> BatchNormalization (or Scale)`` becomes the layer."""

    name = "fold_batchnorm"
    anchor_ops = ("BatchNormalization", "Scale")

    def check(self, graph: Graph, node: Node) -> Match | str:
        st = bn_affine(node)
        if isinstance(st, str):
            return st
        layer = foldable_layer(node.inputs[0])
        if isinstance(layer, str):
            return layer
        return Match(node, [layer, node], layer=layer, scale=st[0], shift=st[1])

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, layer = match.anchor, match.layer
        params = node.inputs[1:]
        fold_affine(graph, layer, match.scale, match.shift)
        take_activation(layer, node)  # a Scale's activation
        absorb_into(graph, layer, [node])
        for v in params:
            drop_dead_const(graph, v)


class BatchNormToScale(FusionRule):
    """A BatchNormalization with nothing to fold into becomes ``Scale(X, s, t)``."""

    name = "batchnorm_to_scale"
    anchor_ops = ("BatchNormalization",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        st = bn_affine(node)
        return st if isinstance(st, str) else Match(node, scale=st[0], shift=st[1])

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, s, t = match.anchor, match.scale, match.shift
        x, params = node.inputs[0], node.inputs[1:]
        dtype = params[0].const.dtype
        sv = graph.add_const(f"{node.name}_scale", s.astype(dtype))
        tv = graph.add_const(f"{node.name}_shift", t.astype(dtype))
        retype_node(node, "Scale", [x, sv, tv])  # keeps name, output value and provenance
        for v in params:
            drop_dead_const(graph, v)


def fold_batchnorm_pass() -> FusionPass:
    return FusionPass(FoldBatchNorm())


def batchnorm_to_scale_pass() -> FusionPass:
    return FusionPass(BatchNormToScale())
