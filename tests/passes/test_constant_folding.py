"""FoldConstants: all-constant nodes become weights named after their outputs, chains fold
in one sweep, huge results are refused; old vs new through np_ops, folded values vs torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from fc.errors import PassError
from fc.ir import Graph
from fc.passes.constant_folding import FoldConstants
from fc.testing import apply_pass, assert_same_outputs, check_close

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]
C = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}


def _chain() -> Graph:
    """c (3, 4) -> Transpose -> Reshape (1, 12) -> Add(x, .) : both fold."""
    g = Graph()
    x = g.add_input("x", (2, 12))
    t = g.add_node("Transpose", [g.add_const("c", C)], {"perm": (1, 0)}, name="t")
    r = g.add_node("Reshape", [t.output], {"shape": (1, 12)}, name="r")
    g.outputs = [g.add_node("Add", [x, r.output], name="add").output]
    return g


def _split() -> Graph:
    """Split of a weight into two weights, used by Mul and Add with x."""
    g = Graph()
    x = g.add_input("x", (2, 4))
    s = g.add_node("Split", [g.add_const("c", C)], {"axis": 0, "split": (1, 2)}, name="s",
                   num_outputs=2)
    m = g.add_node("Mul", [x, s.outputs[0]], name="mul")
    red = g.add_node("ReduceSum", [s.outputs[1]], {"axes": (0,), "keepdims": 0}, name="red")
    g.outputs = [g.add_node("Add", [m.output, red.output], name="add").output]
    return g


def _const_output() -> Graph:
    """A graph output computed from weights only: folds, keeping its name."""
    g = Graph()
    x = g.add_input("x", (3, 4))
    g.outputs = [g.add_node("Relu", [x], name="relu").output,
                 g.add_node("Neg", [g.add_const("c", C)], name="neg").output]
    return g


def _shared_weight() -> Graph:
    """c feeds a foldable Neg and a non-constant Mul: c must stay."""
    g = Graph()
    x = g.add_input("x", (3, 4))
    c = g.add_const("c", C)
    n = g.add_node("Neg", [c], name="neg")
    m = g.add_node("Mul", [x, c], name="mul")
    g.outputs = [g.add_node("Add", [m.output, n.output], name="add").output]
    return g


def _no_const() -> Graph:
    g = Graph()
    x = g.add_input("x", (3, 4))
    g.outputs = [g.add_node("Add", [x, g.add_const("c", C)], name="add").output]
    return g


def _huge() -> Graph:
    """A 1x1x4x4 weight resized 256x: 4 MiB from 64 bytes, refused."""
    g = Graph()
    x = g.add_input("x", (1, 1, 1024, 1024))
    c = g.add_const("c", np.ones((1, 1, 4, 4), np.float32))
    r = g.add_node("Resize", [c], {"scales": (1.0, 1.0, 256.0, 256.0)}, name="resize")
    g.outputs = [g.add_node("Add", [x, r.output], name="add").output]
    return g


CASES = [
    # count = folded nodes + weights dropped (c and the folded Transpose's result)
    pytest.param(_chain, 2 + 2, ["Add"], ["r_out"], id="chain"),
    pytest.param(_split, 2 + 2, ["Mul", "Add"], ["red_out", "s_out0"], id="split_then_reduce"),
    pytest.param(_const_output, 1 + 1, ["Relu"], ["neg_out"], id="graph_output"),
    pytest.param(_shared_weight, 1, ["Mul", "Add"], ["c", "neg_out"], id="shared_weight_kept"),
    pytest.param(_no_const, 0, ["Add"], ["c"], id="nothing_to_fold"),
    pytest.param(_huge, 0, ["Resize", "Add"], ["c"], id="huge_result_refused"),
]


@pytest.mark.parametrize("build, count, remaining, weights", CASES)
def test_fold_constants(build: Builder, count: int, remaining: list[str], weights: list[str]):
    before, after = apply_pass(FoldConstants(), build, count=count, remaining=remaining)
    assert sorted(after.initializers) == weights
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds)


def test_folded_values_match_torch():
    g = _chain()
    FoldConstants()(g)
    expected = torch.from_numpy(C).T.reshape(1, 12).numpy()
    check_close(g.initializers["r_out"].const, expected)
    g = _split()
    FoldConstants()(g)
    check_close(g.initializers["red_out"].const, torch.from_numpy(C[1:]).sum(0).numpy())


def test_folded_weight_does_not_alias_its_input():
    """Reshape's kernel returns a view; the new weight must own its data."""
    g = Graph()
    c = g.add_const("c", C.copy())
    x = g.add_input("x", (3, 4))
    r = g.add_node("Reshape", [c], {"shape": (12,)}, name="r")
    m = g.add_node("Mul", [x, c], name="keep_c")
    g.outputs = [r.output, m.output]
    FoldConstants()(g)
    assert not np.shares_memory(g.initializers["r_out"].const, g.initializers["c"].const)


def test_huge_result_refusal_is_logged(caplog: pytest.LogCaptureFixture):
    g = _huge()
    p = FoldConstants()
    with caplog.at_level("DEBUG", logger="fc.passes"):
        p(g)
    assert len(p.refusals) == 1 and p.refusals[0][0] == "resize"
    assert "4194304 bytes from 64 bytes" in p.refusals[0][1]
    assert "would bloat the weights" in caplog.text


def test_kernel_failure_names_the_node():
    g = Graph()
    g.add_input("x", (1,))
    idx = g.add_const("idx", np.array([5], np.int64))  # out of range for dim 3
    n = g.add_node("Gather", [g.add_const("c", C), idx], {"axis": 0}, name="gather")
    g.outputs = [n.output]
    with pytest.raises(PassError, match="node 'gather' \\(Gather\\): constant folding failed"):
        FoldConstants()(g)
