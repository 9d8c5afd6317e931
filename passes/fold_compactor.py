"""Fold a 1 x 1 convolution into the convolution before it (ResRep's compactor).

ResRep (Ding et al. 2021) trains a 1 x 1 "compactor" Conv after each Conv-BN and prunes the
compactor's filters; at the end the chain ``Conv(W1, b1) -> (BN) -> Conv 1x1 (W2, b2)`` has
no nonlinearity inside, so (after BN folding puts BN into W1, b1) it is one convolution::

    y[o] = sum_m W2[o, m] (sum W1[m] * x + b1[m]) + b2[o]
    W[o] = sum_m W2[o, m] W1[m]        b = W2 b1 + b2

with the first Conv's strides, pads and dilations, and the 1 x 1's fused activation. The
bias of the first Conv also reaches the padded border, where the 1 x 1 adds it as well, so
the fold is exact everywhere. Products run in float64 and are rounded once.

Refused: a first Conv with a fused activation or that is grouped (the product would be a
dense kernel, more MACs than the pair), a second Conv that is not a plain 1 x 1 (stride 1,
no pads, group 1), non-constant weights, and a 1 x 1 that widens (more output channels than
it reads: a compactor never does, and the merged kernel could cost more than the two, as in
MobileNet's expansion after a linear bottleneck).
"""

from __future__ import annotations

import numpy as np

from fc.ir.core import Graph, Node
from fc.passes.infra import (
    FusionPass,
    FusionRule,
    Match,
    absorb_into,
    drop_dead_const,
    producer_of,
    replace_const_input,
)

__all__ = ["FoldCompactor", "fold_compactor_pass"]

ACT_KEYS = ("activation", "act_alpha", "act_beta")


def _weights(node: Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    w = node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    for t in (w, b):
        if t is not None and (t.const is None or not np.issubdtype(t.const.dtype, np.floating)):
            return f"Conv {node.name!r} weight {t.name!r} is not a floating constant"
    return w.const.astype(np.float64), None if b is None else b.const.astype(np.float64)


class FoldCompactor(FusionRule):
    """``Conv -> Conv 1x1`` with nothing between becomes one Conv."""

    name = "fold_compactor"
    anchor_ops = ("Conv",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        a = node.attrs
        w2 = node.inputs[1]
        if w2.shape is None or tuple(w2.shape[2:]) != (1, 1):
            return "not a 1x1 Conv"
        if tuple(a["strides"]) != (1, 1) or any(a["pads"]) or a["group"] != 1:
            return "the 1x1 Conv has strides, pads or groups"
        first = producer_of(node.inputs[0], "Conv")
        if first is None:
            return "its input does not come from a Conv"
        if first.attrs["activation"]:
            return f"Conv {first.name!r} carries activation {first.attrs['activation']!r}"
        if first.attrs["group"] != 1:
            return f"Conv {first.name!r} is grouped (group={first.attrs['group']})"
        if w2.shape[0] > w2.shape[1]:
            return f"the 1x1 Conv widens {w2.shape[1]} -> {w2.shape[0]} channels"
        for n in (first, node):
            ws = _weights(n)
            if isinstance(ws, str):
                return ws
        return Match(node, [first, node], first=first)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, first = match.anchor, match.first
        (w1, b1), (w2, b2) = _weights(first), _weights(node)
        mix = w2[:, :, 0, 0]  # (M2, M1)
        w = np.einsum("om,mchw->ochw", mix, w1)
        old = node.inputs[1:]
        dtype = first.inputs[1].const.dtype
        replace_const_input(graph, first, 1, w.astype(dtype), f"{first.inputs[1].name}_compacted")
        if b1 is not None or b2 is not None:
            b = np.zeros(len(w)) + (mix @ b1 if b1 is not None else 0.0) + (b2 if b2 is not None
                                                                             else 0.0)
            replace_const_input(graph, first, 2, b.astype(dtype), f"{first.name}_bias")
        for k in ACT_KEYS:
            first.attrs[k] = node.attrs[k]
        absorb_into(graph, first, [node])
        for t in old:
            drop_dead_const(graph, t)


def fold_compactor_pass() -> FusionPass:
    return FusionPass(FoldCompactor())
