"""FoldBatchNorm and BatchNormToScale: what is rewritten, what is refused (and why), and the
folded graph against torch.nn.functional on the *original* weights (conv, then batch_norm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.ir
import fc.np_ops
from fc.ir import Graph, Value
from fc.passes.fold_batchnorm import BatchNormToScale, FoldBatchNorm
from fc.passes.infra import FusionPass
from fc.testing import assert_refused, check_close

T = torch.from_numpy


def _bn_params(rng: np.random.Generator, c: int) -> dict[str, np.ndarray]:
    return {
        "gamma": rng.uniform(0.5, 2.0, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32),
        "beta": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.2, 2.0, c).astype(np.float32),
    }


def _add_bn(g: Graph, x: Value, p: dict[str, np.ndarray], eps: float = 1e-5, name: str = "bn",
            provenance: tuple[str, ...] = ()) -> Value:
    consts = [g.add_const(f"{name}_{k}", p[k]) for k in ("gamma", "beta", "mean", "var")]
    node = g.add_node("BatchNormalization", [x, *consts], {"epsilon": eps}, name=name,
                      provenance=provenance)
    return node.output


def _torch_bn(y: torch.Tensor, p: dict[str, np.ndarray], eps: float = 1e-5) -> torch.Tensor:
    return F.batch_norm(y, T(p["mean"]), T(p["var"]), T(p["gamma"]), T(p["beta"]),
                        training=False, eps=eps)


def _fold(g: Graph, rule=None) -> FusionPass:
    p = FusionPass(rule or FoldBatchNorm())
    p(g)
    fc.ir.verify(g)
    return p


def _ops(g: Graph) -> list[str]:
    return [n.op_type for n in g]


def _run(g: Graph, x: np.ndarray) -> np.ndarray:
    return fc.np_ops.run(g, {g.inputs[0].name: x})[g.outputs[0].name]


# -- Conv ---------------------------------------------------------------------------------
CONV_CASES = [
    pytest.param(True, 1, 4, 6, (1, 1), (0, 0), (1, 1), id="bias_group1"),
    pytest.param(False, 1, 4, 6, (1, 1), (1, 1), (1, 1), id="nobias_group1_pad1"),
    pytest.param(True, 2, 4, 6, (2, 2), (1, 1), (1, 1), id="bias_group2_stride2"),
    pytest.param(True, 4, 8, 8, (1, 1), (1, 1), (1, 1), id="bias_group4"),
    pytest.param(False, 6, 6, 6, (1, 1), (1, 1), (1, 1), id="nobias_depthwise"),
    pytest.param(True, 6, 6, 12, (1, 1), (2, 2), (2, 2), id="bias_depthwise_mult2_dil2"),
]


@pytest.mark.parametrize("bias, group, cin, cout, stride, pad, dil", CONV_CASES)
def test_fold_into_conv(bias, group, cin, cout, stride, pad, dil):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    p = _bn_params(rng, cout)
    x = rng.standard_normal((2, cin, 7, 7)).astype(np.float32)

    g = Graph()
    xv = g.add_input("x", x.shape)
    ins = [xv, g.add_const("w", w)] + ([g.add_const("b", b)] if bias else [])
    conv = g.add_node("Conv", ins, {"group": group, "strides": stride, "pads": pad * 2,
                                    "dilations": dil}, name="conv")
    g.outputs = [_add_bn(g, conv.output, p)]
    assert _fold(g).refusals == []

    assert _ops(g) == ["Conv"]
    assert g.outputs[0].name == "bn_out" and g.outputs[0].producer is conv
    assert len(conv.inputs) == 3  # a bias was created when absent
    assert sorted(g.initializers) == sorted(v.name for v in conv.inputs[1:])  # BN params gone
    ref = _torch_bn(F.conv2d(T(x), T(w), None if b is None else T(b), stride, pad, dil, group), p)
    check_close(_run(g, x), ref.numpy(), op="Conv")


# -- ConvTranspose ------------------------------------------------------------------------
CONVT_CASES = [
    pytest.param(True, 1, 4, 6, (1, 1), (0, 0), (0, 0), id="bias_group1"),
    pytest.param(False, 2, 4, 6, (2, 2), (1, 1), (1, 1), id="nobias_group2_stride2"),
    pytest.param(True, 3, 6, 9, (2, 2), (0, 0), (0, 0), id="bias_group3"),
    pytest.param(True, 4, 4, 4, (1, 1), (1, 1), (0, 0), id="bias_depthwise"),
]


@pytest.mark.parametrize("bias, group, cin, cout, stride, pad, out_pad", CONVT_CASES)
def test_fold_into_conv_transpose(bias, group, cin, cout, stride, pad, out_pad):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((cin, cout // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    p = _bn_params(rng, cout)
    x = rng.standard_normal((2, cin, 5, 5)).astype(np.float32)

    g = Graph()
    xv = g.add_input("x", x.shape)
    ins = [xv, g.add_const("w", w)] + ([g.add_const("b", b)] if bias else [])
    ct = g.add_node("ConvTranspose", ins, {"group": group, "strides": stride, "pads": pad * 2,
                                           "output_padding": out_pad}, name="convt")
    g.outputs = [_add_bn(g, ct.output, p)]
    _fold(g)

    assert _ops(g) == ["ConvTranspose"]
    assert g.outputs[0].name == "bn_out"
    ref = _torch_bn(F.conv_transpose2d(T(x), T(w), None if b is None else T(b), stride, pad,
                                       out_pad, group), p)
    check_close(_run(g, x), ref.numpy(), op="ConvTranspose")


# -- Gemm ---------------------------------------------------------------------------------
GEMM_CASES = [
    pytest.param(0, None, 1.0, 1.0, id="transB0_nobias"),
    pytest.param(1, None, 1.0, 1.0, id="transB1_nobias"),
    pytest.param(0, (6,), 1.0, 1.0, id="transB0_bias"),
    pytest.param(1, (6,), 0.5, 2.0, id="transB1_bias_alpha_beta"),
    pytest.param(1, (1, 6), 1.0, 1.0, id="transB1_bias_row"),
    pytest.param(0, (3, 6), 1.0, 0.5, id="transB0_bias_full"),
    pytest.param(1, (6,), 1.0, 0.0, id="transB1_beta0"),
]


@pytest.mark.parametrize("trans_b, c_shape, alpha, beta", GEMM_CASES)
def test_fold_into_gemm(trans_b, c_shape, alpha, beta):
    rng = np.random.default_rng(2)
    k, n = 5, 6
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c = rng.standard_normal(c_shape).astype(np.float32) if c_shape else None
    p = _bn_params(rng, n)
    a = rng.standard_normal((3, k)).astype(np.float32)

    g = Graph()
    av = g.add_input("a", a.shape)
    ins = [av, g.add_const("w", w)] + ([g.add_const("c", c)] if c_shape else [])
    gemm = g.add_node("Gemm", ins, {"transB": trans_b, "alpha": alpha, "beta": beta}, name="fc")
    g.outputs = [_add_bn(g, gemm.output, p)]
    _fold(g)

    assert _ops(g) == ["Gemm"]
    y = alpha * (T(a) @ (T(w).T if trans_b else T(w)))
    if c is not None:
        y = y + beta * T(c)
    check_close(_run(g, a), _torch_bn(y, p).numpy(), op="Gemm")


# -- Scale after a layer, chains ----------------------------------------------------------
def test_scale_with_activation_folds_and_passes_activation():
    """Conv -> Scale(leaky_relu) -> Conv(leaky_relu): the layer takes the Scale's activation."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    s, t = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", x.shape), g.add_const("w", w)], name="conv")
    sc = g.add_node("Scale", [conv.output, g.add_const("s", s), g.add_const("t", t)],
                    {"activation": "leaky_relu", "act_alpha": 0.2}, name="scale")
    g.outputs = [sc.output]
    _fold(g)

    assert _ops(g) == ["Conv"]
    assert (conv.attrs["activation"], conv.attrs["act_alpha"]) == ("leaky_relu", 0.2)
    ref = F.leaky_relu(F.conv2d(T(x), T(w)) * T(s)[:, None, None] + T(t)[:, None, None], 0.2)
    check_close(_run(g, x), ref.numpy(), op="Conv")


