"""The quantized IR of a real trained model (the digits CNN): which tensors are quantized,
how close it stays to float, and that fc's simulation equals independent executors."""

from __future__ import annotations

import numpy as np
import pytest

import fc.ir
from fc.np_ops import run
from fc.quant.plan import make_plan
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.simulate import Lockstep, SimInterpreter
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, ort_run, split, to_onnx
from fc.testing import rel_l2, sqnr_db

STRATS = [pytest.param(s, id=s) for s in ("symmetry_max", "minmax", "scale_shift")]
WEIGHTS = [pytest.param(True, id="perchannel"), pytest.param(False, id="perlayer")]


@pytest.fixture(scope="module")
def table(digits):
    _, data, fused = digits
    return calibrate_arrays(fused, split(data.x_train[:512], 128), "max")


def _quantized(digits, table, strategy, per_channel):
    _, _, fused = digits
    spec = build_spec(fused, table, get_strategy(strategy), per_channel=per_channel)
    return spec, quantized_graph(fused, spec)


def test_plan_quantizes_the_documented_tensors(digits):
    _, _, g = digits
    plan = make_plan(g)
    by_op = {n.op_type: plan.kind[n.outputs[0].name] for n in g}
    assert plan.kind["input"] == "own"
    assert by_op == {"Conv": "own", "MaxPool": "inherit", "Add": "own",
                     "GlobalAveragePool": "own", "Flatten": "inherit", "Gemm": "own"}
    assert plan.calibrated[0] == "input" and len(plan.calibrated) == 1 + 4 + 1 + 1 + 1  # convs, add, pool, fc


def test_per_channel_symmetry_max_keeps_output_sqnr_above_30db(digits, table, digits_float_logits):
    _, data, fused = digits
    spec, qg = _quantized(digits, table, "symmetry_max", True)
    out = SimInterpreter(qg).run({"input": data.x_test})["logits"]
    ref = run(fused, {"input": data.x_test})["logits"]
    assert sqnr_db(out, ref) > 30
    assert sqnr_db(out, digits_float_logits) > 30  # against torch's own float run too
    assert np.mean(out.argmax(1) == data.y_test) >= np.mean(ref.argmax(1) == data.y_test) - 0.01


@pytest.mark.parametrize("per_channel", WEIGHTS)
@pytest.mark.parametrize("strategy", STRATS)
def test_simulation_equals_onnxruntime_on_the_same_qdq_model(digits, table, strategy, per_channel):
    """onnxruntime (graph optimizations off, so it runs the QDQ graph as written) on fc's
    quantized IR: the quantized tensors agree but for a few steps on under 1% of the values.
    A value exactly half way between two steps (the mean of a global average pool often is)
    rounds by float noise, differently in each engine, and that step propagates (a layer
    after it may then differ by two or three)."""
    import onnx

    _, data, _ = digits
    _, qg = _quantized(digits, table, strategy, per_channel)
    x = data.x_test[:200]
    model = to_onnx(qg)
    qnames = [n.outputs[0].name for n in qg if n.op_type == "QuantizeLinear"]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in qnames)
    ort_out = ort_run(model, {"input": x})
    env = run(qg, {"input": x}, intermediate=True)
    differ = 0
    for name, ref in zip(qnames, ort_out[1:]):
        d = np.abs(env[name].astype(np.int32) - ref.astype(np.int32))
        assert d.max() <= 3, name
        differ += int(np.count_nonzero(d))
    total = sum(env[n].size for n in qnames)
    assert differ / total < 0.01, f"{differ} of {total} quantized values differ"
    ours = env["logits"]
    assert rel_l2(ours, ort_out[0]) < 0.02
    assert np.array_equal(ours.argmax(1), ort_out[0].argmax(1))


@pytest.mark.parametrize("strategy", STRATS)
def test_lockstep_accumulated_run_is_the_quantized_ir_bit_for_bit(digits, table, strategy):
    _, data, fused = digits
    spec, qg = _quantized(digits, table, strategy, True)
    x = data.x_test[:64]
    ls = Lockstep(fused, spec, lambda *a: None)
    ref = ls.run({"input": x})
    np.testing.assert_array_equal(ls.final["logits"], SimInterpreter(qg).run({"input": x})["logits"])
    np.testing.assert_array_equal(ref["logits"], run(fused, {"input": x})["logits"])


