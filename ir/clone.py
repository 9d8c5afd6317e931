"""Structural copy of a graph, so the compiler can fuse a copy while the reconstruct IR stays
as imported. Weight arrays are shared, not copied: passes never mutate an array in place
(they add new constants), so sharing is safe and saves the memory of a second model."""

from __future__ import annotations

from fc.ir.core import Graph, Node, Value

__all__ = ["clone"]


def clone(graph: Graph, name: str | None = None) -> Graph:
    g = Graph(graph.name if name is None else name)
    vmap: dict[int, Value] = {}

    def copy_value(v: Value) -> Value:
        nv = Value(v.name, v.shape, v.dtype, const=v.const)
        vmap[id(v)] = nv
        g.reserve(v.name)
        return nv

    g.inputs = [copy_value(v) for v in graph.inputs]
    for k, v in graph.initializers.items():
        g.initializers[k] = copy_value(v)
    for n in graph:
        ins = [None if v is None else vmap[id(v)] for v in n.inputs]
        outs = [copy_value(v) for v in n.outputs]
        g.append(Node(n.op_type, ins, outs, dict(n.attrs), name=n.name, provenance=n.provenance))
    g.outputs = [vmap[id(v)] for v in graph.outputs]
    g.layouts = dict(graph.layouts)
    return g