def test_two_batchnorms_fold_in_one_sweep():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    p1, p2 = _bn_params(rng, 4), _bn_params(rng, 4)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", x.shape), g.add_const("w", w)], name="conv")
    g.outputs = [_add_bn(g, _add_bn(g, conv.output, p1, name="bn1"), p2, name="bn2")]
    assert FusionPass(FoldBatchNorm())(g).count == 2
    fc.ir.verify(g)
    assert _ops(g) == ["Conv"] and g.outputs[0].name == "bn2_out"
    check_close(_run(g, x), _torch_bn(_torch_bn(F.conv2d(T(x), T(w)), p1), p2).numpy(), op="Conv")


def test_fold_is_float64_rounded_once():
    """W' is W * s computed in float64 and rounded once (not s rounded to float32 first)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    p = _bn_params(rng, 8)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", (1, 2, 5, 5)), g.add_const("w", w)], name="conv")
    g.outputs = [_add_bn(g, conv.output, p, eps=1e-3)]
    _fold(g)
    s64 = T(p["gamma"]).double() / torch.sqrt(T(p["var"]).double() + 1e-3)
    expect = (T(w).double() * s64[:, None, None, None]).float().numpy()
    np.testing.assert_array_equal(conv.inputs[1].const, expect)


def test_provenance_is_union():
    rng = np.random.default_rng(6)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", (1, 2, 4, 4)),
                               g.add_const("w", rng.standard_normal((3, 2, 1, 1)).astype(np.float32))],
                      name="conv", provenance=["mx/conv0", "mx/conv0_weight"])
    g.outputs = [_add_bn(g, conv.output, _bn_params(rng, 3), provenance=("mx/bn0", "mx/conv0"))]
    _fold(g)
    assert conv.provenance == ("mx/conv0", "mx/conv0_weight", "mx/bn0")


def test_shared_weight_is_copied_not_mutated():
    """Two convs share W and b; only the first has a BN: it gets private folded copies, the
    second keeps the original arrays (copy-on-write)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    p = _bn_params(rng, 4)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    g = Graph()
    xv, wv, bv = g.add_input("x", x.shape), g.add_const("w", w), g.add_const("b", b)
    c1 = g.add_node("Conv", [xv, wv, bv], name="c1")
    c2 = g.add_node("Conv", [xv, wv, bv], name="c2")
    g.outputs = [_add_bn(g, c1.output, p), c2.output]
    _fold(g)

    assert _ops(g) == ["Conv", "Conv"]
    assert c2.inputs[1] is wv and c2.inputs[2] is bv
    np.testing.assert_array_equal(wv.const, w)
    assert c1.inputs[1] is not wv and c1.inputs[2] is not bv
    out = fc.np_ops.run(g, {"x": x})
    check_close(out["bn_out"], _torch_bn(F.conv2d(T(x), T(w), T(b)), p).numpy(), op="Conv")
    check_close(out[c2.output.name], F.conv2d(T(x), T(w), T(b)).numpy(), op="Conv")