def test_quantized_ir_stores_integers_and_round_trips_deterministically(digits, table, tmp_path):
    _, data, _ = digits
    spec, qg = _quantized(digits, table, "scale_shift", True)
    weights = {n: v.const for n, v in qg.initializers.items()}
    kinds = {n: a.dtype.name for n, a in weights.items()}
    conv_w = [n for n in kinds if n.endswith("_quantized") and weights[n].ndim == 4]
    assert conv_w and all(kinds[n] == "int8" for n in conv_w)
    biases = [n for n in kinds if n.endswith("_quantized") and weights[n].ndim == 1]
    assert biases and all(kinds[n] == "int32" for n in biases)
    assert any(n.endswith("_shift") for n in kinds) and "input_scale" in kinds
    p1 = fc.ir.save(qg, tmp_path / "a" / "IR_quantized_for_CModel")
    p2 = fc.ir.save(quantized_graph(digits[2], spec), tmp_path / "b" / "IR_quantized_for_CModel")
    assert [p.read_bytes() for p in p1] == [p.read_bytes() for p in p2]
    back = fc.ir.load(*p1)
    x = data.x_test[:32]
    np.testing.assert_array_equal(SimInterpreter(back).run({"input": x})["logits"],
                                  SimInterpreter(qg).run({"input": x})["logits"])


def test_null_strategy_is_the_float_graph(digits, table):
    _, data, fused = digits
    spec, qg = _quantized(digits, table, "null", True)
    assert not spec.weights and not any(n.op_type.endswith("Linear") for n in qg)
    x = data.x_test[:16]
    np.testing.assert_array_equal(run(qg, {"input": x})["logits"], run(fused, {"input": x})["logits"])


def test_mixed_precision_float_layer_and_16_bits(digits, table):
    from fc.quant.plan import LayerSetting

    _, data, fused = digits
    x = data.x_test[:200]
    ref = run(fused, {"input": x})["logits"]
    base = build_spec(fused, table, get_strategy("symmetry_max"), act_bits=4, weight_bits=4)
    convs = [n.name for n in fused if n.op_type == "Conv"]
    mixed = build_spec(fused, table, get_strategy("symmetry_max"), act_bits=4, weight_bits=4,
                       layers={convs[0]: LayerSetting(float=True),
                               convs[1]: LayerSetting(weight_bits=16, act_bits=16)})
    assert (convs[0], 1) not in mixed.weights and mixed.weights[(convs[1], 1)][0].dtype == np.int16
    err = [sqnr_db(SimInterpreter(quantized_graph(fused, s)).run({"input": x})["logits"], ref)
           for s in (base, mixed)]
    assert err[1] > err[0]


def _assert_logits_plain(sim: SimInterpreter, qg, xs):
    """sim's logits are the plain golden executor's on the QDQ graph ``qg``, bit for bit, for
    each batch of ``xs``; returns that plain executor."""
    from fc.np_ops import Interpreter

    plain = Interpreter(qg)
    for x in xs:
        np.testing.assert_array_equal(sim.run({"input": x})["logits"],
                                      plain.run({"input": x})["logits"])
    return plain


@pytest.mark.parametrize("strategy", ["symmetry_max", "minmax"])
def test_simulation_rounding_in_the_conv_epilogue_changes_no_result(digits, table, monkeypatch,
                                                                  strategy):
    """SimInterpreter fake-quantizes a Conv's output block by block in the convolution's
    epilogue (``conv_post``) when only the pair reads it: the logits are the plain golden
    executor's on the QDQ graph bit for bit (zero point 0 and not), every such Conv took
    that path, and an ``intermediate`` run does not (its Conv outputs are unrounded; see
    the test below)."""
    from fc.np_ops import conv as conv_mod

    _, data, _ = digits
    _, qg = _quantized(digits, table, strategy, False)
    sim = SimInterpreter(qg)
    assert sim._conv_post and all(n.op_type == "Conv" for n in qg if n.name in sim._conv_post)
    calls, real = [], conv_mod.conv_post

    def spy(*a, **k):
        y = real(*a, **k)
        calls.append(y is not None)
        return y

    monkeypatch.setattr(conv_mod, "conv_post", spy)
    _assert_logits_plain(sim, qg, (data.x_test, data.x_test[:7]))
    assert calls == [True] * (2 * len(sim._conv_post)) and not sim._prerounded
    calls.clear()
    sim.run({"input": data.x_test[:7]}, intermediate=True)
    assert not calls


