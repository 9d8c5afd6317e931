"""Strategies' parameters and fake quantization against torch, TensorFlow and onnxruntime
with the same scales (per tensor and per channel)."""

from __future__ import annotations

import numpy as np
import pytest

from fc.quant.qparams import QParams, dequantize, fake_quant, quantize
from fc.quant.strategies import Range, get_strategy


def _data(shape=(4, 8, 6, 6), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :3] = [0.0, 10.0, -10.0]  # zero and values beyond any threshold
    return x


def _near_tie(x: np.ndarray, p: QParams) -> np.ndarray:
    """Where x / s is within float32 rounding of a .5 tie (oracles that multiply by 1 / s or
    round half up may round those the other way)."""
    v = np.asarray(x, np.float64) / p.broadcast(p.scale.astype(np.float64), x.ndim)
    return np.abs(np.abs(v - np.floor(v)) - 0.5) < 1e-4 * np.maximum(1, np.abs(v))


def assert_same_or_tie(got: np.ndarray, ref: np.ndarray, x: np.ndarray, p: QParams) -> None:
    """Equal everywhere except near ties, where one quantization step apart."""
    step = p.broadcast(p.scale, x.ndim) * np.ones_like(x)
    diff = np.abs(got.astype(np.float64) - ref)
    bad = diff > 0
    assert not np.any(bad & ~_near_tie(x, p)), f"{bad.sum()} elements differ off ties"
    assert np.all(diff[bad] <= step[bad] * 1.0001)


STRATS = [pytest.param(s, id=s) for s in ("symmetry_max", "minmax", "scale_shift")]
AXES = [pytest.param(None, id="per_tensor"), pytest.param(1, id="per_channel")]


def _params(strategy: str, x: np.ndarray, axis: int | None, *, weight: bool) -> QParams:
    st = get_strategy(strategy)
    if weight:
        return st.weight(x, axis, 8)
    amax = float(np.abs(x).max()) * 0.6  # a threshold that clips
    return st.activation(Range(float(x.min()), float(x.max()), amax), 8)


def test_symmetry_max_maths():
    x = _data()
    w = get_strategy("symmetry_max").weight(x, 1, 8)
    np.testing.assert_array_equal(w.scale, (np.abs(x).max(axis=(0, 2, 3)) / 127).astype(np.float32))
    assert (w.qmin, w.qmax) == (-127, 127) and not w.zero_point.any()
    q = quantize(x, w)
    assert q.dtype == np.int8 and set(np.abs(q).max(axis=(0, 2, 3))) == {127}
    a = get_strategy("symmetry_max").activation(Range(-1.0, 3.0, 2.54), 8)
    assert (a.qmin, a.qmax) == (-128, 127) and a.scale == np.float32(2.54) / np.float32(127)


def test_scale_shift_is_the_finest_unclipped_power_of_two():
    st = get_strategy("scale_shift")
    for t in (0.3, 1.0, 127 / 64, 127 / 64 * 1.0001, 5.0, 1000.0):
        p = st.activation(Range(-t, t, t), 8)
        f = int(p.shift)
        assert p.scale == np.float32(2.0 ** -f)
        assert t * 2.0 ** f <= 127 < t * 2.0 ** (f + 1), (t, f)


def test_scale_shift_mse_option_never_loses_to_ceil():
    x = _data((64, 32, 3, 3), seed=3)
    ceil = get_strategy("scale_shift", pow2="ceil").weight(x, 0, 8)
    mse = get_strategy("scale_shift", pow2="mse").weight(x, 0, 8)
    err = [((fake_quant(x, p) - x).astype(np.float64) ** 2).sum(axis=(1, 2, 3)) for p in (ceil, mse)]
    assert np.all(err[1] <= err[0]) and np.any(mse.shift != ceil.shift)


