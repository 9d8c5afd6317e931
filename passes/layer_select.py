"""Naming layers for compression: a config may say ``/conv1/Conv`` (the IR node),
``conv1.weight`` (its weight, as a state dict or a seed tool's YAML names it), ``conv1`` (the
module owning that weight) or ``features.0`` (a source framework's node name, kept in the
node's provenance).

``find_layers`` resolves such keys to nodes in that order of preference and lists every key
that names nothing in one error, so a typo in a 50-line YAML is found at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fc.errors import PassError
from fc.ir.core import Graph, Node

__all__ = ["find_layers"]


def find_layers(graph: Graph, keys: Iterable[str], ops: Sequence[str], *, what: str = "layer"
                ) -> dict[str, Node]:
    """``key -> node`` for nodes of ``ops``; raises ``PassError`` naming every unknown key."""
    keys = list(dict.fromkeys(keys))
    layers = [n for n in graph if n.op_type in ops]
    by_name = {n.name: n for n in layers}
    by_weight: dict[str, Node] = {}
    by_source: dict[str, list[Node]] = {}
    for n in layers:
        for v in n.inputs[1:]:
            if v is not None and v.const is not None:
                by_weight.setdefault(v.name, n)
        for p in n.provenance:
            by_source.setdefault(p, []).append(n)
    out: dict[str, Node] = {}
    unknown, ambiguous = [], []
    for key in keys:
        node = by_name.get(key) or by_weight.get(key) or by_weight.get(f"{key}.weight")
        if node is None:
            found = by_source.get(key, [])
            if len(found) > 1:
                ambiguous.append(f"{key!r} ({', '.join(repr(n.name) for n in found)})")
                continue
            node = found[0] if found else None
        if node is None:
            unknown.append(key)
        else:
            out[key] = node
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(f"no {'/'.join(ops)} {what} named {unknown} (by node, weight or source "
                         f"name)")
        if ambiguous:
            parts.append(f"source names of several nodes: {'; '.join(ambiguous)}")
        raise PassError(f"graph {graph.name!r}: " + "; ".join(parts))
    return out
