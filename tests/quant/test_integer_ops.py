"""The integer executor's op set on a small CNN that has every op of it (ReLU6 and ReLU as
clamps, MaxPool on int8, non-global AveragePool, Concat of differently scaled inputs, a
residual Add, GlobalAveragePool, Gemm), against fc's fake-quant simulation of the same
strategy on the same integers (each layer on the simulation's own inputs: isolated), and
the accumulator overflow rule."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from fc.np_ops import run
from fc.quant.integer_run import IntegerError, IntegerInterpreter, run_integer
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, torch_to_fused


class AllOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.pool_max = nn.MaxPool2d(2)
        self.pool_avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.mix = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.res = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.cat([self.pool_max(torch.clamp(self.a(x), 0, 6)),
                       self.pool_avg(self.b(x))], 1)  # two scales into one Concat
        y = torch.relu(self.mix(y))
        y = y + torch.relu(self.res(y))  # (a bare 1x1 branch would be re-parameterized)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def allops():
    torch.manual_seed(0)
    model = AllOps().eval()
    fused = torch_to_fused(model, torch.zeros(1, 3, 16, 16), "allops")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (16, 3, 16, 16)).astype(np.float32)
    table = calibrate_arrays(fused, [x[:8], x[8:]])
    return fused, table, x


def test_the_model_has_every_op_of_the_integer_set(allops):
    fused = allops[0]
    ops = {n.op_type for n in fused}
    assert {"Conv", "MaxPool", "AveragePool", "Concat", "Add", "GlobalAveragePool", "Gemm"} <= ops
    acts = {n.attrs.get("activation") for n in fused if n.op_type == "Conv"}
    assert {"relu", "clip"} <= acts


def _layers(ii: IntegerInterpreter, qg, sim: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each integer layer run on the simulation's integers (isolated): (node, got, want)."""
    out = []
    for node in qg:
        if node.name not in ii.out_q:
            continue
        args = []
        for v in node.inputs:
            if v is None or v.name not in ii.params:
                args.append(None)
                continue
            src = v  # the integers: through scale-preserving ops back to a DequantizeLinear
            while src.producer.op_type != "DequantizeLinear":
                src = src.producer.inputs[0]
            chain = []
            w = v
            while w is not src:
                chain.append(w.producer)
                w = w.producer.inputs[0]
            a = sim[src.producer.inputs[0].name]
            for n in reversed(chain):
                a = ii.run_node(n, [a] + [None if u is None else u.const for u in n.inputs[1:]])[0]
            args.append(a)
        got = getattr(ii, f"_{node.op_type.lower()}")(node, args)
        out.append((node, got, sim[ii.out_q[node.name].output.name]))
    return out


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_symmetry_max_t_layers_are_the_simulation_within_one_step(allops, rounding):
    fused, table, x = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    sim = run(qg, {"input": x}, intermediate=True)
    ii = IntegerInterpreter(qg, rounding=rounding)
    seen = set()
    for node, got, want in _layers(ii, qg, sim):
        d = np.abs(got.astype(int) - want.astype(int))
        assert d.max() <= 1, node.name
        # the fixed point differs from the one exact rounding by gemmlowp's double rounding
        # (about 2^-(n+1) of the values for a right shift n: 1/8 for the AveragePool's
        # multiplier 0.228 = M0 2^-31 2^-2) and by float32 noise of the simulation
        assert np.mean(d) <= (0.15 if rounding == "gemmlowp" else 0.001), node.name
        seen.add(node.op_type)
    assert seen == {"Conv", "AveragePool", "Concat", "Add", "GlobalAveragePool", "Gemm"}


def test_scale_shift_t_is_the_simulation_bit_for_bit_on_every_op(allops):
    fused, table, x = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("scale_shift_t")))
    sim = run(qg, {"input": x}, intermediate=True)
    ints = run_integer(qg, {"input": x}, strategy="scale_shift_t", intermediate=True)
    for n in qg:
        if n.op_type == "QuantizeLinear":
            np.testing.assert_array_equal(ints[n.output.name], sim[n.output.name], err_msg=n.name)
    np.testing.assert_array_equal(ints["logits"], sim["logits"])


