"""OptimizeLayout: Transposes pushed through layout-agnostic ops and cancelled, what blocks
them, the classifier weights permuted instead of a Flatten's data, and unit-axis moves turned
into Reshapes; every rewrite computes what the original did (golden executor), and the
global-pool canonicalization that follows it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fc.ir import Graph, verify
from fc.passes.global_pool import ReduceToGlobalPool
from fc.passes.layout import OptimizeLayout, moves_only_unit_axes
from fc.testing import apply_pass, assert_same_outputs

P = pytest.param
RNG = np.random.default_rng(0)
NCHW_TO_NHWC, NHWC_TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
Builder = Callable[[], Graph]


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}


def _w(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def sandwich(*middle: Callable[[Graph, object], object], end_nchw: bool = True) -> Builder:
    """x (NCHW) -> T(to NHWC) -> middle ops on NHWC -> [T(to NCHW)] -> Conv 1x1 -> out."""

    def build() -> Graph:
        g = Graph()
        v = g.add_node("Transpose", [g.add_input("x", (2, 3, 4, 5))], {"perm": NCHW_TO_NHWC},
                       name="to_nhwc").output
        for i, f in enumerate(middle):
            v = f(g, v, i)
        if end_nchw:
            v = g.add_node("Transpose", [v], {"perm": NHWC_TO_NCHW}, name="to_nchw").output
            v = g.add_node("Conv", [v, g.add_const("w", _w(2, v.shape[1], 1, 1))],
                           name="conv").output
        g.outputs.append(v)
        return g

    return build


def op(name: str, **attrs):  # one NHWC op on the chain
    return lambda g, v, i: g.add_node(name, [v], attrs, name=f"{name.lower()}{i}").output


def with_const(name: str, shape: tuple[int, ...]):
    return lambda g, v, i: g.add_node(name, [v, g.add_const(f"c{i}", _w(*shape, seed=i + 2))],
                                      name=f"{name.lower()}{i}").output


def swish(g, v, i):
    return g.add_node("Mul", [v, g.add_node("Sigmoid", [v], name=f"sig{i}").output],
                      name=f"mul{i}").output


def residual(g, v, i):
    a = g.add_node("Relu", [v], name=f"a{i}").output
    return g.add_node("Add", [v, a], name=f"add{i}").output


def concat_self(g, v, i):
    return g.add_node("Concat", [v, g.add_node("Neg", [v], name=f"neg{i}").output],
                      {"axis": 3}, name=f"cat{i}").output


CANCEL = [
    P(sandwich(op("Relu")), ["Relu", "Conv"], id="unary"),
    P(sandwich(op("Clip", min=0.0, max=6.0), op("Sigmoid")), ["Clip", "Sigmoid", "Conv"],
      id="two_unary"),
    P(sandwich(with_const("Add", (3,))), ["Add", "Conv"], id="bias_last_axis"),
    P(sandwich(with_const("Mul", (4, 1, 3))), ["Mul", "Conv"], id="const_rank3"),
    P(sandwich(swish), ["Sigmoid", "Mul", "Conv"], id="swish_two_users"),
    P(sandwich(residual), ["Relu", "Add", "Conv"], id="residual"),
    P(sandwich(concat_self), ["Neg", "Concat", "Conv"], id="concat"),
    P(sandwich(op("Pad", pads=(0, 1, 2, 0, 0, 2, 1, 0))), ["Pad", "Conv"], id="pad"),
    P(sandwich(op("Slice", starts=(1,), ends=(3,), axes=(2,), steps=(1,))), ["Slice", "Conv"],
      id="slice"),
    P(sandwich(op("Softmax", axis=3)), ["Softmax", "Conv"], id="softmax_channels"),
    P(sandwich(op("ReduceMean", axes=(1,), keepdims=1)), ["ReduceMean", "Conv"],
      id="reduce_keepdims"),
]


@pytest.mark.parametrize(("build", "remaining"), CANCEL)
def test_transposes_cancel(build: Builder, remaining: list[str]) -> None:
    before, after = build(), build()
    OptimizeLayout()(after)
    verify(after)
    assert [n.op_type for n in after] == remaining
    assert_same_outputs(before, after, _feeds(before))


def test_axes_are_mapped() -> None:
    g = sandwich(concat_self, op("Softmax", axis=3))()
    OptimizeLayout()(g)
    attrs = {n.op_type: n.attrs for n in g}
    assert attrs["Concat"]["axis"] == 1 and attrs["Softmax"]["axis"] == 1


def test_global_mean_keeps_no_transpose_and_becomes_a_pool() -> None:
    """Keras' GlobalAveragePooling2D: Mean over NHWC axes (1, 2), no keepdims."""
    def build() -> Graph:
        g = sandwich(op("ReduceMean", axes=(1, 2), keepdims=0), end_nchw=False)()
        return g

    before, after = build(), build()
    OptimizeLayout()(after)
    assert [n.op_type for n in after] == ["ReduceMean"]
    assert after.nodes[0].attrs["axes"] == (2, 3)
    assert ReduceToGlobalPool()(after).count == 1
    verify(after)
    assert [n.op_type for n in after] == ["GlobalAveragePool", "Flatten"]
    assert_same_outputs(before, after, _feeds(before))