# -- refusals -----------------------------------------------------------------------------
def _refusal_graph(case: str) -> Graph:
    rng = np.random.default_rng(8)
    g = Graph()
    xv = g.add_input("x", (1, 3, 5, 5))
    w = (g.add_input("w", (4, 3, 3, 3)) if case == "weight_not_const"
         else g.add_const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)))
    src = xv
    if case == "after_relu":
        src = g.add_node("Relu", [xv], name="relu").output
    attrs = {"activation": "relu"} if case == "activation_fused" else {}
    conv = g.add_node("Conv", [src, w], attrs, name="conv")
    layer_out = g.add_node("Relu", [conv.output], name="r2").output if case == "after_relu" else (
        conv.output)
    p = _bn_params(rng, 4)
    consts = [g.add_const(k, p[k]) for k in ("gamma", "beta")]
    mean = g.add_input("mean", (4,)) if case == "param_not_const" else g.add_const("mean", p["mean"])
    if case == "var_not_positive":
        p["var"][1] = -1.0
    bn = g.add_node("BatchNormalization", [layer_out, *consts, mean, g.add_const("var", p["var"])],
                    name="bn")
    g.outputs = [bn.output]
    if case == "two_users":
        g.outputs.append(g.add_node("Relu", [conv.output], name="other").output)
    if case == "graph_output_in_middle":
        g.outputs.append(conv.output)
    return g


