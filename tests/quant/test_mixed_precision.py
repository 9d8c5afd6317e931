"""Mixed precision (``qconfig.layers``): float layers and 16-bit layers, on the trained digits
CNN, against torch's fake-quantization with the same scales and against the float run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fc.np_ops import run
from fc.quant.config import ConfigError, load_config
from fc.quant.plan import LayerSetting
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.simulate import SimInterpreter
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, split

STEM, CONV1 = "/stem/stem.0/Conv", "/conv1/conv1.0/Conv"


@pytest.fixture(scope="module")
def table(digits):
    _, data, fused = digits
    return calibrate_arrays(fused, split(data.x_train[:256], 64))


@pytest.fixture(scope="module")
def mixed(digits, table):
    """stem float, conv1 16 bits, the rest 8 bits (symmetry_max, per channel)."""
    _, data, fused = digits
    spec = build_spec(fused, table, get_strategy("symmetry_max"),
                      layers={STEM: LayerSetting(float=True),
                              CONV1: LayerSetting(weight_bits=16, act_bits=16)})
    qg = quantized_graph(fused, spec)
    x = data.x_test[:64]
    return spec, qg, x, SimInterpreter(qg).run({"input": x}, intermediate=True)


def test_float_layer_has_no_quantizer_and_matches_the_float_run(digits, mixed):
    _, _, fused = digits
    spec, qg, x, env = mixed
    stem = qg.node_by_name(STEM)
    assert stem.inputs[0].name == "input" and stem.inputs[0].producer is None  # no QDQ on input
    assert all(v.const is not None and v.const.dtype == np.float32 for v in stem.inputs[1:])
    assert not any(k[0] == STEM for k in spec.weights)
    ref = run(fused, {"input": x}, intermediate=True)
    out = stem.outputs[0].name
    np.testing.assert_array_equal(env[out], ref[out])


def test_sixteen_bit_layer_against_torch_fake_quantize(digits, mixed):
    """conv1's 16-bit weights, its 16-bit input and output, recomputed with torch's
    fake_quantize_per_channel/per_tensor_affine from the float weights and the same scales."""
    _, _, fused = digits
    spec, qg, x, env = mixed
    node = fused.node_by_name(CONV1)
    wq, wp = spec.weights[(CONV1, 1)]
    assert wq.dtype == np.int16 and (wp.qmin, wp.qmax) == (-32767, 32767)
    w = node.inputs[1].const
    np.testing.assert_allclose(wp.scale, np.abs(w).max(axis=(1, 2, 3)) / 32767, rtol=1e-6)
    pin, pout = spec.params(node.inputs[0].name), spec.params(node.outputs[0].name)
    assert (pin.qmin, pin.qmax) == (pout.qmin, pout.qmax) == (-32768, 32767)
    assert spec.plan.bits[fused.node_by_name("/conv2/conv2.0/Conv").outputs[0].name] == 8
    xin = torch.from_numpy(env[node.inputs[0].name])
    wt = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(w.copy()), torch.from_numpy(wp.scale), torch.zeros(len(wp.scale), dtype=torch.int32),
        0, -32767, 32767)
    b = torch.from_numpy(node.inputs[2].const)
    y = torch.relu(torch.nn.functional.conv2d(xin, wt, b, padding=1))
    yq = torch.fake_quantize_per_tensor_affine(y, float(pout.scale), 0, -32768, 32767).numpy()
    got = env[node.outputs[0].name + "_dequantized"]
    steps = np.abs(got - yq) / pout.scale
    # torch multiplies by 1/s where fc divides, and accumulates in another order: one step
    # at most, at near-ties; the int32 bias at s_in * s_w is below that.
    assert steps.max() <= 1.01 and np.mean(steps < 1e-3) > 0.99


def test_sixteen_bits_recover_the_float_output(digits, table):
    """At 4 bits everywhere the logits are far from float; the layers listed at 16 bits move
    the output closer, and every node at 16 bits is within 5e-3 of float."""
    from fc.quant.report import Distance

    _, data, fused = digits
    x = data.x_test[:128]
    ref = run(fused, {"input": x})["logits"]
    names = [n.name for n in fused]

    def dist(layers):
        spec = build_spec(fused, table, get_strategy("symmetry_max"), weight_bits=4, act_bits=4,
                          layers=layers)
        d = Distance()
        d.add(SimInterpreter(quantized_graph(fused, spec)).run({"input": x})["logits"], ref)
        return d.rel_l2

    base = dist({})
    some = dist({n: LayerSetting(weight_bits=16, act_bits=16) for n in names[:3]})
    every = dist({n: LayerSetting(weight_bits=16, act_bits=16) for n in names})
    assert every < 5e-3 < some < base  # (what is left: calibration clipping, not precision)


def test_sixteen_bit_outputs_use_the_full_range_of_a_clipping_table(digits):
    """A percentile table clips for 8 bits; a 16-bit layer's output takes max|x| instead."""
    _, data, fused = digits
    t = calibrate_arrays(fused, split(data.x_train[:256], 64), method="percentile", percentile=99.0)
    out = fused.node_by_name(CONV1).outputs[0].name
    spec = build_spec(fused, t, get_strategy("symmetry_max"),
                      layers={CONV1: LayerSetting(weight_bits=16, act_bits=16)})
    r = t[out]
    assert r.threshold < r.max
    assert float(spec.acts[out].scale) == pytest.approx(max(-r.min, r.max) / 32767, rel=1e-6)
    other = fused.node_by_name("/conv2/conv2.0/Conv").outputs[0].name
    assert float(spec.acts[other].scale) == pytest.approx(t[other].threshold / 127, rel=1e-6)


