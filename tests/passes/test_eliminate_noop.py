"""EliminateNoOps: which nodes go, what remains, and old vs new outputs through np_ops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.passes.eliminate_noop import EliminateNoOps
from fc.testing import apply_pass, assert_same_outputs, check_close

RNG = np.random.default_rng(0)
Builder = Callable[[], Graph]


def _feeds(g: Graph, batch: int | None = None) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal((batch or v.shape[0], *v.shape[1:])).astype(v.dtype)
            for v in g.inputs}


def _one(op: str, attrs: dict | None = None, shape=(2, 3, 4, 5), consts=()) -> Builder:
    """x -> op(x, *consts) -> Relu -> output (Relu keeps the no-op off the graph output)."""

    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", shape)
        ins = [x] + [g.add_const(f"c{i}", c) for i, c in enumerate(consts)]
        n = g.add_node(op, ins, attrs, name="n")
        g.outputs = [g.add_node("Relu", [n.output], name="relu").output]
        return g

    return build


def _c(shape, value) -> np.ndarray:
    return np.full(shape, value, np.float32)


def _const_first(op: str, value: float) -> Builder:
    """c op x: only the commutative ops are no-ops with the constant first."""

    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", (2, 3))
        n = g.add_node(op, [g.add_const("c", _c((3,), value)), x], name="n")
        g.outputs = [g.add_node("Relu", [n.output], name="relu").output]
        return g

    return build


def _identity_chain() -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    r = g.add_node("Relu", [x], name="relu")
    a = g.add_node("Identity", [r.output], name="id1")
    b = g.add_node("Dropout", [a.output], name="drop")
    g.outputs = [b.output]
    return g


CASES = [
    pytest.param(_one("Identity"), 1, ["Relu"], id="identity"),
    pytest.param(_one("Dropout", {"ratio": 0.3}), 1, ["Relu"], id="dropout"),
    pytest.param(_one("Reshape", {"shape": (0, -1, 4, 5)}), 1, ["Relu"], id="reshape_same_shape"),
    pytest.param(_one("Reshape", {"shape": (2, 3, 4, 5)}), 1, ["Relu"], id="reshape_literal"),
    pytest.param(_one("Reshape", {"shape": (2, -1, 4, 5)}), 0, ["Reshape", "Relu"],
                 id="reshape_literal_batch_and_infer_kept"),
    pytest.param(_one("Reshape", {"shape": (0, 12, 5)}), 0, ["Reshape", "Relu"],
                 id="reshape_changes_shape_kept"),
    pytest.param(_one("Flatten", {"axis": 1}, shape=(2, 7)), 1, ["Relu"], id="flatten_2d"),
    pytest.param(_one("Flatten", {"axis": 0}, shape=(1, 7)), 0, ["Flatten", "Relu"],
                 id="flatten_axis0_kept"),
    pytest.param(_one("Transpose", {"perm": (0, 1, 2, 3)}), 1, ["Relu"], id="transpose_identity"),
    pytest.param(_one("Transpose", {"perm": (0, 1, 3, 2)}), 0, ["Transpose", "Relu"],
                 id="transpose_swap_kept"),
    pytest.param(_one("Transpose", {}, shape=(5,)), 1, ["Relu"], id="transpose_default_1d"),
    pytest.param(_one("Cast", {"to": "float32"}), 1, ["Relu"], id="cast_same_dtype"),
    pytest.param(_one("Pad", {"pads": (0,) * 8, "mode": "reflect"}), 1, ["Relu"], id="pad_zero"),
    pytest.param(_one("Pad", {"pads": (0, 0, 1, 0, 0, 0, 0, 0)}), 0, ["Pad", "Relu"],
                 id="pad_nonzero_kept"),
    pytest.param(_one("Concat", {"axis": 1}), 1, ["Relu"], id="concat_single"),
    pytest.param(_one("Sum"), 1, ["Relu"], id="sum_single"),
    pytest.param(_one("Max"), 1, ["Relu"], id="max_single"),
    pytest.param(_one("Min"), 1, ["Relu"], id="min_single"),
    pytest.param(_one("Mean"), 1, ["Relu"], id="mean_single"),
    pytest.param(_one("Split", {"axis": 1, "split": (3,)}), 1, ["Relu"], id="split_single"),
    pytest.param(_one("Slice", {"starts": (0, 0), "ends": (2**63 - 1, 99), "axes": (0, -1),
                                "steps": (1, 1)}), 1, ["Relu"], id="slice_everything"),
    pytest.param(_one("Slice", {"starts": (0,), "ends": (2,), "axes": (0,), "steps": (1,)}), 0,
                 ["Slice", "Relu"], id="slice_fixed_batch_end_kept"),
    pytest.param(_one("Slice", {"starts": (-1,), "ends": (-99,), "axes": (2,), "steps": (-1,)}), 0,
                 ["Slice", "Relu"], id="slice_reversed_kept"),
    pytest.param(_one("Resize", {"scales": (1.0, 1.0, 1.0, 1.0), "mode": "linear"}), 1, ["Relu"],
                 id="resize_scale1"),
    pytest.param(_one("Resize", {"scales": (1.0, 1.0, 1.0, 1.0), "sizes": (2, 3, 4, 5),
                                 "coordinate_transformation_mode": "align_corners"}),
                 1, ["Relu"], id="resize_scale1_sizes"),
    pytest.param(_one("Resize", {"scales": (1.0,) * 4, "nearest_mode": "ceil",
                                 "coordinate_transformation_mode": "tf_half_pixel_for_nn"}),
                 1, ["Relu"], id="resize_scale1_tf_half_pixel_ceil"),
    pytest.param(_one("Resize", {"scales": (1.0, 1.0, 2.0, 2.0)}), 0, ["Resize", "Relu"],
                 id="resize_upsample_kept"),
    pytest.param(_one("Mul", consts=[_c((3, 1, 1), 1.0)]), 1, ["Relu"], id="mul_one"),
    pytest.param(_one("Add", consts=[_c((5,), 0.0)]), 1, ["Relu"], id="add_zero"),
    pytest.param(_one("Sub", consts=[_c((1,), 0.0)]), 1, ["Relu"], id="sub_zero"),
    pytest.param(_one("Div", consts=[_c((), 1.0)]), 1, ["Relu"], id="div_one"),
    pytest.param(_one("Add", consts=[_c((7, 2, 3, 4, 5), 0.0)]), 0, ["Add", "Relu"],
                 id="add_zero_broadcasts_up_kept"),
    pytest.param(_one("Add", {"activation": "relu"}, consts=[_c((5,), 0.0)]), 0, ["Add", "Relu"],
                 id="add_zero_with_activation_kept"),
    pytest.param(_one("Mul", consts=[_c((5,), 2.0)]), 0, ["Mul", "Relu"], id="mul_two_kept"),
    pytest.param(_const_first("Sub", 0.0), 0, ["Sub", "Relu"], id="zero_minus_x_kept"),
    pytest.param(_const_first("Div", 1.0), 0, ["Div", "Relu"], id="one_over_x_kept"),
    pytest.param(_const_first("Mul", 1.0), 1, ["Relu"], id="one_times_x"),
    pytest.param(_identity_chain, 2, ["Relu"], id="identity_dropout_chain_to_output"),
]


@pytest.mark.parametrize("build, count, remaining", CASES)
def test_eliminate_noops(build: Builder, count: int, remaining: list[str]):
    before, after = apply_pass(EliminateNoOps(), build, count=count, remaining=remaining)
    feeds = _feeds(before)
    assert_same_outputs(before, after, feeds)


def test_reshape_batch_code_runs_at_other_batch():
    """Reshape(0, -1, ...) is a no-op at every batch size: the compiled graph runs at batch 5."""
    build = _one("Reshape", {"shape": (0, -1, 4, 5)}, shape=(1, 3, 4, 5))
    g = build()
    EliminateNoOps()(g)
    feeds = _feeds(g, batch=5)
    expected = torch.relu(torch.from_numpy(feeds["x"])).numpy()
    check_close(npo.run(g, feeds)["relu_out"], expected)


def _graph_io(kind: str) -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    if kind == "input_to_output":  # Identity(x) is the output: bypassing renames it to "x"
        g.outputs = [g.add_node("Identity", [x], name="id").output]
    elif kind == "both_outputs":  # relu's output and its Identity are both graph outputs
        r = g.add_node("Relu", [x], name="relu")
        g.outputs = [r.output, g.add_node("Identity", [r.output], name="id").output]
    elif kind == "const_to_output":
        c = g.add_const("c", np.ones((2, 3), np.float32))
        r = g.add_node("Relu", [x], name="relu")
        g.outputs = [r.output, g.add_node("Identity", [c], name="id").output]
    return g


@pytest.mark.parametrize("kind, reason", [
    pytest.param("input_to_output", "is a graph input", id="input_to_output"),
    pytest.param("both_outputs", "both graph outputs", id="both_outputs"),
    pytest.param("const_to_output", "is a constant", id="const_to_output"),
])
def test_refuses_when_graph_output_would_be_renamed(kind: str, reason: str):
    g = _graph_io(kind)
    names = [v.name for v in g.outputs]
    p = EliminateNoOps()
    assert p(g).count == 0
    assert [n.name for n in g if n.op_type == "Identity"] == ["id"]
    assert len(p.refusals) == 1 and p.refusals[0][0] == "id" and reason in p.refusals[0][1]
    assert [v.name for v in g.outputs] == names
    verify(g)


def test_output_name_kept_when_noop_is_graph_output():
    g = _graph_io("none")
    x = g.inputs[0]
    r = g.add_node("Relu", [x], name="relu")
    g.outputs = [g.add_node("Identity", [r.output], name="id").output]
    out_name = g.outputs[0].name
    assert EliminateNoOps()(g).count == 1
    assert [n.op_type for n in g] == ["Relu"] and g.outputs[0].producer.name == "relu"
    assert g.outputs[0].name == out_name
    verify(g)
