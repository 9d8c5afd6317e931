"""FuseActivation: layer + activation (or z * Sigmoid(z)) becomes one node with the activation
attribute; checked against torch.nn.functional applied to the original layer's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.ir
import fc.np_ops
from fc.ir import Graph, Value
from fc.ir.activations import standalone_form
from fc.ir.schema import FLT_MAX
from fc.passes.fuse_activation import FuseActivation
from fc.passes.infra import FusionPass
from fc.testing import activation_cases, assert_refused, check_close, torch_activation

T = torch.from_numpy
X_SHAPE = (2, 3, 6, 6)


def _ops(g: Graph) -> list[str]:
    return [n.op_type for n in g]


def _conv_graph(rng: np.random.Generator, act_attrs: dict | None = None) -> tuple[Graph, Value, np.ndarray]:
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", X_SHAPE), g.add_const("w", w)], act_attrs or {},
                      name="conv", provenance=["conv0"])
    return g, conv.output, w


# Every activation of the table, in each of its example parametrizations; then the
# standalone forms whose fused form is not the obvious one.
ACTIVATIONS = [
    pytest.param(*standalone_form(n, a, b), (n, a, b), torch_activation(n, a, b),
                 id=f"{n}_{a:g}_{b:g}")
    for n, a, b in activation_cases()
] + [
    pytest.param("Clip", {"min": 0.0}, ("relu", 0.0, 0.0), F.relu, id="clip_min0_is_relu"),
    pytest.param("Clip", {"max": 1.0}, ("clip", -FLT_MAX, 1.0), lambda z: torch.clamp(z, max=1.0),
                 id="clip_max_only"),
    pytest.param("Clip", {"min": 0.0, "max": 6.0}, ("clip", 0.0, 6.0), F.relu6, id="relu6"),
]


@pytest.mark.parametrize("op, attrs, expected, torch_act", ACTIVATIONS)
def test_fuse_into_conv(op, attrs, expected, torch_act):
    rng = np.random.default_rng(0)
    g, z, w = _conv_graph(rng)
    act = g.add_node(op, [z], attrs, name="act", provenance=["act0"])
    g.outputs = [act.output]
    assert FusionPass(FuseActivation())(g).count == 1
    fc.ir.verify(g)

    conv = g.outputs[0].producer
    assert _ops(g) == ["Conv"] and g.outputs[0].name == "act_out"
    assert (conv.attrs["activation"], conv.attrs["act_alpha"], conv.attrs["act_beta"]) == expected
    assert conv.provenance == ("conv0", "act0")
    x = rng.standard_normal(X_SHAPE).astype(np.float32) * 3
    ref = torch_act(F.conv2d(T(x), T(w)))
    check_close(fc.np_ops.run(g, x)["act_out"], ref.numpy(), op="Conv")


def _layer(g: Graph, kind: str, rng: np.random.Generator) -> tuple[Value, object]:
    """A layer of ``kind`` on input 'x' and its torch oracle (x -> layer output)."""
    x = g.inputs[0]
    if kind == "ConvTranspose":
        w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
        node = g.add_node(kind, [x, g.add_const("w", w)], {"group": 1, "strides": (2, 2)})
        return node.output, lambda t: F.conv_transpose2d(t, T(w), stride=2)
    if kind == "Gemm":
        w = rng.standard_normal((5, 3)).astype(np.float32)
        c = rng.standard_normal(5).astype(np.float32)
        node = g.add_node(kind, [x, g.add_const("w", w), g.add_const("c", c)], {"transB": 1})
        return node.output, lambda t: F.linear(t, T(w), T(c))
    if kind == "Add":
        y = g.add_node("Relu", [x], name="branch").output
        return g.add_node(kind, [x, y]).output, lambda t: t + F.relu(t)
    s, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    node = g.add_node(kind, [x, g.add_const("s", s), g.add_const("b", b)])
    return node.output, lambda t: t * T(s)[:, None, None] + T(b)[:, None, None]


@pytest.mark.parametrize("kind, x_shape", [
    pytest.param("ConvTranspose", X_SHAPE, id="conv_transpose"),
    pytest.param("Gemm", (4, 3), id="gemm"),
    pytest.param("Add", X_SHAPE, id="residual_add"),
    pytest.param("Scale", X_SHAPE, id="scale"),
])
def test_fuse_into_other_layers(kind, x_shape):
    rng = np.random.default_rng(1)
    g = Graph()
    g.add_input("x", x_shape)
    z, torch_layer = _layer(g, kind, rng)
    g.outputs = [g.add_node("LeakyRelu", [z], {"alpha": 0.2}, name="act").output]
    assert FusionPass(FuseActivation())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g)[-1] == kind and "LeakyRelu" not in _ops(g)
    assert g.outputs[0].producer.attrs["activation"] == "leaky_relu"
    x = rng.standard_normal(x_shape).astype(np.float32)
    ref = F.leaky_relu(torch_layer(T(x)), 0.2)
    check_close(fc.np_ops.run(g, x)["act_out"], ref.numpy(), op="Conv")


@pytest.mark.parametrize("sigmoid_first", [pytest.param(True, id="mul_sig_z"),
                                           pytest.param(False, id="mul_z_sig")])
def test_silu_pattern(sigmoid_first):
    rng = np.random.default_rng(2)
    g, z, w = _conv_graph(rng)
    sig = g.add_node("Sigmoid", [z], name="sig", provenance=["sig0"])
    mul = g.add_node("Mul", [sig.output, z] if sigmoid_first else [z, sig.output], name="mul",
                     provenance=["mul0"])
    g.outputs = [mul.output]
    p = FusionPass(FuseActivation())
    assert p(g).count == 1
    fc.ir.verify(g)
    conv = g.outputs[0].producer
    assert _ops(g) == ["Conv"] and conv.attrs["activation"] == "silu"
    assert g.outputs[0].name == "mul_out" and conv.provenance == ("conv0", "sig0", "mul0")
    assert p.refusals == [("sig", "part of z * Sigmoid(z) with Mul 'mul': handled there as silu")]
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    check_close(fc.np_ops.run(g, x)["mul_out"], F.silu(F.conv2d(T(x), T(w))).numpy(), op="Conv")


def test_chain_fuses_first_activation_only():
    """Conv -> Relu -> Sigmoid: the Relu fuses; the Sigmoid then meets an activated Conv."""
    rng = np.random.default_rng(3)
    g, z, w = _conv_graph(rng)
    r = g.add_node("Relu", [z], name="relu")
    g.outputs = [g.add_node("Sigmoid", [r.output], name="sig").output]
    p = FusionPass(FuseActivation())
    assert p(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Conv", "Sigmoid"]
    assert p.refusals == [("sig", "Conv 'conv' already has activation 'relu'")]
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    check_close(fc.np_ops.run(g, x)["sig_out"], torch.sigmoid(F.relu(F.conv2d(T(x), T(w)))).numpy(),
                op="Conv")


# -- refusals -----------------------------------------------------------------------------
def _refusal_graph(case: str) -> Graph:
    rng = np.random.default_rng(4)
    g, z, _ = _conv_graph(rng, {"activation": "relu"} if case == "activation_fused" else None)
    if case == "not_a_layer":
        z = g.add_node("MaxPool", [z], {"kernel_shape": (2, 2)}, name="pool").output
    if case.startswith("silu"):
        sig = g.add_node("Sigmoid", [z], name="sig")
        act = g.add_node("Mul", [z, sig.output], name="mul")
    else:
        act = g.add_node("Tanh", [z], name="act")
    g.outputs = [act.output]
    if case in ("two_users", "silu_third_user"):
        g.outputs.append(g.add_node("Relu", [z], name="other").output)
    if case == "graph_output_in_middle":
        g.outputs.append(z)
    if case == "silu_sigmoid_output_used":
        g.outputs.append(sig.output)
    return g


REFUSALS = [
    pytest.param("activation_fused", "already has activation 'relu'", id="activation_fused"),
    pytest.param("two_users", "has 2 uses", id="two_users"),
    pytest.param("graph_output_in_middle", "is a graph output", id="graph_output_in_middle"),
    pytest.param("not_a_layer", "comes from MaxPool node 'pool'", id="not_a_layer"),
    pytest.param("silu_third_user", "also outside the match ('other')", id="silu_third_user"),
    pytest.param("silu_sigmoid_output_used", "is a graph output", id="silu_sigmoid_output_used"),
]


@pytest.mark.parametrize("case, reason", REFUSALS)
def test_refusals(case, reason):
    anchor = "mul" if case.startswith("silu") else "act"
    assert_refused(FuseActivation(), _refusal_graph(case), reason, at=anchor, single=False)
