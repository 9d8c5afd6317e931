"""The pretrained EfficientNet-Lite0 run in integers against fc's simulation of the same
strategy (photos from scikit-image / scikit-learn / matplotlib; calibration on 4, max).

The simulation of ``symmetry_max_t`` is ``FixedPointSim``: the QDQ graph in float64 with each
requantization modelling the chip's (effective multiplier M0 2^-(31+n), the rounding mode,
bias at s_x * s_w, ReLU6 as an integer clamp, Add's 2^20 rescale). Measured on 12 photos: the
integer run equals it bit for bit (every layer, every logit) with both roundings;
``scale_shift_t`` equals the plain simulation bit for bit.

Against the plain float32 QDQ simulation (``SimInterpreter``: one round-half-to-even with the
file's scales) ``symmetry_max_t`` was 95.1 % of the logits within one step, top-1 equal on
10/12 photos (``rounding="single"``: 98.4 %, 11/12); 95.4 %, 11/12 (single: 98.3 %, 12/12)
since the bias fix below. Root cause, found layer by layer: each
layer alone differs from it on ~1e-5 of its values (single rounding: float32 noise of the
accumulation at rounding edges, and the bias entering at the float32 ``B_scale`` instead of
s_x * s_w; gemmlowp: also its double rounding, 0.1-0.4 %), and the network amplifies those
single steps (the first project conv of block 5 already differs on 20 % of its values, block
15 on 60 %): the plain simulation is not a model of the chip's arithmetic at the step level.
A second cause, the int32 overflow of the biases of dead channels (weights ~1e-9, biases
clamped to int32, accumulators saturated in 14 layers), is fixed in the quantizer
(``fc.quant.quantize._fit_bias``). Both figures are printed."""

from __future__ import annotations

import numpy as np
import pytest

from fc.quant.integer_run import IntegerInterpreter
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.simulate import FixedPointSim, SimInterpreter
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, sample_photos

PHOTOS = sample_photos()


def _histogram(ints, ref, scale):
    steps = np.rint((ints - ref) / scale).astype(int)
    values, counts = np.unique(steps, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist())), float(np.mean(np.abs(steps) <= 1))


def _compare(efficientnet, strategy, n_eval, capsys, rounding="gemmlowp"):
    _, fused, pre = efficientnet
    calib = np.stack([pre(f) for f in PHOTOS[:4]])
    x = np.stack([pre(f) for f in PHOTOS[16 - n_eval:]])
    spec = build_spec(fused, calibrate_arrays(fused, [calib], "max"), get_strategy(strategy))
    qg = quantized_graph(fused, spec)
    pow2 = strategy.startswith("scale_shift")
    ii = IntegerInterpreter(qg, pow2=pow2, rounding=rounding)
    ints = ii.run({"input": x})["logits"]
    assert ii.overflows == {}
    plain = SimInterpreter(qg).run({"input": x})["logits"]
    sim = plain if pow2 else FixedPointSim(qg, rounding=rounding).run({"input": x})["logits"]
    scale = float(spec.acts["logits"].scale)
    hist, within = _histogram(ints, sim, scale)
    same = ints.argmax(1) == sim.argmax(1)
    plain_hist, plain_within = _histogram(ints, plain, scale)
    with capsys.disabled():
        print(f"\nEfficientNet-Lite0 {strategy} (rounding {rounding}) vs its simulation, {len(x)} "
              f"photos: output steps {hist}, within one step {within:.4f}, same top-1 "
              f"{int(same.sum())}/{len(x)}; vs the plain float32 QDQ simulation: {plain_hist}, "
              f"within one step {plain_within:.4f}, same top-1 "
              f"{int((ints.argmax(1) == plain.argmax(1)).sum())}/{len(x)}")
    return hist, within, same


def _check(hist, within, same):
    assert within >= 0.99 and same.all()  # the bar
    assert hist.get(0, 0) >= 0.999 * sum(hist.values())  # measured: every logit equal


def test_light_scale_shift_t_is_the_simulation(efficientnet, capsys):
    hist, within, same = _compare(efficientnet, "scale_shift_t", 2, capsys)
    assert set(hist) == {0} and same.all()


def test_light_symmetry_max_t_is_the_simulation(efficientnet, capsys):
    _check(*_compare(efficientnet, "symmetry_max_t", 2, capsys))


@pytest.mark.slow
@pytest.mark.parametrize("strategy, rounding", [
    pytest.param("scale_shift_t", "gemmlowp", id="scale_shift_t"),
    pytest.param("symmetry_max_t", "gemmlowp", id="symmetry_max_t"),
    pytest.param("symmetry_max_t", "single", id="symmetry_max_t_single"),
])
def test_every_photo(efficientnet, capsys, strategy, rounding):
    hist, within, same = _compare(efficientnet, strategy, 12, capsys, rounding)
    if strategy == "scale_shift_t":
        assert set(hist) == {0} and same.all()
    else:
        _check(hist, within, same)