def test_fused_relu6_and_relu_are_integer_clamps(allops):
    """The integers of a ReLU6 layer end at round(6 / s) (+ zero point), of a ReLU layer at
    the zero point, and MaxPool moves them unchanged (its output is its input's grid)."""
    fused, table, x = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    ii = IntegerInterpreter(qg)
    ints = ii.run({"input": x}, intermediate=True)
    for node in qg:
        if node.name in ii.out_q and node.attrs.get("activation") in ("relu", "clip"):
            q = ii.out_q[node.name]
            s, z = float(q.inputs[1].const), int(q.inputs[2].const)
            v = ints[q.output.name].astype(int)
            assert v.min() >= z
            if node.attrs["activation"] == "clip":
                assert v.max() <= z + round(6 / s)
    mp = next(n for n in qg if n.op_type == "MaxPool")
    assert ints[mp.output.name].dtype == np.int8
    assert np.isin(ints[mp.output.name], ints[mp.inputs[0].name]).all()


def test_accumulator_bounds_hold_and_overflow_names_the_node(allops, caplog):
    fused, table, x = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    ii = IntegerInterpreter(qg)
    bounds = ii.accumulator_bounds()
    assert set(bounds) == {n.name for n in qg if n.name in ii.out_q and n.op_type in ("Conv", "Gemm")}
    assert max(bounds.values()) < 2 ** 31 - 1  # here overflow is impossible
    assert ii.overflows == {}
    # a bias at the int32 limit: the accumulator overflows on positive sums
    conv = next(n for n in qg if n.op_type == "Conv" and n.name in ii.out_q)
    bias = conv.inputs[2].producer.inputs[0]
    bias.const = np.full_like(bias.const, 2 ** 31 - 1)
    ii = IntegerInterpreter(qg)
    assert ii.accumulator_bounds()[conv.name] > 2 ** 31 - 1
    with caplog.at_level(logging.WARNING, logger="fc.quant.integer_run"):
        ii.run({"input": x})
    assert ii.overflows.get(conv.name, 0) > 0
    assert conv.name in caplog.text
    with pytest.raises(Exception, match=rf"{conv.name}.*overflow"):
        IntegerInterpreter(qg, overflow="raise").run({"input": x})


def test_unknown_rounding_is_refused(allops):
    fused, table, _ = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    with pytest.raises(IntegerError, match="rounding 'even'"):
        IntegerInterpreter(qg, rounding="even")


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_fixed_point_simulation_is_the_integer_run_on_every_op(allops, rounding):
    """The float simulation that models the integer arithmetic (``FixedPointSim``: float64
    layers on dequantized values, the effective multipliers and the rounding mode at each
    requantization) gives the integer run's integers at every layer, accumulated over the
    whole network, where the plain float32 simulation differs in single steps."""
    from fc.quant.simulate import FixedPointSim

    fused, table, x = allops
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    fs = FixedPointSim(qg, rounding=rounding).run({"input": x}, intermediate=True)
    ii = IntegerInterpreter(qg, rounding=rounding)
    # the fast paths are what is compared: every layer's float64 requantizer, the Add's table
    assert ii._requantizers and all(v is not None for v in ii._requantizers.values())
    assert ii._add_tables and all(v is not None for v in ii._add_tables.values())
    ints = ii.run({"input": x}, intermediate=True)
    plain = run(qg, {"input": x}, intermediate=True)
    ops, plain_off = set(), 0
    for node in qg:
        if node.name in ii.out_q:
            name = ii.out_q[node.name].output.name
            np.testing.assert_array_equal(fs[name], ints[name], err_msg=node.name)
            plain_off += int(np.count_nonzero(plain[name] != ints[name]))
            ops.add(node.op_type)
    assert ops == {"Conv", "AveragePool", "Concat", "Add", "GlobalAveragePool", "Gemm"}
    np.testing.assert_array_equal(fs["logits"], ints["logits"])
    assert fs["logits"].dtype == np.float32
    if rounding == "gemmlowp":
        assert plain_off > 0  # the double rounding is visible: the model is not vacuous


