"""Common-subexpression elimination: merge identical weights, then identical nodes.

Weights are identical when dtype, shape and bytes are equal (bytes, not values: -0.0 and
0.0, or two NaN payloads, stay distinct); they are bucketed by a digest of their bytes and
compared exactly within a bucket. Two nodes are identical when op type, (complete, typed)
attributes and input *values* are the same, so after the weights are merged, nodes that
read equal weights become identical too. Nodes are visited in graph order with a dict keyed
by ``(op_type, attrs, input ids)``: the first node of a key is kept and later ones are
redirected to it, which also makes their users identical, so a duplicated chain merges in
one sweep. The kept node gets the union of provenance. Linear in nodes (and weight bytes).

A duplicate that is a graph output is kept when merging would rename that output
(``fc.passes.infra.replace_blocker``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from fc.ir.core import Graph, Node, Value
from fc.passes.infra import Pass, replace_blocker

__all__ = ["MergeCommonSubexpressions"]

log = logging.getLogger("fc.passes")


def _digest(arr: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).digest()


def _node_key(node: Node) -> tuple[Any, ...]:
    return (node.op_type, tuple(node.attrs.items()), len(node.outputs),
            tuple(None if v is None else id(v) for v in node.inputs))


class MergeCommonSubexpressions(Pass):
    """Merge equal weights and identical nodes; count = weights merged + nodes merged."""

    name = "merge_common_subexpressions"

    def __init__(self) -> None:
        self.refusals: list[tuple[str, str]] = []

    def _refuse(self, where: str, reason: str) -> None:
        self.refusals.append((where, reason))
        log.debug("%s: refused at %s: %s", self.name, where, reason)

    def run(self, graph: Graph) -> int:
        self.refusals = []
        count = self._merge_consts(graph)
        seen: dict[tuple[Any, ...], Node] = {}
        for node in graph.nodes:
            key = _node_key(node)
            first = seen.get(key)
            if first is None:
                seen[key] = node
                continue
            reason = next((r for old, new in zip(node.outputs, first.outputs)
                           if (r := replace_blocker(graph, old, new)) is not None), None)
            if reason is not None:
                self._refuse(f"node {node.name!r}", reason)
                continue
            for old, new in zip(node.outputs, first.outputs):
                old.replace_all_uses_with(new, graph, rename=True)
            first.add_provenance(node.provenance)
            graph.erase_node(node)
            count += 1
        graph.remove_unused_consts()  # the merged-away duplicates
        return count

    def _merge_consts(self, graph: Graph) -> int:
        buckets: dict[tuple[str, tuple[int, ...], bytes], list[Value]] = {}
        merged = 0
        for v in list(graph.initializers.values()):
            arr = v.const
            bucket = buckets.setdefault((arr.dtype.str, arr.shape, _digest(arr)), [])
            keep = next((k for k in bucket if k.const.tobytes() == arr.tobytes()), None)
            if keep is None:
                bucket.append(v)
                continue
            reason = replace_blocker(graph, v, keep)
            if reason is not None:
                self._refuse(f"weight {v.name!r}", reason)
                continue
            v.replace_all_uses_with(keep, graph, rename=True)
            merged += 1
        return merged