REFUSALS = [
    pytest.param("two_users", "has 2 uses", id="two_users"),
    pytest.param("graph_output_in_middle", "is a graph output", id="graph_output_in_middle"),
    pytest.param("activation_fused", "already has fused activation 'relu'", id="activation_fused"),
    pytest.param("param_not_const", "parameter 'mean'", id="param_not_const"),
    pytest.param("weight_not_const", "weight 'w' is not a constant", id="weight_not_const"),
    pytest.param("after_relu", "comes from Relu node 'r2'", id="after_relu"),
    pytest.param("var_not_positive", "var + epsilon <= 0", id="var_not_positive"),
]


@pytest.mark.parametrize("case, reason", REFUSALS)
def test_refusals(case, reason):
    assert_refused(FoldBatchNorm(), _refusal_graph(case), reason, at="bn")


# -- BatchNormalization -> Scale ----------------------------------------------------------
SCALE_CASES = [
    pytest.param((2, 5, 4, 4), "", id="graph_input_4d"),
    pytest.param((3, 5), "", id="graph_input_2d"),
    pytest.param((1, 5, 4, 4), "relu", id="after_conv_with_relu"),
]


@pytest.mark.parametrize("shape, conv_act", SCALE_CASES)
def test_lone_batchnorm_becomes_scale(shape, conv_act):
    rng = np.random.default_rng(9)
    c = shape[1]
    p = _bn_params(rng, c)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((c, c, 1, 1)).astype(np.float32)
    g = Graph()
    src = g.add_input("x", shape)
    if conv_act:
        src = g.add_node("Conv", [src, g.add_const("w", w)], {"activation": conv_act},
                         name="conv").output
    g.outputs = [_add_bn(g, src, p, provenance=("tf/bn",))]
    fold = _fold(g)  # refused: nothing foldable precedes
    assert len(fold.refusals) == 1
    assert FusionPass(BatchNormToScale())(g).count == 1
    fc.ir.verify(g)

    scale = g.outputs[0].producer
    assert _ops(g)[-1] == "Scale" and "BatchNormalization" not in _ops(g)
    assert (scale.name, g.outputs[0].name, scale.provenance) == ("bn", "bn_out", ("tf/bn",))
    assert not any(k.startswith("bn_") and k[3:] in ("gamma", "beta", "mean", "var")
                   for k in g.initializers)
    y = F.relu(F.conv2d(T(x), T(w))) if conv_act else T(x)
    check_close(_run(g, x), _torch_bn(y, p).numpy(), op="Conv")


def test_scale_then_folds_into_a_following_pass():
    """BatchNormToScale before FoldBatchNorm gives the same graph: the Scale folds."""
    rng = np.random.default_rng(10)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    p = _bn_params(rng, 4)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    g = Graph()
    conv = g.add_node("Conv", [g.add_input("x", x.shape), g.add_const("w", w)], name="conv")
    g.outputs = [_add_bn(g, conv.output, p)]
    assert FusionPass(BatchNormToScale())(g).count == 1
    assert FusionPass(FoldBatchNorm())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Conv"] and g.outputs[0].name == "bn_out"
    check_close(_run(g, x), _torch_bn(F.conv2d(T(x), T(w)), p).numpy(), op="Conv")