def test_classifier_weights_absorb_the_flatten_order() -> None:
    """VGG: NHWC Flatten -> Dense becomes an NCHW Flatten and permuted weight rows."""
    def build() -> Graph:
        g = sandwich(op("Flatten", axis=1), end_nchw=False)()
        out = g.outputs.pop()
        g.outputs.append(g.add_node("Gemm", [out, g.add_const("fc_w", _w(7, 60))],
                                    {"transB": 1}, name="fc").output)
        return g

    before, after = build(), build()
    assert OptimizeLayout()(after).count == 1
    verify(after)
    assert [n.op_type for n in after] == ["Flatten", "Gemm"]
    assert_same_outputs(before, after, _feeds(before), op="Gemm")


@pytest.mark.parametrize(("build", "remaining"), [
    P(sandwich(op("Relu"), end_nchw=False), ["Transpose", "Relu"], id="graph_output_blocks"),
    P(sandwich(op("LRN", size=3), end_nchw=False), ["Transpose", "LRN"], id="layout_sensitive"),
])
def test_what_blocks_a_transpose(build: Builder, remaining: list[str]) -> None:
    before, after = build(), build()
    OptimizeLayout()(after)
    verify(after)
    ops = [n.op_type for n in after]
    assert ops.count("Transpose") == 1 and sorted(ops) == sorted(remaining)
    assert_same_outputs(before, after, _feeds(before))


def test_computed_operand_blocks_a_binary_op() -> None:
    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", (2, 3, 4, 5))
        y = g.add_input("y", (2, 4, 5, 3))
        t = g.add_node("Transpose", [x], {"perm": NCHW_TO_NHWC}, name="t").output
        g.outputs.append(g.add_node("Add", [t, y], name="add").output)
        return g

    apply_pass(OptimizeLayout(), build, count=0, remaining=["Transpose", "Add"])


def test_unit_axis_move_becomes_reshape() -> None:
    """An SE block's (N, C, 1, 1) -> (N, 1, 1, C) keeps the data order."""
    def build() -> Graph:
        g = Graph()
        x = g.add_input("x", (1, 6, 1, 1))
        t = g.add_node("Transpose", [x], {"perm": NCHW_TO_NHWC}, name="t").output
        g.outputs.append(g.add_node("Relu", [t], name="relu").output)
        g.outputs[0] = g.add_node("LRN", [g.add_node("Transpose", [g.outputs[0]],
                                                     {"perm": NHWC_TO_NCHW}, name="u").output],
                                  {"size": 1}, name="lrn").output
        return g

    before, after = build(), build()
    OptimizeLayout()(after)
    assert [n.op_type for n in after] == ["Relu", "LRN"]
    assert_same_outputs(before, after, _feeds(before))
    g = Graph()
    x = g.add_input("x", (1, 6, 1, 1))
    g.outputs.append(g.add_node("Transpose", [x], {"perm": NCHW_TO_NHWC}, name="t").output)
    g.outputs.append(g.add_node("Relu", [g.outputs[0]], name="r").output)
    OptimizeLayout()(g)
    assert [n.op_type for n in g] == ["Reshape", "Relu"]
    assert g.nodes[0].attrs["shape"] == (0, 1, 1, 6)


@pytest.mark.parametrize(("shape", "perm", "expected"), [
    P((1, 6, 1, 1), NCHW_TO_NHWC, True, id="se_vector"), P((1, 6, 2, 1), NCHW_TO_NHWC, False,
                                                           id="spatial_moves"),
    P((1, 1, 4, 5), NCHW_TO_NHWC, True, id="one_channel"),
    P((1, 3, 1, 1), (1, 0, 2, 3), False, id="batch_counts_as_sized"),
])
def test_moves_only_unit_axes(shape, perm, expected) -> None:
    assert moves_only_unit_axes(shape, perm) is expected
