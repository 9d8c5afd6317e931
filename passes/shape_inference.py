"""Shape inference: re-annotate every value's shape and dtype from the op schemas.

Rewrites (fusions, folding, importers that patch attributes) may leave a value's stored
type stale; the verifier then rejects the graph. This pass walks the nodes in graph
(topological) order, so each node's inputs are already up to date when its shape rule runs,
and stores what ``fc.ir.schema.infer_types`` says. Weights take their type from their array.
The count is the number of values whose annotation changed, so the pass is a fixed point
once the annotations are consistent.
"""

from __future__ import annotations

from fc.ir.core import Graph
from fc.ir.schema import infer_types
from fc.passes.infra import Pass

__all__ = ["InferShapes"]


class InferShapes(Pass):
    """(Re)annotate shapes/dtypes in graph order; count = values whose annotation changed."""

    name = "infer_shapes"

    def run(self, graph: Graph) -> int:
        changed = 0
        for v in graph.initializers.values():
            shape, dtype = tuple(v.const.shape), v.const.dtype.name
            if (v.shape, v.dtype) != (shape, dtype):
                v.shape, v.dtype = shape, dtype
                changed += 1
        for node in graph:
            # A missing input type raises SchemaError naming the node and the input.
            for v, t in zip(node.outputs, infer_types(node)):
                if (v.shape, v.dtype) != (t.shape, t.dtype):
                    v.shape, v.dtype = t.shape, t.dtype
                    changed += 1
        return changed