def test_minmax_zero_is_exact_and_range_includes_zero():
    st = get_strategy("minmax")
    p = st.activation(Range(0.5, 6.0, 6.0), 8)  # all positive: widened to [0, 6]
    assert p.zero_point == 0 and fake_quant(np.zeros(3, np.float32), p).tolist() == [0, 0, 0]
    p = st.activation(Range(-1.3, 2.9, 2.9), 8)
    assert fake_quant(np.float32(0), p) == 0 and p.dtype == np.uint8


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("strategy", STRATS)
def test_fake_quant_matches_torch(strategy, axis):
    import torch

    x = _data()
    p = _params(strategy, x, axis, weight=axis is not None)
    t = torch.from_numpy(x)
    if axis is None:
        ref = torch.fake_quantize_per_tensor_affine(t, float(p.scale), int(p.zero_point), p.qmin,
                                                    p.qmax)
    else:
        ref = torch.fake_quantize_per_channel_affine(
            t, torch.from_numpy(p.scale), torch.from_numpy(p.zero_point.astype(np.int32)), axis,
            p.qmin, p.qmax)
    assert_same_or_tie(fake_quant(x, p), ref.numpy(), x, p)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("strategy", STRATS)
def test_fake_quant_matches_tensorflow(strategy, axis):
    tf = pytest.importorskip("tensorflow")

    x = _data()
    p = _params(strategy, x, axis, weight=axis is not None)
    narrow = p.qmin == -(p.qmax)  # [-127, 127]: TF's narrow_range over [1, 255]
    bits = 8
    s = p.scale.astype(np.float64)
    off = -p.qmin if p.qmin < 0 else 0
    lo = ((p.qmin + off) - (p.zero_point.astype(np.float64) + off)) * s
    hi = lo + (p.qmax - p.qmin) * s
    if strategy == "minmax":  # TF nudges the raw range itself: give it what fc was given
        lo, hi = (x.min(axis=(0, 2, 3)), x.max(axis=(0, 2, 3))) if axis is not None else (
            max(float(x.min()), -float(np.abs(x).max()) * 0.6),
            min(float(x.max()), float(np.abs(x).max()) * 0.6))
    if axis is None:
        ref = tf.quantization.fake_quant_with_min_max_vars(x, float(lo), float(hi), num_bits=bits,
                                                            narrow_range=narrow).numpy()
    else:
        xt = np.moveaxis(x, axis, -1)
        ref = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            xt, np.float32(lo), np.float32(hi), num_bits=bits, narrow_range=narrow).numpy()
        ref = np.moveaxis(ref, -1, axis)
    # TF rounds half up and recomputes the scale from (max - min) in float32: ties may differ
    got = fake_quant(x, p)
    assert np.abs(got - ref).max() <= p.scale.max() * 1.001
    assert np.mean(got != ref) < 0.01


def _ort_qdq(x: np.ndarray, p: QParams) -> np.ndarray:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    zp_type = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}[p.dtype]
    axis = 1 if p.axis is None else p.axis
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(p.scale, "s"), numpy_helper.from_array(p.zero_point, "z")])
    _ = zp_type
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("strategy", STRATS)
def test_fake_quant_matches_onnxruntime_qdq(strategy, axis):
    x = _data()
    p = _params(strategy, x, axis, weight=axis is not None)
    if p.qmin == -127:  # ONNX clamps to the dtype's range; fc's weights never exceed +-127
        assert quantize(x, p).min() >= -127
    assert_same_or_tie(fake_quant(x, p), _ort_qdq(x, p), x, p)


def test_quantize_dequantize_pair_is_fake_quant_bit_for_bit():
    x = _data()
    for strategy in ("symmetry_max", "minmax", "scale_shift"):
        p = _params(strategy, x, 1, weight=True)
        np.testing.assert_array_equal(dequantize(quantize(x, p), p), fake_quant(x, p))


