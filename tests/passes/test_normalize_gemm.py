"""NormalizeGemmInput: Reshape/Flatten before Gemm -> Flatten(axis=1); MatMul + bias Add ->
Gemm. Numerics against the original graph (np_ops) and against torch's linear."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.passes.normalize_gemm import NormalizeGemmInput
from fc.testing import apply_pass, assert_same_outputs, check_close

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


def _feeds(g: Graph, batch: int | None = None) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal((batch or v.shape[0], *v.shape[1:])).astype(v.dtype)
            for v in g.inputs}


def _flat_gemm(shape: tuple[int, ...], op: str, attrs: dict) -> Builder:
    """x -> op (Reshape/Flatten) -> Gemm(W (K, 6), b) -> output."""

    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", shape)
        f = g.add_node(op, [x], attrs, name="flat")
        k = f.output.shape[1]
        gemm = g.add_node("Gemm", [f.output, g.add_const("W", _w(k, 6)), g.add_const("b", _w(6))],
                          name="gemm")
        g.outputs = [gemm.output]
        return g

    return build


def _matmul_add(x_shape=(3, 4), bias_shape=(5,), bias_first=False, activation="") -> Builder:
    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", x_shape)
        m = g.add_node("MatMul", [x, g.add_const("W", _w(x_shape[-1], 5))], name="mm",
                       provenance=["fc1.matmul"])
        b = g.add_const("b", _w(*bias_shape))
        ins = [b, m.output] if bias_first else [m.output, b]
        a = g.add_node("Add", ins, {"activation": activation}, name="add", provenance=["fc1.add"])
        g.outputs = [a.output]
        return g

    return build


CASES = [
    pytest.param(_flat_gemm((2, 3, 4, 5), "Reshape", {"shape": (0, -1)}), 1, ["Flatten", "Gemm"],
                 id="reshape_0_minus1"),
    pytest.param(_flat_gemm((2, 3, 4, 5), "Reshape", {"shape": (2, -1)}), 1, ["Flatten", "Gemm"],
                 id="reshape_n_minus1"),
    pytest.param(_flat_gemm((2, 8, 1, 1), "Reshape", {"shape": (0, 8)}), 1, ["Flatten", "Gemm"],
                 id="reshape_0_c"),
    pytest.param(_flat_gemm((1, 8, 1, 1), "Reshape", {"shape": (1, 8)}), 1, ["Flatten", "Gemm"],
                 id="reshape_drop_trailing_ones"),
    pytest.param(_flat_gemm((2, 3, 4, 5), "Flatten", {"axis": -3}), 1, ["Flatten", "Gemm"],
                 id="flatten_negative_axis"),
    pytest.param(_flat_gemm((2, 3, 4, 5), "Flatten", {"axis": 1}), 0, ["Flatten", "Gemm"],
                 id="flatten_axis1_untouched"),
    pytest.param(_flat_gemm((2, 3, 4, 5), "Reshape", {"shape": (6, 20)}), 0, ["Reshape", "Gemm"],
                 id="reshape_merging_batch_kept"),
    pytest.param(_matmul_add(), 1, ["Gemm"], id="matmul_add"),
    pytest.param(_matmul_add(bias_shape=(1, 5)), 1, ["Gemm"], id="matmul_add_bias_1xm"),
    pytest.param(_matmul_add(bias_first=True), 1, ["Gemm"], id="matmul_add_bias_first"),
    pytest.param(_matmul_add(activation="relu"), 1, ["Gemm"], id="matmul_add_relu"),
    pytest.param(_matmul_add(bias_shape=(3, 5)), 0, ["MatMul", "Add"], id="full_bias_kept"),
    pytest.param(_matmul_add(x_shape=(2, 3, 4)), 0, ["MatMul", "Add"], id="matmul_3d_kept"),
]


@pytest.mark.parametrize("build, count, remaining", CASES)
def test_normalize_gemm_input(build: Builder, count: int, remaining: list[str]):
    before, after = apply_pass(NormalizeGemmInput(), build, count=count, remaining=remaining)
    if count and remaining[0] == "Flatten":
        assert after.nodes[0].attrs == {"axis": 1}
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds, op="Gemm")


@pytest.mark.parametrize("bias_shape, bias_first, activation", [
    pytest.param((5,), False, "", id="plain"),
    pytest.param((1, 5), True, "", id="bias_1xm_first"),
    pytest.param((5,), False, "relu", id="relu"),
])
def test_matmul_add_gemm_matches_torch_linear(bias_shape, bias_first, activation):
    g = _matmul_add(bias_shape=bias_shape, bias_first=bias_first, activation=activation)()
    NormalizeGemmInput()(g)
    (gemm,) = g.nodes
    assert gemm.attrs["transB"] == 0 and gemm.attrs["activation"] == activation
    assert gemm.inputs[2].shape == (5,)
    assert gemm.provenance == ("fc1.add", "fc1.matmul")
    x = _feeds(g)["x"]
    w, b = g.initializers["W"].const, gemm.inputs[2].const
    y = F.linear(torch.from_numpy(x), torch.from_numpy(w.T.copy()), torch.from_numpy(b))
    if activation:
        y = torch.relu(y)
    check_close(npo.run(g, {"x": x})[g.outputs[0].name], y.numpy(), op="Gemm")


def test_flatten_runs_at_other_batch():
    """Reshape(1, 8) at batch 1 becomes Flatten(axis=1), which follows the batch size."""
    g = _flat_gemm((1, 8, 1, 1), "Reshape", {"shape": (1, 8)})()
    NormalizeGemmInput()(g)
    x = _feeds(g, batch=3)["x"]
    w, b = g.initializers["W"].const, g.initializers["b"].const
    y = F.linear(torch.from_numpy(x).flatten(1), torch.from_numpy(w.T.copy()), torch.from_numpy(b))
    check_close(npo.run(g, {"x": x})[g.outputs[0].name], y.numpy(), op="Gemm")


def _refusal_graph(kind: str) -> Graph:
    g = Graph()
    x = g.add_input("x", (3, 4))
    w = g.add_const("W", _w(4, 5)) if kind != "weight_not_const" else g.add_input("W", (4, 5))
    m = g.add_node("MatMul", [x, w], name="mm")
    b = g.add_const("b", _w(5)) if kind != "bias_not_const" else g.add_input("b", (5,))
    a = g.add_node("Add", [m.output, b], name="add")
    g.outputs = [a.output]
    if kind == "two_users":
        g.outputs.append(g.add_node("Relu", [m.output], name="relu").output)
    elif kind == "middle_is_output":
        g.outputs.append(m.output)
    return g


@pytest.mark.parametrize("kind, reason", [
    pytest.param("two_users", "outside the match", id="matmul_two_users"),
    pytest.param("middle_is_output", "graph output", id="matmul_output_is_graph_output"),
    pytest.param("weight_not_const", "not a constant", id="weight_not_const"),
    pytest.param("bias_not_const", "not a constant", id="bias_not_const"),
])
def test_matmul_add_refusals(kind: str, reason: str):
    g = _refusal_graph(kind)
    ops = [n.op_type for n in g]
    p = NormalizeGemmInput()
    assert p(g).count == 0
    assert [n.op_type for n in g] == ops
    refusals = [r for name, r in p.refusals if name == "mm"]
    assert len(refusals) == 1 and reason in refusals[0]
    verify(g)


def test_shared_reshape_still_becomes_flatten():
    """The retyped Reshape keeps its output value: a second user sees the same tensor."""
    g = _flat_gemm((2, 3, 4, 5), "Reshape", {"shape": (0, -1)})()
    flat = g.node_by_name("flat")
    g.outputs.append(g.add_node("Sigmoid", [flat.output], name="sig").output)
    before = _flat_gemm((2, 3, 4, 5), "Reshape", {"shape": (0, -1)})()
    assert NormalizeGemmInput()(g).count == 1
    assert [n.op_type for n in g] == ["Flatten", "Gemm", "Sigmoid"]
    verify(g)
    x = _feeds(g)["x"]
    out = npo.run(g, {"x": x})
    check_close(out["gemm_out"], npo.run(before, {"x": x})["gemm_out"], op="Gemm")
    check_close(out["sig_out"], torch.sigmoid(torch.from_numpy(x).flatten(1)).numpy())
