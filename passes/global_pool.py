"""A mean or max over every spatial axis is a global pool.

TensorFlow has no global pooling op: Keras' GlobalAveragePooling2D is ``Mean(x, [1, 2])`` on
NHWC, which the layout pass turns into ``ReduceMean(x, axes=(2, 3))`` on NCHW. The hardware
pools globally, so

- ``ReduceMean/ReduceMax(x, axes=spatial, keepdims=1)`` becomes
  ``GlobalAveragePool/GlobalMaxPool(x)``;
- with ``keepdims=0`` the pool is followed by ``Flatten`` (N, C, 1, 1) -> (N, C), the node
  keeping its output value.

``spatial`` is every axis from 2 on of a tensor of rank >= 3 (in any order).
"""

from __future__ import annotations

from fc.ir.core import Graph
from fc.passes.infra import Pass, retype_node

__all__ = ["ReduceToGlobalPool"]

_POOL = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


class ReduceToGlobalPool(Pass):
    name = "reduce_to_global_pool"

    def run(self, graph: Graph) -> int:
        count = 0
        for node in graph.nodes:
            pool = _POOL.get(node.op_type)
            x = node.inputs[0] if node.inputs else None
            if pool is None or x is None or x.shape is None or len(x.shape) < 3:
                continue
            rank = len(x.shape)
            if sorted(a % rank for a in node.attrs["axes"]) != list(range(2, rank)):
                continue
            if node.attrs["keepdims"]:
                retype_node(node, pool, [x])
            else:
                pooled = graph.add_node(pool, [x], name=f"{node.name}_pool",
                                        provenance=node.provenance, before=node).output
                retype_node(node, "Flatten", [pooled], {"axis": 1})
            count += 1
        return count
