"""Dead-code elimination: drop nodes none of whose outputs reach a graph output.

One reverse sweep over the nodes (reverse topological order): a node is live when one of
its outputs is a graph output or an input of a live node, and then its inputs become live.
Dead nodes are erased in that same reverse order, so every user of a dead value is gone
before its producer is erased. Weights that no node uses any more are dropped. Graph inputs
are the model's interface and stay even when unused. Linear in nodes + edges.
"""

from __future__ import annotations

from fc.ir.core import Graph
from fc.passes.infra import Pass

__all__ = ["EliminateDeadCode"]


class EliminateDeadCode(Pass):
    """Remove unreachable nodes and unused weights; count = nodes + weights removed."""

    name = "eliminate_dead_code"

    def run(self, graph: Graph) -> int:
        live: set[int] = {id(v) for v in graph.outputs}
        dead = []
        for node in reversed(graph.nodes):
            if any(id(v) in live for v in node.outputs):
                live.update(id(v) for v in node.inputs if v is not None)
            else:
                dead.append(node)
        for node in dead:  # already in reverse order: users before producers
            graph.erase_node(node)
        return len(dead) + graph.remove_unused_consts()
