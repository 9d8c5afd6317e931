"""Fold a per-channel constant Mul / Add (Sub, Div) *before* a Conv into its weights: a
model's own input normalization (Keras' Rescaling and Normalization layers) becomes part of
the first layer where that is exact.

For ``y = Conv(x * s + t)`` with W (M, C/g, kh, kw), input channel ``c`` of group
``g = c // (C/g)`` and local index ``l = c % (C/g)``::

    W'[m, l] = W[m, l] * s[c]                       (every m of group g)
    b'[m]    = b[m] + sum_{l, i, j} W[m, l, i, j] * t[c]

The scale is always exact (the Conv's zero padding of ``x * s`` is the scaled zero padding of
``x``); the shift only when the Conv has no padding (a padded border would see ``t`` in the
IR but 0 in the original), so a shift before a padded Conv is refused. ``x - c`` is
``t = -c``, ``x / c`` is ``s = 1 / c``. The constant is per channel (C, 1, 1), (1, C, 1, 1) or
a scalar; the Mul/Add output must be used by the Conv alone. Arithmetic in float64, rounded
once to the weight's dtype; shared weights are copied (``replace_const_input``).
"""

from __future__ import annotations

import numpy as np

from fc.ir.core import Graph, Node
from fc.passes.fold_channel_affine import channel_vector
from fc.passes.infra import FusionPass, FusionRule, Match, drop_dead_const, replace_const_input

__all__ = ["FoldInputAffine", "fold_input_affine_pass"]

_OPS = ("Mul", "Div", "Add", "Sub")


class FoldInputAffine(FusionRule):
    name = "fold_input_affine"
    anchor_ops = ("Conv",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        x = node.inputs[0]
        src = x.producer
        if src is None or src.op_type not in _OPS:
            return f"input {x.name!r} is not produced by {'/'.join(_OPS)}"
        if src.op_type == "Add" and src.attrs["activation"]:
            return f"Add {src.name!r} carries activation {src.attrs['activation']!r}"
        a, b = src.inputs
        if b.const is None or a.const is not None:
            return f"{src.op_type} {src.name!r} has no constant right operand"
        if a.shape is None or len(a.shape) != 4:
            return f"{src.op_type} {src.name!r} is not on a 4-D tensor"
        vec = channel_vector(b.const, a.shape)
        if isinstance(vec, str):
            return f"{src.op_type} {src.name!r}: {vec}"
        w = node.inputs[1]
        if w.const is None:
            return f"weight {w.name!r} is not a constant"
        shift = src.op_type in ("Add", "Sub")
        if shift and any(node.attrs["pads"]):
            return (f"a shift before the padded Conv {node.name!r} is not exact (pads "
                    f"{list(node.attrs['pads'])})")
        if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].const is None:
            return f"bias of {node.name!r} is not a constant"
        factor = {"Mul": vec, "Div": 1.0 / vec, "Add": vec, "Sub": -vec}[src.op_type]
        return Match(node, [src, node], src=src, x=a, factor=factor, shift=shift)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, src = match.anchor, match.src
        w = node.inputs[1]
        m, cg, kh, kw = w.shape
        g = node.attrs["group"]
        wg = w.const.astype(np.float64).reshape(g, m // g, cg, kh, kw)
        f = match.factor.reshape(g, 1, cg, 1, 1)
        b_old = node.inputs[2] if len(node.inputs) > 2 else None
        if match.shift:
            extra = (wg * f).sum(axis=(2, 3, 4)).reshape(m)
            base = np.zeros(m) if b_old is None else b_old.const.astype(np.float64)
            dtype = w.const.dtype
            new_b = graph.add_const(f"{node.name}_bias", (base + extra).astype(dtype))
            node.set_inputs([match.x, w, new_b])
            drop_dead_const(graph, b_old)
        else:
            arr = (wg * f).reshape(w.shape).astype(w.const.dtype)
            node.set_input(0, match.x)
            replace_const_input(graph, node, 1, arr, f"{w.name}_input_scaled")
        node.add_provenance(src.provenance)
        const = src.inputs[1]
        graph.erase_node(src)
        drop_dead_const(graph, const)


def fold_input_affine_pass() -> FusionPass:
    return FusionPass(FoldInputAffine())
