"""CancelTransposes: Transpose/Reshape/Squeeze pairs cancel or compose; refusals; numerics
against the original graph (np_ops) and against torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.passes.cancel_transposes import CancelTransposes
from fc.testing import apply_pass, assert_same_outputs, check_close

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]


def _feeds(g: Graph, batch: int | None = None) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal((batch or v.shape[0], *v.shape[1:])).astype(v.dtype)
            for v in g.inputs}


def _chain(shape: tuple[int, ...], *ops: tuple[str, dict]) -> Builder:
    """x -> ops... -> Relu -> output."""

    def build() -> Graph:
        g = Graph()
        v = g.add_input("x", shape)
        for i, (op, attrs) in enumerate(ops):
            v = g.add_node(op, [v], attrs, name=f"n{i}").output
        g.outputs = [g.add_node("Relu", [v], name="relu").output]
        return g

    return build


def T(*perm: int) -> tuple[str, dict]:  # noqa: N802
    return ("Transpose", {"perm": perm})


def R(*shape: int) -> tuple[str, dict]:  # noqa: N802
    return ("Reshape", {"shape": shape})


S4 = (2, 3, 4, 5)

CASES = [
    pytest.param(_chain(S4, T(0, 2, 3, 1), T(0, 3, 1, 2)), 1, ["Relu"], None, id="nchw_nhwc_nchw"),
    pytest.param(_chain((2, 3, 4), ("Transpose", {}), ("Transpose", {})), 1, ["Relu"], None,
                 id="default_perm_twice"),
    pytest.param(_chain(S4, T(0, 2, 3, 1), T(1, 0, 3, 2)), 1, ["Transpose", "Relu"],
                 {"perm": (2, 0, 1, 3)}, id="compose"),
    pytest.param(_chain(S4, T(1, 0, 2, 3), T(0, 2, 1, 3), T(0, 1, 3, 2)), 2,
                 ["Transpose", "Relu"], {"perm": (1, 2, 3, 0)}, id="compose_chain3"),
    pytest.param(_chain(S4, T(0, 2, 3, 1), T(0, 3, 1, 2), T(0, 2, 3, 1)), 1,
                 ["Transpose", "Relu"], {"perm": (0, 2, 3, 1)}, id="cancel_then_keep_third"),
    pytest.param(_chain(S4, R(0, 60), R(0, 12, 5)), 1, ["Reshape", "Relu"],
                 {"shape": (0, 12, 5), "allowzero": 0}, id="reshape_keeps_batch_code"),
    pytest.param(_chain(S4, R(6, -1), R(0, 2, 10)), 1, ["Reshape", "Relu"],
                 {"shape": (6, 2, 10), "allowzero": 0}, id="reshape_zero_resolved_literal"),
    pytest.param(_chain(S4, ("Flatten", {"axis": 1}), R(0, 3, -1)), 1, ["Reshape", "Relu"],
                 {"shape": (0, 3, -1), "allowzero": 0}, id="flatten_then_reshape"),
    pytest.param(_chain(S4, ("Flatten", {"axis": 2}), R(0, 4, 5)), 1, ["Reshape", "Relu"],
                 {"shape": (6, 4, 5), "allowzero": 0}, id="flatten_axis2_then_reshape"),
    pytest.param(_chain((2, 3), ("Unsqueeze", {"axes": (1, -1)}), ("Squeeze", {"axes": (1, 3)})),
                 1, ["Relu"], None, id="unsqueeze_squeeze"),
    pytest.param(_chain((2, 1, 3, 1), ("Squeeze", {"axes": (-1, 1)}), ("Unsqueeze", {"axes": (1, 3)})),
                 1, ["Relu"], None, id="squeeze_unsqueeze"),
    pytest.param(_chain((2, 1, 3, 1), ("Squeeze", {}), ("Unsqueeze", {"axes": (1, 3)})),
                 1, ["Relu"], None, id="squeeze_all_unsqueeze"),
    pytest.param(_chain((2, 1, 3), ("Squeeze", {"axes": (1,)}), ("Unsqueeze", {"axes": (2,)})),
                 0, ["Squeeze", "Unsqueeze", "Relu"], None, id="squeeze_unsqueeze_other_axis_kept"),
    pytest.param(_chain((2, 3), ("Unsqueeze", {"axes": (0,)}), ("Squeeze", {})),
                 1, ["Relu"], None, id="unsqueeze_squeeze_all"),
    pytest.param(_chain((2, 1, 3), ("Unsqueeze", {"axes": (0,)}), ("Squeeze", {})),
                 0, ["Unsqueeze", "Squeeze", "Relu"], None, id="squeeze_all_removes_more_kept"),
]


@pytest.mark.parametrize("build, count, remaining, attrs", CASES)
def test_cancel_transposes(build: Builder, count: int, remaining: list[str], attrs: dict | None):
    before, after = apply_pass(CancelTransposes(), build, count=count, remaining=remaining)
    if attrs is not None:
        assert after.nodes[0].attrs == attrs
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds)


@pytest.mark.parametrize("perms", [
    pytest.param([(0, 2, 3, 1), (1, 0, 3, 2)], id="two"),
    pytest.param([(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2)], id="three"),
    pytest.param([(3, 2, 1, 0), (2, 3, 0, 1)], id="reversals"),
])
def test_composed_transpose_matches_torch(perms: list[tuple[int, ...]]):
    g = _chain(S4, *(T(*p) for p in perms))()
    CancelTransposes()(g)
    x = _feeds(g)["x"]
    expected = torch.from_numpy(x)
    for p in perms:
        expected = expected.permute(*p)
    check_close(npo.run(g, {"x": x})["relu_out"], torch.relu(expected).numpy())


def test_reshape_batch_code_survives_other_batch():
    """(0, 60) then (0, 12, 5) -> (0, 12, 5): the merged Reshape still follows the batch."""
    g = _chain((1, 3, 4, 5), R(0, 60), R(0, 12, 5))()
    CancelTransposes()(g)
    x = _feeds(g, batch=4)["x"]
    expected = torch.relu(torch.from_numpy(x).reshape(4, 12, 5)).numpy()
    check_close(npo.run(g, {"x": x})["relu_out"], expected)


def _middle_shared(second: tuple[str, dict], first: tuple[str, dict], shape) -> Graph:
    """x -> first -> second -> out0, and first's output also feeds a Sigmoid -> out1."""
    g = Graph()
    x = g.add_input("x", shape)
    a = g.add_node(first[0], [x], first[1], name="first")
    b = g.add_node(second[0], [a.output], second[1], name="second")
    g.outputs = [g.add_node("Relu", [b.output], name="relu").output,
                 g.add_node("Sigmoid", [a.output], name="sig").output]
    return g


