"""Canonical forms of ops the hardware runs under one name.

- ``Sum(a, b)`` is ``Add(a, b)`` (same broadcasting), and ``Sum(a, b, c, ...)`` a chain of
  Adds: Caffe2-era ONNX models write residual additions as Sum, and only Add carries a fused
  activation.
- ``Clip(0, FLT_MAX)`` is ``Relu``.

Both rewrites keep the node's output value (its name and users), so nothing downstream
changes.
"""

from __future__ import annotations

from fc.ir.core import Graph, Node
from fc.ir.schema import FLT_MAX
from fc.passes.infra import Pass, retype_node

__all__ = ["CanonicalizeOps"]


class CanonicalizeOps(Pass):
    name = "canonicalize_ops"

    def run(self, graph: Graph) -> int:
        count = 0
        for node in graph.nodes:
            if node.op_type == "Sum" and len(node.inputs) >= 2:
                self._sum_to_adds(graph, node)
                count += 1
            elif (node.op_type == "Clip" and node.attrs["min"] == 0.0
                  and node.attrs["max"] >= FLT_MAX):
                retype_node(node, "Relu", node.inputs)
                count += 1
        return count

    @staticmethod
    def _sum_to_adds(graph: Graph, node: Node) -> None:
        acc, *rest = node.inputs
        for i, v in enumerate(rest[:-1]):
            acc = graph.add_node("Add", [acc, v], name=f"{node.name}_add{i}",
                                 provenance=node.provenance, before=node).output
        retype_node(node, "Add", [acc, rest[-1]])
