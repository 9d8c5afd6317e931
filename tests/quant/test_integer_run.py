"""Integer-only execution of the quantized digits CNN against fc's fake-quant simulation of
the same strategy."""

from __future__ import annotations

import numpy as np
import pytest

from fc.quant.integer_run import IntegerError, IntegerInterpreter
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.simulate import FixedPointSim, SimInterpreter
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, split


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_symmetry_max_t_matches_the_simulation_within_one_step(digits, capsys, rounding):
    """Against the plain float32 QDQ simulation: within one step (the issue's bar); against
    the simulation of the same arithmetic (``FixedPointSim``): bit for bit."""
    _, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:512], 128))
    spec = build_spec(fused, table, get_strategy("symmetry_max_t"))
    qg = quantized_graph(fused, spec)
    x = data.x_test
    sim = SimInterpreter(qg).run({"input": x})["logits"]
    ints = IntegerInterpreter(qg, rounding=rounding).run({"input": x})["logits"]
    steps = np.rint((ints - sim) / float(spec.acts["logits"].scale)).astype(int)
    values, counts = np.unique(steps, return_counts=True)
    fixed = FixedPointSim(qg, rounding=rounding).run({"input": x})["logits"]
    with capsys.disabled():
        print(f"\nsymmetry_max_t ({rounding}) vs the plain simulation, output steps:",
              dict(zip(values.tolist(), counts.tolist())), "; vs FixedPointSim: max difference",
              float(np.abs(ints - fixed).max()))
    assert np.mean(np.abs(steps) <= 1) >= 0.99
    assert np.array_equal(ints.argmax(1), sim.argmax(1))
    np.testing.assert_array_equal(ints, fixed)


def test_ops_outside_the_integer_set_are_listed_at_once(digits):
    from fc.ir.core import Graph

    _, data, fused = digits
    table = calibrate_arrays(fused, [data.x_train[:64]])
    spec = build_spec(fused, table, get_strategy("symmetry_max_t"))
    qg = quantized_graph(fused, spec)
    g = Graph("with_softmax")
    assert qg is not g
    # a Softmax after the classifier is outside the integer set
    last = qg.outputs[0]
    sm = qg.add_node("Softmax", [last], {"axis": 1}, name="probs")
    qg.outputs[:] = [sm.output]
    with pytest.raises(IntegerError, match=r"Softmax x1 \(probs\)"):
        IntegerInterpreter(qg)
    out = IntegerInterpreter(qg, allow_float=True).run({"input": data.x_test[:8]})
    np.testing.assert_allclose(out[sm.output.name].sum(1), 1, rtol=1e-5)


def test_scale_shift_t_is_the_simulation_bit_for_bit(digits):
    """Power-of-two scales: every requantization is one half-to-even shift (or an exact
    integer division for the pool), the rounding the simulation applies, on exact integers:
    every quantized tensor of the integer run equals the simulation's."""
    from fc.np_ops import run

    _, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:512], 128))
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("scale_shift_t")))
    x = data.x_test
    sim = run(qg, {"input": x}, intermediate=True)
    ints = IntegerInterpreter(qg, pow2=True).run({"input": x}, intermediate=True)
    qnames = [n.output.name for n in qg if n.op_type == "QuantizeLinear"]
    for name in qnames:
        np.testing.assert_array_equal(ints[name], sim[name], err_msg=name)
    np.testing.assert_array_equal(ints["logits"], sim["logits"])
