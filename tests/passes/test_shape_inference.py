"""InferShapes: stale annotations are recomputed in graph order; the count is the number of
values that changed; the stored types then equal the arrays the executor produces."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import fc.np_ops as npo
from fc.errors import SchemaError
from fc.ir import Graph, Value, verify
from fc.passes.shape_inference import InferShapes

RNG = np.random.default_rng(0)


def _graph() -> Graph:
    """x (2, 3, 4) -> Reshape (0, 12) -> Relu -> Cast float32 -> Add(w) -> output."""
    g = Graph()
    x = g.add_input("x", (2, 3, 4))
    r = g.add_node("Reshape", [x], {"shape": (0, 12)}, name="reshape")
    a = g.add_node("Relu", [r.output], name="relu")
    c = g.add_node("Cast", [a.output], {"to": "float32"}, name="cast")
    w = g.add_const("w", np.ones((12,), np.float32))
    g.outputs = [g.add_node("Add", [c.output, w], name="add").output]
    return g


def _fresh(g: Graph) -> None:
    pass


def _reshape_attr_edited(g: Graph) -> None:
    """An importer patched the target shape after the node was built."""
    g.node_by_name("reshape").attrs["shape"] = (0, 3, 4)
    g.initializers["w"].const = np.ones((4,), np.float32)


def _cast_attr_edited(g: Graph) -> None:
    g.node_by_name("cast").attrs["to"] = "float64"
    g.initializers["w"].const = np.ones((12,), np.float64)


def _weight_replaced(g: Graph) -> None:
    """A fusion swapped a weight's array but not its annotation: the weight and Add change."""
    g.initializers["w"].const = np.ones((3, 1, 12), np.float32)


def _annotations_cleared(g: Graph) -> None:
    for n in g:
        for v in n.outputs:
            v.shape = v.dtype = None


@pytest.mark.parametrize("edit, count", [
    pytest.param(_fresh, 0, id="fresh_graph"),
    pytest.param(_reshape_attr_edited, 1 + 4, id="reshape_attr_edited"),  # w + 4 node outputs
    pytest.param(_cast_attr_edited, 1 + 2, id="cast_dtype_edited"),  # w, cast, add
    pytest.param(_weight_replaced, 1 + 1, id="weight_array_replaced"),  # w, add
    pytest.param(_annotations_cleared, 4, id="annotations_cleared"),
])
def test_infer_shapes(edit: Callable[[Graph], None], count: int):
    g = _graph()
    edit(g)
    result = InferShapes()(g)
    assert (result.count, result.modified) == (count, count > 0)
    verify(g)
    assert InferShapes()(g).count == 0  # a fixed point
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    env = npo.run(g, {"x": x}, intermediate=True)
    for v in g.values():
        assert (v.shape, v.dtype) == (env[v.name].shape, env[v.name].dtype.name), v.name


def test_reshape_edit_matches_torch_shapes():
    g = _graph()
    _reshape_attr_edited(g)
    InferShapes()(g)
    t = torch.zeros(2, 3, 4).reshape(2, 3, 4) + torch.ones(4)
    assert g.outputs[0].shape == tuple(t.shape)


def test_missing_input_type_names_the_node():
    g = Graph()
    x = g.add_input("x", (2, 3))
    loose = Value("loose")  # e.g. a half-built importer value with no type yet
    n = g.add_node("Add", [x, loose], name="add")
    g.outputs = [n.output]
    with pytest.raises(SchemaError, match="node 'add' \\(Add\\): input 'loose' has no shape"):
        InferShapes()(g)