def test_simulation_add_into_its_rounded_input_changes_no_result(digits, table, monkeypatch):
    """SimInterpreter's Add of two feature maps sums into an input that only it reads (a
    pair's own array), its output pair's fake quantization on each block of the sum: the
    logits are the plain golden executor's on the QDQ graph bit for bit (a batch large
    enough for the in-place path, which ran, and one too small for it), the other input
    unchanged, and nothing in place in an ``intermediate`` run, whose Add inputs and outputs
    are the plain executor's."""
    from fc.quant import simulate

    _, data, _ = digits
    _, qg = _quantized(digits, table, "minmax", True)
    sim = SimInterpreter(qg)
    assert sim._add_into and all(n.op_type == "Add" for n in qg if n.name in sim._add_into)
    assert set(sim._add_post) == set(sim._add_into)  # each sum read by its pair only
    summed, add_into = [], simulate._add_into

    def spy(args, pos, attrs, post=None):
        other = args[1 - pos].copy()
        y = add_into(args, pos, attrs, post)
        if y is not None:
            summed.append(y is args[pos] and post is not None)
            np.testing.assert_array_equal(args[1 - pos], other)
        return y

    monkeypatch.setattr(simulate, "_add_into", spy)
    plain = _assert_logits_plain(sim, qg, (data.x_test, data.x_test[:64]))
    assert summed and all(summed)
    summed.clear()
    x = data.x_test
    env, ref = sim.run({"input": x}, intermediate=True), plain.run({"input": x}, intermediate=True)
    assert not summed  # nothing in place where every tensor is returned
    for n in qg:
        if n.name in sim._add_into:
            for v in (*n.inputs, n.output):
                np.testing.assert_array_equal(env[v.name], ref[v.name])


def test_simulation_rounding_in_place_changes_no_result_and_no_returned_tensor(digits, table):
    """SimInterpreter rounds a Conv's output into its own array when nothing else reads it:
    the outputs equal the plain golden executor's on the QDQ graph (Quantize and Dequantize
    run as ops, nothing in place), and with ``intermediate=True`` every tensor, the Conv
    outputs included, is the plain executor's (nothing is overwritten there)."""
    from fc.np_ops import Interpreter

    _, data, fused = digits
    _, qg = _quantized(digits, table, "minmax", True)
    x = data.x_test
    sim = SimInterpreter(qg)
    ops = {n.inputs[0].producer.op_type for n in qg if n.name in sim._overwrite}
    assert "Conv" in ops and "Add" in ops
    plain = Interpreter(qg).run({"input": x}, intermediate=True)
    np.testing.assert_array_equal(sim.run({"input": x})["logits"], plain["logits"])
    env = sim.run({"input": x}, intermediate=True)
    rounded = [n.inputs[0].name for n in qg if n.name in sim._overwrite]
    for v in rounded:
        np.testing.assert_array_equal(env[v], plain[v])
    from fc.quant.qparams import _BLOCK

    assert max(env[v].size for v in rounded) >= 2 * _BLOCK  # the blocked path ran too
    relu = [n.inputs[0] for n in qg if n.name in sim._nonneg]  # no lower clamp there
    assert relu and max(env[v.name].size for v in relu) >= 2 * _BLOCK
    assert all(v.producer.attrs.get("activation") == "relu" for v in relu)
    for v in relu:
        np.testing.assert_array_equal(env[v.name], plain[v.name])
