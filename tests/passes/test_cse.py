"""MergeCommonSubexpressions: identical weights and nodes merge, provenance is united,
graph outputs keep their names; old vs new outputs through np_ops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.passes.cse import MergeCommonSubexpressions
from fc.testing import apply_pass, assert_same_outputs, check_close

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: (RNG.standard_normal(v.shape) * 10).astype(v.dtype) for v in g.inputs}


def _twin_relus() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    a = g.add_node("Relu", [x], name="a", provenance=["relu_a"])
    b = g.add_node("Relu", [x], name="b", provenance=["relu_b"])
    g.outputs = [g.add_node("Add", [a.output, b.output], name="add").output]
    return g


def _twin_chains() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    outs = []
    for k in "ab":
        r = g.add_node("Relu", [x], name=f"relu_{k}")
        outs.append(g.add_node("LeakyRelu", [r.output], {"alpha": 0.2}, name=f"leaky_{k}").output)
    g.outputs = [g.add_node("Sub", outs, name="sub").output]
    return g


def _weights(c1: np.ndarray, c2: np.ndarray) -> Builder:
    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", (2, 3))
        a = g.add_node("Mul", [x, g.add_const("c1", c1)], name="m1")
        b = g.add_node("Mul", [x, g.add_const("c2", c2)], name="m2")
        g.outputs = [g.add_node("Sub", [a.output, b.output], name="sub").output]
        return g

    return build


def _zeros_two_dtypes() -> Graph:
    """float32 and int32 zeros have the same bytes: still two weights."""
    g = Graph()
    x, xi = g.add_input("x", (2, 3)), g.add_input("xi", (2, 3), "int32")
    a = g.add_node("Mul", [x, g.add_const("zf", np.zeros(3, np.float32))], name="mf")
    b = g.add_node("Mul", [xi, g.add_const("zi", np.zeros(3, np.int32))], name="mi")
    g.outputs = [a.output, b.output]
    return g


def _attrs_differ() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    a = g.add_node("LeakyRelu", [x], {"alpha": 0.1}, name="a")
    b = g.add_node("LeakyRelu", [x], {"alpha": 0.2}, name="b")
    g.outputs = [g.add_node("Add", [a.output, b.output], name="add").output]
    return g


def _second_is_output() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    a = g.add_node("Sigmoid", [x], name="a")
    b = g.add_node("Sigmoid", [x], name="b")
    g.outputs = [g.add_node("Relu", [a.output], name="relu").output, b.output]
    return g


ONES = np.ones((3,), np.float32)
CASES = [
    pytest.param(_twin_relus, 1, ["Relu", "Add"], id="twin_nodes"),
    pytest.param(_twin_chains, 2, ["Relu", "LeakyRelu", "Sub"], id="twin_chains"),
    pytest.param(_weights(ONES * 2, ONES * 2), 2, ["Mul", "Sub"], id="equal_weights"),
    pytest.param(_weights(ONES * 2, ONES * 3), 0, ["Mul", "Mul", "Sub"], id="different_weights"),
    pytest.param(_weights(ONES * 0.0, ONES * -0.0), 0, ["Mul", "Mul", "Sub"],
                 id="zero_and_negative_zero_kept"),
    pytest.param(_weights(ONES * 2, (ONES * 2).reshape(1, 3)), 0, ["Mul", "Mul", "Sub"],
                 id="same_bytes_other_shape_kept"),
    pytest.param(_zeros_two_dtypes, 0, ["Mul", "Mul"], id="same_bytes_other_dtype_kept"),
    pytest.param(_attrs_differ, 0, ["LeakyRelu", "LeakyRelu", "Add"], id="attrs_differ"),
    pytest.param(_second_is_output, 1, ["Sigmoid", "Relu"], id="duplicate_is_graph_output"),
]


@pytest.mark.parametrize("build, count, remaining", CASES)
def test_merge_common_subexpressions(build: Builder, count: int, remaining: list[str]):
    before, after = apply_pass(MergeCommonSubexpressions(), build, count=count, remaining=remaining)
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds)


def test_provenance_united_and_numerics_match_torch():
    g = _twin_relus()
    MergeCommonSubexpressions()(g)
    relu = g.nodes[0]
    assert relu.name == "a" and relu.provenance == ("relu_a", "relu_b")
    assert g.nodes[1].inputs == (relu.output, relu.output)
    x = _feeds(g)["x"]
    expected = 2 * torch.relu(torch.from_numpy(x))
    check_close(npo.run(g, {"x": x})["add_out"], expected.numpy())


def test_equal_weights_leave_one_weight():
    g = _weights(ONES * 2, ONES * 2)()
    MergeCommonSubexpressions()(g)
    assert list(g.initializers) == ["c1"]


def test_refuses_when_both_duplicates_are_graph_outputs():
    g = Graph()
    x = g.add_input("x", (2, 3))
    g.outputs = [g.add_node("Tanh", [x], name=n).output for n in ("a", "b")]
    p = MergeCommonSubexpressions()
    assert p(g).count == 0
    assert [n.name for n in g] == ["a", "b"]
    assert p.refusals == [("node 'b'", "'b_out' and its replacement 'a_out' are both graph outputs")]
    verify(g)


def test_refuses_to_merge_weight_that_is_graph_output():
    g = Graph()
    x = g.add_input("x", (3,))
    c1, c2 = g.add_const("c1", ONES), g.add_const("c2", ONES.copy())
    g.outputs = [g.add_node("Add", [x, c1], name="add").output, c2]
    p = MergeCommonSubexpressions()
    assert p(g).count == 0
    assert set(g.initializers) == {"c1", "c2"}
    assert len(p.refusals) == 1 and "is a constant" in p.refusals[0][1]
    verify(g)