def test_all_float_layers_are_the_float_graph(digits, table):
    _, data, fused = digits
    spec = build_spec(fused, table, get_strategy("symmetry_max"),
                      layers={n.name: LayerSetting(float=True) for n in fused})
    qg = quantized_graph(fused, spec)
    assert not any(n.op_type.endswith("Linear") for n in qg)
    x = data.x_test[:16]
    np.testing.assert_array_equal(run(qg, {"input": x})["logits"], run(fused, {"input": x})["logits"])


# -- the config ---------------------------------------------------------------------------------

def _model(tmp_path, fused):
    import fc.ir

    fc.ir.save(fused, tmp_path / "m")
    return tmp_path / "m_graph.json"


@pytest.mark.parametrize("layers, message", [
    pytest.param("{nope: float}", "QUAN.qconfig.layers.nope: no node of that name", id="unknown"),
    pytest.param("{'/fc/Gemm': {bits: 40}}", "QUAN.qconfig.layers./fc/Gemm: expected", id="bits"),
    pytest.param("{'/fc/Gemm': {bits: true}}", "QUAN.qconfig.layers./fc/Gemm: expected", id="bool"),
    pytest.param("{'/fc/Gemm': half}", "QUAN.qconfig.layers./fc/Gemm: expected", id="word"),
    pytest.param("[1, 2]", "QUAN.qconfig.layers: expected dict/str/null", id="type"),
])
def test_layers_mistakes_name_the_file_and_key(tmp_path, digits, layers, message):
    graph = _model(tmp_path, digits[2])
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"MODEL:\n  graph: {graph}\nQUAN:\n  qconfig:\n    layers: {layers}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg).layer_settings(digits[2])
    assert message in str(e.value) and "c.yml" in str(e.value) and "\n" not in str(e.value)


def test_layers_from_a_file(tmp_path, digits):
    graph = _model(tmp_path, digits[2])
    (tmp_path / "prec.yml").write_text(f"'{CONV1}': {{bits: 16}}\n'{STEM}': float\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"MODEL:\n  graph: {graph}\nQUAN:\n  qconfig:\n    layers: prec.yml\n")
    got = load_config(cfg).layer_settings(digits[2])
    assert got == {CONV1: LayerSetting(weight_bits=16, act_bits=16), STEM: LayerSetting(float=True)}
    (tmp_path / "prec.yml").write_text("nope: float\n")
    with pytest.raises(ConfigError, match=r"prec.yml: QUAN.qconfig.layers.nope: no node"):
        load_config(cfg).layer_settings(digits[2])
