"""EliminateDeadCode: unreachable nodes and unused weights go, live ones and graph inputs
stay; old vs new outputs through np_ops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fc.ir import Graph, verify
from fc.passes.dce import EliminateDeadCode
from fc.testing import apply_pass, assert_same_outputs

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]
W = np.random.default_rng(1).standard_normal((3,)).astype(np.float32)


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}


def _dead_branch() -> Graph:
    """x -> Relu (output); x -> Sigmoid -> Mul(., w) unused: 2 nodes and w go."""
    g = Graph()
    x = g.add_input("x", (2, 3))
    s = g.add_node("Sigmoid", [x], name="sig")
    g.add_node("Mul", [s.output, g.add_const("w", W)], name="mul")
    g.outputs = [g.add_node("Relu", [x], name="relu").output]
    return g


def _dead_feeds_dead() -> Graph:
    """A live node's output also feeds a dead one: only the dead one goes."""
    g = Graph()
    x = g.add_input("x", (2, 3))
    r = g.add_node("Relu", [x], name="relu")
    g.add_node("Tanh", [r.output], name="tanh")
    g.outputs = [g.add_node("Add", [r.output, g.add_const("w", W)], name="add").output]
    return g


def _split_half_used() -> Graph:
    """A Split with one used output stays whole; an unused weight and graph input stay/go."""
    g = Graph()
    x = g.add_input("x", (2, 4))
    g.add_input("unused_input", (1,))
    g.add_const("orphan", W)
    s = g.add_node("Split", [x], {"axis": 1, "split": (1, 3)}, name="split", num_outputs=2)
    g.outputs = [g.add_node("Relu", [s.outputs[1]], name="relu").output]
    return g


def _all_live() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    r = g.add_node("Relu", [x], name="relu")
    g.outputs = [g.add_node("Mul", [r.output, g.add_const("w", W)], name="mul").output]
    return g


CASES = [
    pytest.param(_dead_branch, 2 + 1, ["Relu"], id="dead_branch"),
    pytest.param(_dead_feeds_dead, 1, ["Relu", "Add"], id="dead_user_of_live_value"),
    pytest.param(_split_half_used, 1, ["Split", "Relu"], id="split_half_used_orphan_weight"),
    pytest.param(_all_live, 0, ["Relu", "Mul"], id="all_live"),
]


@pytest.mark.parametrize("build, count, remaining", CASES)
def test_eliminate_dead_code(build: Builder, count: int, remaining: list[str]):
    before, after = apply_pass(EliminateDeadCode(), build, count=count, remaining=remaining)
    assert [v.name for v in after.inputs] == [v.name for v in before.inputs]
    used = {v.name for n in after for v in n.inputs if v is not None}
    assert set(after.initializers) <= used
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds)


def test_weight_that_is_graph_output_stays():
    g = Graph()
    x = g.add_input("x", (3,))
    w = g.add_const("w", W)
    g.add_node("Neg", [x], name="dead")
    g.outputs = [w]
    assert EliminateDeadCode()(g).count == 1
    assert list(g.initializers) == ["w"] and len(g) == 0
    verify(g)