def test_fixed_point_model_rounds_as_the_integer_requantization():
    """``fixed_point_model`` (float64) against ``requantize`` (int64) on accumulators
    spread over int32 and at the ties of each rounding, for multipliers below and above 1."""
    from fc.np_ops import integer as ia
    from fc.quant.simulate import fixed_point_model

    rng = np.random.default_rng(3)
    acc = np.concatenate([rng.integers(-2 ** 20, 2 ** 20, 20000), np.arange(-4096, 4097),
                          [ia.INT32_MIN + 1, ia.INT32_MAX, 0]]).astype(np.int64)
    for real in (0.5, 0.25, 2 ** -9, 0.0123456, 0.75, 3e-4, 1.0, 1.5, 7.25e-6):
        for rounding in ia.ROUNDINGS:
            a = acc if real <= 1 else acc // 4
            want = ia.requantize(a, real, rounding=rounding).astype(np.float64)
            got = np.clip(fixed_point_model(a.astype(np.float64), real, rounding),
                          ia.INT32_MIN, ia.INT32_MAX)
            np.testing.assert_array_equal(got, want, err_msg=f"{real} {rounding}")


@pytest.mark.parametrize("strategy", ["symmetry_max_t", "scale_shift_t", "minmax"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_a_dead_channel_keeps_its_bias_in_int32(strategy, per_channel):
    """A channel whose weights are all but zero (1e-9, as BN folding leaves dead channels)
    with a bias of 0.7: its weight scale is raised until the int32 bias fits in 2^30, so the
    bias is not clamped (it carries the channel's output: torch's value, within one step)
    and the integer accumulator cannot overflow."""
    torch.manual_seed(1)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6()).eval()
    with torch.no_grad():
        conv[0].weight[0] = 1e-9
        conv[0].bias[0] = 0.7
    fused = torch_to_fused(conv, torch.zeros(1, 3, 8, 8), "dead")
    x = np.random.default_rng(0).normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    spec = build_spec(fused, calibrate_arrays(fused, [x]), get_strategy(strategy),
                      per_channel=per_channel)
    node = next(n for n in fused if n.op_type == "Conv")
    bq, _ = spec.weights[(node.name, 2)]
    assert np.abs(bq.astype(np.int64)).max() <= 2 ** 30
    with torch.no_grad():
        want = conv(torch.from_numpy(x)).numpy()
    qg = quantized_graph(fused, spec)
    step = float(spec.acts[fused.outputs[0].name].scale)
    from fc.quant.simulate import SimInterpreter

    sim = SimInterpreter(qg).run({"input": x})[qg.outputs[0].name]
    assert np.abs(sim[:, 0] - want[:, 0]).max() <= 1.01 * step  # 0.7, not ~0
    if strategy.endswith("_t"):
        ii = IntegerInterpreter(qg, pow2=strategy.startswith("scale_shift"))
        assert max(ii.accumulator_bounds().values()) <= 2 ** 31 - 1
        out = ii.run({"input": x})[qg.outputs[0].name]
        assert ii.overflows == {}
        assert np.abs(out[:, 0] - want[:, 0]).max() <= 1.01 * step


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "mixed", "broadcast"])
def test_pair_table_lookup_reads_each_element_pair(layout):
    """``_lookup_pairs``: table[u_a * 256 + u_b] for every element pair, int8 with uint8, in
    the blocked path (both operands in one memory layout, over several blocks) and the
    broadcasting one; the output keeps the operands' layout when they share one."""
    from fc.quant.integer_run import _lookup_pairs

    rng = np.random.default_rng(4)
    table = rng.integers(-128, 128, 65536).astype(np.int8)
    shape = (2, 24, 30, 31)
    a = rng.integers(-128, 128, shape).astype(np.int8)
    b = rng.integers(0, 256, shape).astype(np.uint8)
    if layout in ("channels_last", "mixed"):
        a = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "channels_last":
        b = np.ascontiguousarray(b.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "broadcast":
        b = b[:, :, :1]
    want = table[a.view(np.uint8).astype(np.int64) * 256 + b.astype(np.int64)]
    got = _lookup_pairs(table, a, b)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int8
    if layout != "mixed":
        assert np.argsort(got.strides).tolist() == np.argsort(a.strides).tolist()
