"""Cancel or compose back-to-back data-movement ops.

- ``transpose_pair``: ``Transpose(Transpose(x, p1), p2)`` is ``Transpose(x, c)`` with
  ``c[j] = p1[p2[j]]`` (output axis j reads axis p2[j] of the middle tensor, which is axis
  p1[p2[j]] of x). When c is the identity both nodes go; otherwise the second becomes the
  composed Transpose and the first goes.
- ``reshape_pair``: ``Reshape(Reshape(x, s1), s2)`` (the first may be a Flatten) is
  ``Reshape(x, s2')``: a row-major reshape only depends on the final shape. s2's 0-codes
  ("copy dim i of my input") refer to the *middle* tensor, so each is re-resolved against x:
  it stays 0 only when the middle dim i is itself a copy of x's dim i (s1[i] == 0, or a
  Flatten(axis=1)'s dim 0), which keeps the batch symbolic; otherwise it becomes the middle
  dim's literal size. -1 needs no change (same element count).
- ``squeeze_pair``: ``Squeeze(Unsqueeze(x, a), a)`` and ``Unsqueeze(Squeeze(x, a), a)``
  (same axes after normalizing) give x back: both nodes go.

Every rule anchors on the second node, so a chain of three folds in one sweep. The middle
value is the match's intermediate, so the rewrite is refused when it has other users or is a
graph output (it must survive then); it is also refused when bypassing would rename a graph
output.
"""

from __future__ import annotations

from fc.ir.core import Graph, Node, Value
from fc.passes.infra import FusionRule, Match, RewritePass, replace_blocker, retype_node

__all__ = ["CancelTransposes", "TransposePair", "ReshapePair", "SqueezePair"]


def _pair(node: Node, first_ops: tuple[str, ...]) -> tuple[Node | None, str | None]:
    """The producer of ``node``'s input if it is one of ``first_ops``."""
    mid = node.inputs[0]
    first = mid.producer
    if first is None or first.op_type not in first_ops:
        return None, f"input is not produced by {'/'.join(first_ops)}"
    if first.inputs[0].shape is None:
        return None, f"input {first.inputs[0].name!r} has no shape"
    return first, None


def _perm(node: Node, rank: int) -> tuple[int, ...]:
    return tuple(node.attrs["perm"]) or tuple(reversed(range(rank)))


def _bypass(graph: Graph, second: Node, first: Node, x: Value) -> None:
    second.output.replace_all_uses_with(x, graph, rename=True)
    graph.erase_node(second)
    graph.erase_node(first)


class TransposePair(FusionRule):
    name = "transpose_pair"
    anchor_ops = ("Transpose",)

    def _composed(self, first: Node, node: Node) -> tuple[int, ...]:
        rank = len(first.inputs[0].shape)
        p1, p2 = _perm(first, rank), _perm(node, rank)
        return tuple(p1[j] for j in p2)

    def check(self, graph: Graph, node: Node) -> Match | str:
        first, reason = _pair(node, ("Transpose",))
        if first is None:
            return reason
        c = self._composed(first, node)
        if c == tuple(range(len(c))):
            reason = replace_blocker(graph, node.output, first.inputs[0])
            if reason:
                return reason
        return Match(node, [first, node], first=first, perm=c)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, first, c = match.anchor, match.first, match.perm
        x = first.inputs[0]
        if c == tuple(range(len(c))):
            _bypass(graph, node, first, x)
        else:
            retype_node(node, "Transpose", [x], {"perm": c}, provenance=first.provenance)
            graph.erase_node(first)


class ReshapePair(FusionRule):
    name = "reshape_pair"
    anchor_ops = ("Reshape",)

    def _target(self, first: Node, node: Node) -> tuple[tuple[int, ...] | None, str | None]:
        shape, allowzero = node.attrs["shape"], node.attrs["allowzero"]
        if allowzero:
            return tuple(shape), None  # 0 is a literal size: independent of the input
        mid = node.inputs[0].shape
        out = []
        for i, d in enumerate(shape):
            if d != 0:
                out.append(d)
            elif (first.op_type == "Reshape" and not first.attrs["allowzero"]
                  and i < len(first.attrs["shape"]) and first.attrs["shape"][i] == 0) or (
                    first.op_type == "Flatten" and first.attrs["axis"] == 1 and i == 0):
                out.append(0)  # the middle dim i copies x's dim i: keep the copy
            elif mid[i] == 0:
                return None, f"dim {i} of {node.inputs[0].name!r} has size 0"
            else:
                out.append(mid[i])
        return tuple(out), None

    def check(self, graph: Graph, node: Node) -> Match | str:
        first, reason = _pair(node, ("Reshape", "Flatten"))
        if first is None:
            return reason
        if node.inputs[0].shape is None:
            return f"intermediate {node.inputs[0].name!r} has no shape"
        target, reason = self._target(first, node)
        if target is None:
            return reason
        return Match(node, [first, node], first=first, target=target)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, first, target = match.anchor, match.first, match.target
        retype_node(node, "Reshape", [first.inputs[0]],
                    {"shape": target, "allowzero": node.attrs["allowzero"]},
                    provenance=first.provenance)
        graph.erase_node(first)


def _squeezed_axes(node: Node, shape: tuple[int, ...]) -> frozenset[int]:
    """Axes a Squeeze with input ``shape`` removes (axes=() removes every 1-dim)."""
    axes = node.attrs["axes"]
    if not axes:
        return frozenset(i for i, d in enumerate(shape) if d == 1)
    return frozenset(a % len(shape) for a in axes)


def _unsqueezed_axes(node: Node, out_rank: int) -> frozenset[int]:
    return frozenset(a % out_rank for a in node.attrs["axes"])


class SqueezePair(FusionRule):
    name = "squeeze_pair"
    anchor_ops = ("Squeeze", "Unsqueeze")

    def check(self, graph: Graph, node: Node) -> Match | str:
        other = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
        first, reason = _pair(node, (other,))
        if first is None:
            return reason
        mid, y = node.inputs[0], node.output
        if mid.shape is None or y.shape is None:
            return f"intermediate {mid.name!r} has no shape"
        if node.op_type == "Squeeze":  # Squeeze(Unsqueeze(x))
            removed, added = _squeezed_axes(node, mid.shape), _unsqueezed_axes(first, len(mid.shape))
        else:  # Unsqueeze(Squeeze(x))
            removed = _squeezed_axes(first, first.inputs[0].shape)
            added = _unsqueezed_axes(node, len(y.shape))
        if removed != added:
            return f"axes {sorted(added)} added and {sorted(removed)} removed do not cancel"
        return replace_blocker(graph, y, first.inputs[0]) or Match(node, [first, node], first=first)

    def rewrite(self, graph: Graph, match: Match) -> None:
        first = match.first
        _bypass(graph, match.anchor, first, first.inputs[0])


class CancelTransposes(RewritePass):
    """Cancel/compose Transpose, Reshape and Squeeze/Unsqueeze pairs; count = pairs rewritten."""

    def __init__(self) -> None:
        super().__init__("cancel_transposes", [TransposePair(), ReshapePair(), SqueezePair()])
