"""FoldChannelAffine: per-channel constant Mul/Add/Sub/Div after Conv / ConvTranspose / Gemm /
Scale folded into the weights; checked against torch.nn.functional on the original weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.ir
import fc.np_ops
from fc.ir import Graph
from fc.passes.fold_channel_affine import FoldChannelAffine
from fc.passes.infra import FusionPass
from fc.testing import assert_refused, check_close

T = torch.from_numpy
TORCH_BINARY = {"Mul": torch.mul, "Add": torch.add, "Sub": torch.sub, "Div": torch.div}


def _ops(g: Graph) -> list[str]:
    return [n.op_type for n in g]


def _const(rng: np.random.Generator, shape: tuple[int, ...], op: str) -> np.ndarray:
    c = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return np.asarray(c if op in ("Mul", "Div") else rng.standard_normal(shape), np.float32)


# (op, constant shape, constant first?, conv bias?, group)
CONV_CASES = [
    pytest.param("Mul", (4, 1, 1), False, True, 1, id="mul_C11_bias"),
    pytest.param("Mul", (1, 4, 1, 1), True, False, 1, id="mul_1C11_const_first_nobias"),
    pytest.param("Mul", (), False, True, 2, id="mul_scalar_group2"),
    pytest.param("Mul", (1,), False, False, 4, id="mul_1_depthwise"),
    pytest.param("Add", (4, 1, 1), False, False, 1, id="add_C11_creates_bias"),
    pytest.param("Add", (1, 4, 1, 1), True, True, 2, id="add_1C11_const_first_group2"),
    pytest.param("Sub", (4, 1, 1), False, True, 1, id="sub_C11"),
    pytest.param("Div", (1, 4, 1, 1), False, True, 4, id="div_1C11_depthwise"),
]


@pytest.mark.parametrize("op, shape, const_first, bias, group", CONV_CASES)
def test_fold_into_conv(op, shape, const_first, bias, group):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4 // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    c = _const(rng, shape, op)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    g = Graph()
    ins = [g.add_input("x", x.shape), g.add_const("w", w)] + ([g.add_const("b", b)] if bias else [])
    conv = g.add_node("Conv", ins, {"group": group, "pads": (1, 1, 1, 1)}, name="conv")
    cv = g.add_const("c", c)
    node = g.add_node(op, [cv, conv.output] if const_first else [conv.output, cv], name="affine")
    g.outputs = [node.output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)

    assert _ops(g) == ["Conv"] and g.outputs[0].name == "affine_out"
    assert "c" not in g.initializers
    z = F.conv2d(T(x), T(w), T(b) if bias else None, padding=1, groups=group)
    ref = TORCH_BINARY[op](T(c), z) if const_first else TORCH_BINARY[op](z, T(c))
    check_close(fc.np_ops.run(g, x)["affine_out"], ref.numpy(), op="Conv")


@pytest.mark.parametrize("op, group", [pytest.param("Mul", 2, id="mul_group2"),
                                       pytest.param("Add", 3, id="add_group3"),
                                       pytest.param("Mul", 1, id="mul_group1")])
def test_fold_into_conv_transpose(op, group):
    rng = np.random.default_rng(1)
    cin, cout = 6, 6 if group != 2 else 4
    w = rng.standard_normal((cin, cout // group, 3, 3)).astype(np.float32)
    c = _const(rng, (cout, 1, 1), op)
    x = rng.standard_normal((1, cin, 4, 4)).astype(np.float32)
    g = Graph()
    ct = g.add_node("ConvTranspose", [g.add_input("x", x.shape), g.add_const("w", w)],
                    {"group": group, "strides": (2, 2)}, name="ct")
    g.outputs = [g.add_node(op, [ct.output, g.add_const("c", c)], name="affine").output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["ConvTranspose"]
    ref = TORCH_BINARY[op](F.conv_transpose2d(T(x), T(w), stride=2, groups=group), T(c))
    check_close(fc.np_ops.run(g, x)["affine_out"], ref.numpy(), op="ConvTranspose")


@pytest.mark.parametrize("op, trans_b, shape, bias", [
    pytest.param("Mul", 0, (5,), True, id="mul_transB0_bias"),
    pytest.param("Mul", 1, (1, 5), False, id="mul_transB1_row"),
    pytest.param("Add", 1, (5,), False, id="add_transB1_creates_bias"),
    pytest.param("Div", 0, (), True, id="div_scalar"),
])
def test_fold_into_gemm(op, trans_b, shape, bias):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 3) if trans_b else (3, 5)).astype(np.float32)
    cb = rng.standard_normal(5).astype(np.float32)
    c = _const(rng, shape, op)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    g = Graph()
    ins = [g.add_input("a", a.shape), g.add_const("w", w)] + ([g.add_const("cb", cb)] if bias else [])
    gemm = g.add_node("Gemm", ins, {"transB": trans_b, "beta": 0.5}, name="fc")
    g.outputs = [g.add_node(op, [gemm.output, g.add_const("c", c)], name="affine").output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Gemm"]
    z = T(a) @ (T(w).T if trans_b else T(w)) + (0.5 * T(cb) if bias else 0)
    check_close(fc.np_ops.run(g, a)["affine_out"], TORCH_BINARY[op](z, T(c)).numpy(), op="Gemm")


def test_add_with_fused_activation_hands_it_to_the_conv():
    """Conv -> Add(bias, activation=relu) -> Conv(activation=relu)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    c = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", x.shape), g.add_const("w", w)], name="conv",
                      provenance=["conv0"])
    add = g.add_node("Add", [conv.output, g.add_const("c", c)], {"activation": "relu"},
                     name="add", provenance=["bias0", "relu0"])
    g.outputs = [add.output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Conv"] and conv.attrs["activation"] == "relu"
    assert conv.provenance == ("conv0", "bias0", "relu0")
    check_close(fc.np_ops.run(g, x)["add_out"], F.relu(F.conv2d(T(x), T(w)) + T(c)).numpy(),
                op="Conv")


def test_mul_into_scale():
    rng = np.random.default_rng(4)
    s, t = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    m = rng.standard_normal((3, 1, 1)).astype(np.float32)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    g = Graph()
    sc = g.add_node("Scale", [g.add_input("x", x.shape), g.add_const("s", s), g.add_const("t", t)],
                    name="scale")
    g.outputs = [g.add_node("Mul", [sc.output, g.add_const("m", m)], name="mul").output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Scale"]
    ref = (T(x) * T(s)[:, None, None] + T(t)[:, None, None]) * T(m)
    check_close(fc.np_ops.run(g, x)["mul_out"], ref.numpy(), op="Conv")


def test_shared_weight_is_copied():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    g = Graph()
    xv, wv = g.add_input("x", (1, 3, 2, 2)), g.add_const("w", w)
    c1 = g.add_node("Conv", [xv, wv], name="c1")
    c2 = g.add_node("Conv", [xv, wv], name="c2")
    mul = g.add_node("Mul", [c1.output, g.add_const("m", np.full((3, 1, 1), 2, np.float32))],
                     name="mul")
    g.outputs = [mul.output, c2.output]
    assert FusionPass(FoldChannelAffine())(g).count == 1
    fc.ir.verify(g)
    assert c2.inputs[1] is wv and c1.inputs[1] is not wv
    np.testing.assert_array_equal(wv.const, w)
    np.testing.assert_array_equal(c1.inputs[1].const, 2 * w)


# -- refusals -----------------------------------------------------------------------------
def _refusal_graph(case: str) -> Graph:
    rng = np.random.default_rng(6)
    g = Graph()
    xv = g.add_input("x", (1, 4, 5, 5))
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    attrs = {"activation": "relu"} if case == "activation_fused" else {}
    conv = g.add_node("Conv", [xv, g.add_const("w", w)], attrs, name="conv")
    shapes = {"spatial_broadcast": (1, 1, 5, 1), "batch_broadcast": (2, 4, 1, 1),
              "last_axis": (5,), "div_by_zero": (4, 1, 1)}
    c = rng.uniform(1, 2, shapes.get(case, (4, 1, 1))).astype(np.float32)
    if case == "div_by_zero":
        c[2] = 0
    op = {"const_minus_x": "Sub", "div_by_zero": "Div"}.get(case, "Mul")
    other = g.add_input("y", (1, 4, 5, 5)) if case == "operand_not_const" else g.add_const("c", c)
    ins = [other, conv.output] if case == "const_minus_x" else [conv.output, other]
    node = g.add_node(op, ins, name="affine")
    g.outputs = [node.output]
    if case == "two_users":
        g.outputs.append(g.add_node("Relu", [conv.output], name="other").output)
    if case == "graph_output_in_middle":
        g.outputs.append(conv.output)
    return g


REFUSALS = [
    pytest.param("two_users", "has 2 uses", id="two_users"),
    pytest.param("graph_output_in_middle", "is a graph output", id="graph_output_in_middle"),
    pytest.param("activation_fused", "already has fused activation", id="activation_fused"),
    pytest.param("operand_not_const", "neither operand is a constant", id="operand_not_const"),
    pytest.param("spatial_broadcast", "broadcasts over the spatial dims", id="spatial_broadcast"),
    pytest.param("batch_broadcast", "broadcasts over the batch dims", id="batch_broadcast"),
    pytest.param("last_axis", "broadcasts over the spatial dims", id="C_shaped_on_4d_is_width"),
    pytest.param("const_minus_x", "only x - constant folds", id="const_minus_x"),
    pytest.param("div_by_zero", "has zeros", id="div_by_zero"),
]


@pytest.mark.parametrize("case, reason", REFUSALS)
def test_refusals(case, reason):
    assert_refused(FoldChannelAffine(), _refusal_graph(case), reason)