@pytest.mark.parametrize("bits", [pytest.param(b, id=f"{b}bit") for b in (2, 4, 12, 16)])
def test_other_bit_widths_use_their_range(bits):
    x = _data()
    p = get_strategy("symmetry_max").activation(Range(-3.0, 3.0, 3.0), bits)
    q = quantize(x, p)
    assert (p.qmin, p.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert q.min() >= p.qmin and q.max() <= p.qmax and q.dtype == (np.int8 if bits <= 8 else np.int16)
    err = [np.abs(fake_quant(x, get_strategy("symmetry_max").activation(Range(-3, 3, 3.0), b)) - x)
           for b in (bits, bits + 1)]
    inside = np.abs(x) < 3
    assert err[1][inside].max() < err[0][inside].max()


@pytest.mark.parametrize("strategy", ["symmetry_max", "minmax"])
def test_large_per_tensor_fake_quant_in_blocks_matches_torch_and_the_qdq_pair(strategy):
    """A feature map large enough for the blocked path (cache-sized blocks over the thread
    pool, optionally into its own input), in the executor's channels-last layout: torch's
    fake quantization up to ties, fc's own quantize -> dequantize pair bit for bit, the
    layout kept, and the input untouched unless ``overwrite``."""
    import torch

    from fc.quant import qparams

    x = _data((4, 16, 48, 48), seed=5).transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    assert x.size >= 2 * qparams._BLOCK and not x.flags.c_contiguous
    x[0, :, 0, 0] = np.nan  # NaN propagates as through np.clip
    x[3, 7, 40, 40], x[3, 9, 47, 47] = 40.0, -40.0  # clamped in a late block without a NaN
    p = _params(strategy, np.nan_to_num(x), None, weight=False)
    keep = x.copy()
    got = fake_quant(x, p)
    assert got.strides == x.strides and np.array_equal(x, keep, equal_nan=True)
    ok = ~np.isnan(x)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(np.where(ok, x, 0)),
                                                float(p.scale), int(p.zero_point), p.qmin, p.qmax)
    assert np.isnan(got[~ok]).all()
    assert_same_or_tie(np.where(ok, got, 0), ref.numpy(), np.where(ok, x, 0), p)
    xs = np.where(ok, x, 0).astype(np.float32)
    np.testing.assert_array_equal(fake_quant(xs, p), dequantize(quantize(xs, p), p))
    assert fake_quant(xs, p)[3, 7, 40, 40] == np.float32(p.qmax - int(p.zero_point)) * p.scale
    small = fake_quant(xs[:1, :, :8], p)  # the unblocked path on a part of it
    np.testing.assert_array_equal(small, fake_quant(xs, p)[:1, :, :8])
    same = x.copy(order="K")
    out = fake_quant(same, p, overwrite=True)
    assert out is same
    np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("strategy", ["symmetry_max", "minmax"])
def test_fake_quant_of_a_relu_output_without_the_lower_clamp_is_the_same_bits(strategy):
    """``nonneg`` (the caller knows x >= 0 or NaN: a ReLU's output) skips the lower clamp in
    the blocked path: the QDQ pair's values, and bit for bit (-0.0, values past qmax and a
    NaN included) what the clamped path gives, with a zero point of 0 (symmetric) and not
    (minmax on a range from -1)."""
    from fc.quant import qparams

    x = np.maximum(_data((4, 16, 48, 48), seed=7), 0).transpose(0, 2, 3, 1).copy()
    x = x.transpose(0, 3, 1, 2)
    assert x.size >= 2 * qparams._BLOCK
    x[1, 2, 3, 4], x[2, 5, 6, 7], x[3, 9, 47, 47] = -0.0, 1e30, 50.0
    p = get_strategy(strategy).activation(Range(-1.0, 3.0, 3.0), 8)  # 1e30 and 50 clamp
    assert (strategy == "minmax") == (int(p.zero_point) != 0)
    ref = dequantize(quantize(x, p), p)
    got = fake_quant(x, p, nonneg=True)
    np.testing.assert_array_equal(got, ref)
    assert got.tobytes() == fake_quant(x, p).tobytes()
    assert got[3, 9, 47, 47] == np.float32(p.qmax - int(p.zero_point)) * p.scale
    x[0, 0, 0, 0] = np.nan
    nan = fake_quant(x, p, nonneg=True)
    assert np.isnan(nan[0, 0, 0, 0]) and nan.tobytes() == fake_quant(x, p).tobytes()