def _middle_is_output(second: tuple[str, dict], first: tuple[str, dict], shape) -> Graph:
    g = Graph()
    x = g.add_input("x", shape)
    a = g.add_node(first[0], [x], first[1], name="first")
    b = g.add_node(second[0], [a.output], second[1], name="second")
    g.outputs = [g.add_node("Relu", [b.output], name="relu").output, a.output]
    return g


def _bypass_renames_output(second: tuple[str, dict], first: tuple[str, dict], shape) -> Graph:
    g = Graph()
    x = g.add_input("x", shape)
    a = g.add_node(first[0], [x], first[1], name="first")
    g.outputs = [g.add_node(second[0], [a.output], second[1], name="second").output]
    return g


PAIRS = {
    "transpose": (T(0, 2, 1), T(0, 2, 1), (2, 3, 4)),
    "reshape": (R(0, 12), R(0, 3, 4), (2, 3, 4)),
    "squeeze": (("Squeeze", {"axes": (1,)}), ("Unsqueeze", {"axes": (1,)}), (2, 3)),
}


@pytest.mark.parametrize("make, pair, reason", [
    pytest.param(_middle_shared, "transpose", "outside the match", id="transpose_shared_middle"),
    pytest.param(_middle_shared, "reshape", "outside the match", id="reshape_shared_middle"),
    pytest.param(_middle_shared, "squeeze", "outside the match", id="squeeze_shared_middle"),
    pytest.param(_middle_is_output, "transpose", "graph output", id="transpose_middle_output"),
    pytest.param(_middle_is_output, "reshape", "graph output", id="reshape_middle_output"),
    pytest.param(_bypass_renames_output, "transpose", "graph input", id="transpose_input_to_output"),
    pytest.param(_bypass_renames_output, "squeeze", "graph input", id="squeeze_input_to_output"),
])
def test_refusals(make: Callable[..., Graph], pair: str, reason: str):
    second, first, shape = PAIRS[pair]
    g = make(second, first, shape)
    ops = [n.op_type for n in g]
    p = CancelTransposes()
    assert p(g).count == 0
    assert [n.op_type for n in g] == ops
    refusals = [r for name, r in p.refusals if name == "second"]
    assert len(refusals) == 1 and reason in refusals[0]
    verify(g)
