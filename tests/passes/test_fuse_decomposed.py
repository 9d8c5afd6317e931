"""fuse_decomposed: Gelu, LayerNormalization, HardSigmoid, HardSwish and SiLU spelled out in
elementary ops become one op (then fuse into the layer before them), checked against
torch.nn.functional on the models torch.onnx.export writes, the TF frontend's Keras layers,
and hand-built variants with operands swapped; refusals carry their reason."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fc.ir
from fc.frontend.onnx import import_onnx
from fc.ir import Graph
from fc.np_ops import run
from fc.passes.fuse_decomposed import (
    FuseGelu,
    FuseHardActivations,
    FuseLayerNorm,
    FuseSiLU,
    fuse_decomposed_pass,
)
from fc.passes.hardware import non_hardware_ops
from fc.passes.pipeline import compile_graph
from fc.testing import assert_refused, check_close

DECOMPOSED = {"Erf", "Pow", "Sqrt", "ReduceMean", "Div", "Sub", "Tanh", "Reciprocal"}


class Block(nn.Module):
    """A Linear, then ``act`` (so the fused activation can go into the Gemm)."""

    def __init__(self, act, width: int = 16):
        super().__init__()
        self.fc, self.act = nn.Linear(width, width), act

    def forward(self, x):
        return self.act(self.fc(x))


class LN(nn.Module):
    def __init__(self, shape, eps):
        super().__init__()
        self.ln = nn.LayerNorm(shape, eps=eps)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            self.ln.weight.copy_(torch.rand(shape, generator=g) + 0.5)
            self.ln.bias.copy_(torch.randn(shape, generator=g))

    def forward(self, x):
        return self.ln(x)


TORCH_CASES = [
    pytest.param(lambda: Block(nn.GELU()), (4, 16), "gelu", id="gelu_erf"),
    pytest.param(lambda: Block(nn.GELU(approximate="tanh")), (4, 16), "gelu", id="gelu_tanh"),
    pytest.param(lambda: Block(nn.Hardsigmoid()), (4, 16), "hard_sigmoid", id="hardsigmoid"),
    pytest.param(lambda: Block(nn.Hardswish()), (4, 16), "hard_swish", id="hardswish"),
    pytest.param(lambda: Block(nn.SiLU()), (4, 16), "silu", id="silu"),
    pytest.param(lambda: nn.GELU(), (2, 3, 16), "Gelu", id="gelu_standalone"),
    pytest.param(lambda: nn.Hardswish(), (2, 3, 16), "HardSwish", id="hardswish_standalone"),
    pytest.param(lambda: nn.SiLU(), (2, 3, 16), "SiLU", id="silu_standalone"),
    pytest.param(lambda: LN(16, 1e-5), (2, 5, 16), "LayerNormalization", id="layernorm"),
    pytest.param(lambda: LN((5, 16), 1e-6), (2, 5, 16), "LayerNormalization", id="layernorm_2axes"),
]


def _export(model: nn.Module, shape, path: Path, *, dynamo: bool = False) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(shape),), str(path), dynamo=dynamo,
                          opset_version=13 if not dynamo else 18, input_names=["x"],
                          output_names=["y"])
    return import_onnx(path)


def _check_fused(model: nn.Module, shape, graph: Graph, expected: str) -> Graph:
    fused, report = compile_graph(graph, verify=True)
    hist = fused.op_histogram()
    assert not DECOMPOSED & set(hist), hist
    assert non_hardware_ops(fused) == {}
    if expected[0].isupper():
        assert hist.get(expected) == 1, hist
    else:
        acts = {n.attrs["activation"] for n in fused if n.op_type == "Gemm"}
        assert acts == {expected}, hist
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 3
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    check_close(run(fused, {"x": x})["y"], ref, rtol=1e-5, atol=2e-6)
    return fused


@pytest.mark.parametrize("make, shape, expected", TORCH_CASES)
def test_torchscript_export(make, shape, expected, tmp_path):
    torch.manual_seed(0)
    model = make()
    _check_fused(model, shape, _export(model, shape, tmp_path / "m.onnx"), expected)


@pytest.mark.parametrize("make, shape, expected", TORCH_CASES)
def test_dynamo_export(make, shape, expected, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    torch.manual_seed(0)
    model = make()
    _check_fused(model, shape, _export(model, shape, tmp_path / "m.onnx", dynamo=True), expected)


def test_transformer_block_compiles_fused(tmp_path):
    """A pre-norm transformer MLP block with a MobileNet-v3-style head: nothing decomposed left."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(16), nn.LayerNorm(16, eps=1e-6)
            self.up, self.down = nn.Linear(16, 32), nn.Linear(32, 16)
            self.head = nn.Linear(16, 8)

        def forward(self, x):
            h = x + self.down(F.gelu(self.up(self.ln1(x))))
            h = self.ln2(h)
            return F.hardswish(self.head(h)) + F.silu(h[..., :8]) + F.gelu(h[..., 8:], approximate="tanh")

    torch.manual_seed(0)
    model = Net()
    g = _export(model, (2, 6, 16), tmp_path / "net.onnx")
    before = g.op_histogram()
    assert {"Erf", "Pow", "Sqrt", "ReduceMean"} <= set(before)
    fused, _ = compile_graph(g, verify=True)
    hist = fused.op_histogram()
    print("before", before, "\nafter", hist)
    assert not DECOMPOSED & set(hist), hist
    assert hist["LayerNormalization"] == 2
    x = np.random.default_rng(1).standard_normal((2, 6, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    check_close(run(fused, {"x": x})["y"], ref, rtol=1e-5, atol=2e-6)


def test_tf_keras_layers():
    """The TF frontend's Keras LayerNormalization, GELU and hard_swish compile to fused ops."""
    keras = pytest.importorskip("keras")
    from fc.frontend.tf import import_tf

    inp = keras.Input((6, 16), batch_size=2)
    h = keras.layers.LayerNormalization(epsilon=1e-3)(inp)
    h = keras.layers.Dense(16, activation="gelu")(h)
    h = keras.layers.Dense(16)(h)
    h = keras.layers.Activation("hard_swish")(h)
    h = keras.layers.Dense(16, activation="silu")(h)
    model = keras.Model(inp, h)
    g = import_tf(model)
    fused, _ = compile_graph(g, verify=True)
    hist = fused.op_histogram()
    assert not DECOMPOSED & set(hist), hist
    assert non_hardware_ops(fused) == {}
    x = np.random.default_rng(0).standard_normal((2, 6, 16)).astype(np.float32)
    ref = np.asarray(model(x))
    (got,) = run(fused, {g.inputs[0].name: x}).values()
    check_close(got, ref, rtol=1e-4, atol=1e-5)


# -- hand-built variants --------------------------------------------------------------------
SHAPE = (2, 3, 8)


def _graph():
    g = Graph()
    x = g.add_input("x", SHAPE)
    return g, x


def _c(g, v, name="c"):
    return g.add_const(name, np.array(v, dtype=np.float32))


def gelu_erf_swapped(scale_op="Mul", half_first=True):
    g, x = _graph()
    if scale_op == "Mul":
        e = g.add_node("Mul", [_c(g, 0.7071067811865476), x]).output
    else:
        e = g.add_node("Div", [x, _c(g, 1.4142135)]).output
    a = g.add_node("Add", [_c(g, 1.0), g.add_node("Erf", [e]).output]).output
    if half_first:
        y = g.add_node("Mul", [a, g.add_node("Mul", [_c(g, 0.5), x]).output])
    else:
        y = g.add_node("Mul", [x, g.add_node("Mul", [a, _c(g, 0.5)]).output])
    g.outputs = [y.output]
    return g


def gelu_tanh_pow():
    g, x = _graph()
    cube = g.add_node("Pow", [x, _c(g, 3.0)]).output
    s = g.add_node("Add", [g.add_node("Mul", [cube, _c(g, 0.044715)]).output, x]).output
    t = g.add_node("Tanh", [g.add_node("Mul", [s, _c(g, math.sqrt(2 / math.pi))]).output]).output
    a = g.add_node("Add", [t, _c(g, 1.0)]).output
    y = g.add_node("Div", [g.add_node("Mul", [a, x]).output, _c(g, 2.0)])
    g.outputs = [y.output]
    return g


def hardsigmoid_mul_sixth():
    g, x = _graph()
    a = g.add_node("Add", [_c(g, 3.0), x]).output
    c = g.add_node("Clip", [a], {"min": 0.0, "max": 6.0}).output
    g.outputs = [g.add_node("Mul", [_c(g, 1 / 6), c]).output]
    return g


def hardsigmoid_general():
    g, x = _graph()
    a = g.add_node("Add", [x, _c(g, 2.5)]).output
    c = g.add_node("Clip", [a], {"min": 0.0, "max": 5.0}).output
    g.outputs = [g.add_node("Div", [c, _c(g, 5.0)]).output]
    return g


def hardswish_keras():
    g, x = _graph()
    c = g.add_node("Clip", [g.add_node("Add", [x, _c(g, 3.0)]).output], {"min": 0.0, "max": 6.0})
    m = g.add_node("Mul", [c.output, x]).output
    g.outputs = [g.add_node("Div", [m, _c(g, 6.0)]).output]
    return g


def silu_swapped():
    g, x = _graph()
    g.outputs = [g.add_node("Mul", [g.add_node("Sigmoid", [x]).output, x]).output]
    return g


def layernorm_variant(square="Mul", inv="Div", eps=1e-6, affine=True, axes=(2,)):
    g, x = _graph()
    m = g.add_node("ReduceMean", [x], {"axes": axes, "keepdims": 1}).output
    d = g.add_node("Sub", [x, m]).output
    sq = (g.add_node("Mul", [d, d]) if square == "Mul" else g.add_node("Pow", [d, _c(g, 2.0)])).output
    v = g.add_node("ReduceMean", [sq], {"axes": (-1,) if axes == (2,) else axes,
                                        "keepdims": 1}).output
    s = g.add_node("Sqrt", [g.add_node("Add", [_c(g, eps), v]).output]).output
    if inv == "Div":
        n = g.add_node("Div", [d, s]).output
    else:
        n = g.add_node("Mul", [g.add_node("Reciprocal", [s]).output, d]).output
    if affine:
        rng = np.random.default_rng(3)
        gam = g.add_const("gamma", rng.random(8).astype(np.float32) + 0.5)
        bet = g.add_const("beta", rng.standard_normal(8).astype(np.float32))
        n = g.add_node("Add", [bet, g.add_node("Mul", [gam, n]).output]).output
    g.outputs = [n]
    return g


def _ln_ref(x, g):
    w = g.initializers.get("gamma")
    b = g.initializers.get("beta")
    return F.layer_norm(torch.from_numpy(x), (8,), None if w is None else torch.from_numpy(w.const),
                        None if b is None else torch.from_numpy(b.const), eps=1e-6).numpy()


VARIANTS = [
    pytest.param(lambda: gelu_erf_swapped("Mul", True), "Gelu", F.gelu, id="gelu_mul_half_first"),
    pytest.param(lambda: gelu_erf_swapped("Div", False), "Gelu", F.gelu, id="gelu_div_half_last"),
    pytest.param(gelu_tanh_pow, "Gelu", lambda t: F.gelu(t, approximate="tanh"), id="gelu_tanh_pow_div2"),
    pytest.param(hardsigmoid_mul_sixth, "HardSigmoid", F.hardsigmoid, id="hardsigmoid_mul_sixth"),
    pytest.param(hardsigmoid_general, "HardSigmoid", lambda t: torch.clamp(t / 5 + 0.5, 0, 1),
                 id="hardsigmoid_alpha_beta"),
    pytest.param(hardswish_keras, "HardSwish", F.hardswish, id="hardswish_keras_form"),
    pytest.param(silu_swapped, "SiLU", F.silu, id="silu_swapped"),
    pytest.param(lambda: layernorm_variant("Mul", "Div"), "LayerNormalization", None, id="ln_mul_div"),
    pytest.param(lambda: layernorm_variant("Pow", "Reciprocal"), "LayerNormalization", None,
                 id="ln_pow_reciprocal"),
    pytest.param(lambda: layernorm_variant(affine=False), "LayerNormalization", None, id="ln_no_affine"),
]


@pytest.mark.parametrize("build, op, ref", VARIANTS)
def test_hand_built_variant(build, op, ref):
    g = build()
    out_name = g.outputs[0].name
    assert fuse_decomposed_pass()(g).count == 1
    fc.ir.verify(g)
    assert [n.op_type for n in g] == [op]
    assert g.outputs[0].name == out_name
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) * 4
    expected = _ln_ref(x, build()) if ref is None else ref(torch.from_numpy(x)).numpy()
    check_close(run(g, {"x": x})[out_name], expected, rtol=1e-5, atol=2e-6)
    assert not g.initializers.keys() - {n.inputs[i].name for n in g for i in range(1, len(n.inputs))}


def test_hardsigmoid_attributes_from_constants():
    g = hardsigmoid_general()
    fuse_decomposed_pass()(g)
    (n,) = g.nodes
    assert n.attrs["alpha"] == pytest.approx(0.2) and n.attrs["beta"] == pytest.approx(0.5)


def test_layernorm_attributes_from_constants():
    g = layernorm_variant(eps=3e-4)
    fuse_decomposed_pass()(g)
    (n,) = g.nodes
    assert n.attrs["axis"] == 2 and n.attrs["epsilon"] == pytest.approx(3e-4)


# -- refusals -------------------------------------------------------------------------------
def _set_const(g, value_from, new):
    v = next(v for v in g.initializers.values() if np.isclose(v.const, value_from).all())
    v.const = np.array(new, dtype=np.float32)


def test_refuse_gelu_half_off():
    g = gelu_erf_swapped("Mul", False)
    _set_const(g, 0.5, 0.51)
    assert_refused(FuseGelu(), g, "the constant factor is 0.5099", at="mul_3", single=False)


def test_refuse_gelu_sqrt2_off():
    g = gelu_erf_swapped("Div", True)
    _set_const(g, 1.4142135, 1.42)
    assert_refused(FuseGelu(), g, "the scale inside Erf is 0.7042", at="mul_2", single=False)


def test_accept_gelu_float32_sqrt2():
    g = gelu_erf_swapped("Mul", True)
    _set_const(g, 0.7071067811865476, 0.70710677)
    assert fuse_decomposed_pass()(g).count == 1


def test_refuse_gelu_intermediate_with_other_users():
    g = gelu_erf_swapped("Mul", True)
    erf = next(n for n in g if n.op_type == "Erf")
    g.outputs.append(erf.output)
    assert_refused(FuseGelu(), g, "Erf output 'erf_1_out' is a graph output", at="mul_3",
                   single=False)


def test_refuse_hardsigmoid_clip_off():
    g = hardsigmoid_mul_sixth()
    next(n for n in g if n.op_type == "Clip").attrs["max"] = 6.5
    assert_refused(FuseHardActivations(), g, "Clip's max times the constant factor is 1.08")


def test_refuse_hardswish_other_offset():
    """x * HardSigmoid(x) with another offset is not HardSwish (its alpha, beta are fixed)."""
    g = hardswish_keras()
    _set_const(g, 3.0, 2.0)
    assert_refused(FuseHardActivations(), g, "HardSwish's offset is 0.333", at="div_1", single=False)


def test_refuse_silu_sigmoid_used_elsewhere():
    g = silu_swapped()
    sig = next(n for n in g if n.op_type == "Sigmoid")
    g.outputs.append(g.add_node("Relu", [sig.output]).output)
    assert_refused(FuseSiLU(), g, "has 2 uses, also outside the match")


def test_refuse_layernorm_not_last_axes():
    g = layernorm_variant(affine=False, axes=(1,))
    assert_refused(FuseLayerNorm(), g, "axes (1,) are not the last axes of x", at="div_1",
                   single=False)


def test_refuse_layernorm_exponent_off():
    g = layernorm_variant(square="Pow")
    _set_const(g, 2.0, 2.01)
    assert_refused(FuseLayerNorm(), g, "the exponent is 2.00999", at="div_1", single=False)


def test_refuse_layernorm_centered_used_elsewhere():
    g = layernorm_variant()
    sub = next(n for n in g if n.op_type == "Sub")
    g.outputs.append(sub.output)
    assert_refused(FuseLayerNorm(), g, "Sub output 'sub_1_out' is a graph output", at="div_1",
                   single=False)


def test_vit_tiny_exported_by_torch_fuses(tmp_path):
    """fc's ViT-tiny as torch.onnx.export writes it at opset 13 (LayerNorm and GELU spelled
    out): 5 LayerNormalization, every GELU fused into its bias Add, nothing decomposed left."""
    import fc.zoo.torch as zoo

    model = zoo.vit_tiny(seed=0).eval()
    g = _export(model, (1, 3, 32, 32), tmp_path / "vit.onnx")
    before = g.op_histogram()
    assert (before["Erf"], before["Pow"], before["Sqrt"], before["ReduceMean"]) == (2, 5, 5, 10)
    fused, _ = compile_graph(g, verify=True)
    hist = fused.op_histogram()
    assert not DECOMPOSED & set(hist), hist
    assert hist["LayerNormalization"] == 5 and "Gelu" not in hist
    assert sum(n.attrs.get("activation") == "gelu" for n in fused) == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    check_close(run(fused, {"x": x})["y"], ref, rtol=1e-4, atol=1e-5)
