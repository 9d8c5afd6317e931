"""Integer requantization against the published definitions of gemmlowp's fixed-point
functions (written out here on Python integers, line by line from fixedpoint.h), and the
int32 accumulators against onnxruntime's ConvInteger and MatMulInteger."""

from __future__ import annotations

import numpy as np
import pytest

from fc.np_ops.integer import (
    INT32_MAX,
    INT32_MIN,
    int_conv,
    int_matmul,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    shift_round,
)


def ref_srdhm(a: int, b: int) -> int:
    """gemmlowp: overflow = a == b == INT32_MIN; ab_64 = a * b; nudge = ab_64 >= 0 ? 1 << 30 :
    1 - (1 << 30); ab_x2_high32 = (ab_64 + nudge) / (1ll << 31) (C division truncates)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    s = ab + nudge
    return int(s / (1 << 31)) if abs(s) < 2 ** 52 else (abs(s) // (1 << 31)) * (1 if s >= 0 else -1)


def ref_rdbpot(x: int, e: int) -> int:
    """gemmlowp: mask = (1 << e) - 1; remainder = x & mask; threshold = (mask >> 1) + (x < 0);
    return (x >> e) + (remainder > threshold)."""
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


EDGE = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, (1 << 30), INT32_MAX - 1,
        INT32_MAX]


def _pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(INT32_MIN, INT32_MAX, 2000, dtype=np.int64, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, 2000, dtype=np.int64, endpoint=True)
    ea, eb = np.meshgrid(EDGE, EDGE)
    return np.concatenate([a, ea.ravel()]).astype(np.int32), np.concatenate([b, eb.ravel()]).astype(np.int32)


def test_saturating_rounding_doubling_high_mul_is_gemmlowps():
    a, b = _pairs()
    got = saturating_rounding_doubling_high_mul(a, b)
    want = [ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    assert got.tolist() == want
    assert saturating_rounding_doubling_high_mul(np.int32(INT32_MIN), INT32_MIN) == INT32_MAX


@pytest.mark.parametrize("e", [pytest.param(e, id=f"shift{e}") for e in (0, 1, 2, 7, 15, 30, 31)])
def test_rounding_divide_by_pot_is_gemmlowps(e):
    x = np.concatenate([_pairs(e)[0], np.array([5, -5, 6, -6, 7, -7], np.int32) << min(e, 24)])
    # ties: x = (2k + 1) * 2^(e-1) rounds away from zero
    got = rounding_divide_by_pot(x, e)
    assert got.tolist() == [ref_rdbpot(int(v), e) for v in x]
    if 0 < e <= 30:
        assert rounding_divide_by_pot(np.int32(3 << (e - 1)), e) == 2  # 1.5 -> 2
        assert rounding_divide_by_pot(np.int32(-(3 << (e - 1))), e) == -2  # -1.5 -> -2
    with pytest.raises(ValueError):
        rounding_divide_by_pot(x, 32)


@pytest.mark.parametrize("real", [pytest.param(r, id=f"{r:g}") for r in
                                  (0.5, 0.75, 1 / 3, 1e-3, 2 ** -20, 0.999999999, 0.0123456)])
def test_quantize_multiplier_represents_the_real_multiplier(real):
    m0, n = quantize_multiplier(real)
    assert 2 ** 30 <= m0 < 2 ** 31 and 0 <= n <= 31
    assert abs(m0 * 2.0 ** (-31 - n) - real) <= real * 2 ** -31
    # applied to an accumulator it is round(acc * real) (away from zero at ties), within 1
    acc = np.arange(-100000, 100000, 997, dtype=np.int32)
    got = multiply_by_quantized_multiplier(acc, m0, n)
    # (rounded twice, in the high multiply and in the shift: within one of the exact product)
    assert np.abs(got - acc.astype(np.float64) * real).max() < 1


@pytest.mark.parametrize("k", [pytest.param(k, id=f"k{k}") for k in (-3, 0, 1, 7, 20)])
def test_shift_round_is_one_half_even_rounding_of_the_exact_quotient(k):
    from fractions import Fraction

    acc = np.concatenate([np.arange(-5000, 5000), [INT32_MAX, INT32_MIN]]).astype(np.int32)
    got = shift_round(acc, k)
    for a, g in zip(acc.tolist(), got.tolist()):
        exact = Fraction(a) * Fraction(2) ** -k
        r = round(exact)  # Python rounds a Fraction half to even
        assert g == max(INT32_MIN, min(INT32_MAX, r)), (a, k)


def _ort(model_nodes, inputs, outputs, feeds):
    import onnxruntime as ort
    from onnx import helper

    g = helper.make_graph(model_nodes, "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


CONVS = [
    pytest.param((2, 8, 9, 9), (16, 8, 3, 3), (1, 1), (1, 1, 1, 1), 1, id="3x3_pad1"),
    pytest.param((1, 16, 10, 10), (32, 16, 1, 1), (2, 2), (0, 0, 0, 0), 1, id="1x1_stride2"),
    pytest.param((1, 8, 8, 8), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), 8, id="depthwise"),
    pytest.param((1, 64, 7, 7), (64, 64, 3, 3), (1, 1), (0, 1, 2, 1), 1, id="asymmetric_pads"),
    # K = 4608 taps: past float32's exact range, summed over input-channel slices
    pytest.param((1, 512, 7, 7), (16, 512, 3, 3), (1, 1), (1, 1, 1, 1), 1, id="wide_k_sliced"),
    # a grouped conv past it: float64
    pytest.param((1, 512, 6, 6), (8, 256, 3, 3), (1, 1), (1, 1, 1, 1), 2, id="wide_k_grouped"),
]


@pytest.mark.parametrize("xs, ws, strides, pads, group", CONVS)
def test_conv_accumulators_equal_onnxruntime_conv_integer(xs, ws, strides, pads, group):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, xs, dtype=np.uint8)
    w = rng.integers(0, 256, ws, dtype=np.uint8)
    x_zp, w_zp = np.uint8(113), np.uint8(128)
    got = int_conv(x, int(x_zp), w.astype(np.int32), int(w_zp), strides=strides, pads=pads,
                   dilations=(1, 1), group=group)
    vi = helper.make_tensor_value_info
    ref = _ort([helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], strides=list(strides),
                                 pads=list(pads), group=group)],
               [vi("x", TensorProto.UINT8, xs), vi("w", TensorProto.UINT8, ws),
                vi("xz", TensorProto.UINT8, []), vi("wz", TensorProto.UINT8, [])],
               [vi("y", TensorProto.INT32, None)],
               {"x": x, "w": w, "xz": np.array(x_zp), "wz": np.array(w_zp)})
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("shape", [pytest.param((16, 300, 50), id="16x300x50"),
                                   pytest.param((1, 2048, 1000), id="classifier")])
@pytest.mark.parametrize("kinds", [pytest.param(("u8", "u8"), id="u8u8"),
                                   pytest.param(("s8", "s8"), id="s8s8")])
def test_matmul_accumulators_equal_onnxruntime_matmul_integer(shape, kinds):
    """uint8 x int8 is not fed to onnxruntime: its u8s8 kernel depends on the CPU; on x86
    CPUs without VNNI it adds pairs of products in saturating int16 (vpmaddubsw), so it is
    not exact (measured on the AVX2 host this test was written on: off by up to 72,409 on
    16x300x50); on the AVX512-VNNI/AMX host of 2026-12-02 18:20 (onnxruntime 1.32) the same
    case was exact. Its u8u8 and s8s8 kernels are exact on both."""
    from onnx import TensorProto, helper

    m, k, n = shape
    rng = np.random.default_rng(2)
    types = {"u8": (np.uint8, TensorProto.UINT8, 0, 256), "s8": (np.int8, TensorProto.INT8, -128, 128)}
    (ta, pa, la, ha), (tb, pb, lb, hb) = types[kinds[0]], types[kinds[1]]
    a = rng.integers(la, ha, (m, k)).astype(ta)
    b = rng.integers(lb, hb, (k, n)).astype(tb)
    az, bz = ta(la + 101), tb(lb + 128)
    got = int_matmul(a, int(az), b, int(bz))
    exact = (a.astype(np.int64) - int(az)) @ (b.astype(np.int64) - int(bz))
    vi = helper.make_tensor_value_info
    ref = _ort([helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])],
               [vi("a", pa, [m, k]), vi("b", pb, [k, n]), vi("az", pa, []), vi("bz", pb, [])],
               [vi("y", TensorProto.INT32, None)],
               {"a": a, "b": b, "az": np.array(az), "bz": np.array(bz)})
    np.testing.assert_array_equal(ref, exact)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("den", [pytest.param(d, id=f"den{d}") for d in (1, 2, 4, 49, 196)])
def test_div_round_is_half_even_on_exact_quotients(den):
    from fractions import Fraction

    from fc.np_ops.integer import div_round

    num = np.arange(-3 * den - 7, 3 * den + 8, dtype=np.int64)
    assert div_round(num, den).tolist() == [round(Fraction(int(n), den)) for n in num]


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_blocked_add_is_the_three_requantizations(rounding):
    """``add_rescaled`` (blocked) equals TFLite's Add written as three whole-array
    ``requantize`` calls, over more than one block, at int8/uint8 extremes."""
    from fc.np_ops.integer import add_rescaled, requantize

    rng = np.random.default_rng(5)
    a = rng.integers(-255, 256, (2, 3, 150, 151)).astype(np.int64)
    b = rng.integers(-255, 256, a.shape).astype(np.int64)
    a.flat[:4] = [-255, 255, 0, -1]
    for reals in ((0.5, 0.3125, 2.1e-6), (0.41, 0.5, 7.7e-7), (0.5, 0.5, 1.9e-6)):
        want = requantize(requantize(a << 20, reals[0], rounding=rounding).astype(np.int64)
                          + requantize(b << 20, reals[1], rounding=rounding), reals[2],
                          rounding=rounding)
        np.testing.assert_array_equal(add_rescaled(a, b, 20, reals, rounding=rounding), want)


def _ref_layer(a: int, real: float | None, k: int | None, rounding: str, lo: int, hi: int) -> int:
    """One accumulator a (bias included) to the layer's clamped output, on Python integers:
    gemmlowp's MultiplyByQuantizedMultiplier (``ref_srdhm`` then ``ref_rdbpot``), TFLite's
    single rounding (a * M0 + 2^(s-1)) >> s with s = 31 + n, or half-to-even a / 2^k."""
    from fractions import Fraction

    if k is not None:
        y = round(Fraction(a) * Fraction(2) ** -k)
    else:
        m0, n = quantize_multiplier(real)
        if rounding == "gemmlowp":
            y = ref_rdbpot(ref_srdhm(a, m0), n)
        else:
            s = 31 + n
            y = (a * m0 + (1 << (s - 1))) >> s
    return max(lo, min(hi, y))


def _layer_accumulators(rng, c: int, reals, lo: int, hi: int) -> np.ndarray:
    """(2, c, 40, 50) int64 accumulators per channel: dense around the values that land in
    [lo, hi] (every integer of a window there, so both roundings' ties occur), random ones up
    to int32's limits, and 2^21 / 2^22 and their neighbours (the exact float ranges)."""
    per = 2 * 40 * 50
    out = np.empty((c, per), np.int64)
    q = max(abs(lo), abs(hi)) + 3
    for ch in range(c):
        span = int(q / reals[ch]) if reals is not None else q << 8
        dense = np.arange(-600, 600) + int(rng.integers(-span, span))
        edges = np.array([2 ** 21, 2 ** 22, 2 ** 22 - 1, 2 ** 21 - 1, 2 ** 21 + 1, INT32_MAX - 1])
        edges = np.concatenate([edges, -edges, [0, 1, -1]])
        rest = per - dense.size - edges.size
        wide = np.concatenate([rng.integers(-span, span, rest // 2),
                               rng.integers(-(2 ** 31) + 2 ** 30, 2 ** 31 - 2 ** 30, rest - rest // 2)])
        out[ch] = np.concatenate([dense, edges, wide])
    return out.reshape(c, 2, 40, 50).transpose(1, 0, 2, 3)


REQUANT_CASES = [
    # (mode, lo, hi, bias magnitude, channels-last storage, the smallest multiplier: at the
    # limit of what fast_requantizer accepts for that range and bias)
    pytest.param("gemmlowp", -128, 127, 2 ** 12, True, 6.3e-5, id="gemmlowp-int8-nhwc"),
    pytest.param("gemmlowp", -128, 127, 2 ** 30, False, 3.2e-5, id="gemmlowp-int8-bias2^30-nchw"),
    pytest.param("gemmlowp", 0, 127, 2 ** 30, False, 3.2e-5, id="gemmlowp-relu-bias2^30-n14"),
    pytest.param("gemmlowp", 0, 255, 2 ** 10, True, 1.3e-4, id="gemmlowp-uint8"),
    pytest.param("gemmlowp", 0, 127, 2 ** 12, False, 6.3e-5, id="gemmlowp-relu-nchw"),
    pytest.param("gemmlowp", 0, 127, 2 ** 21, True, 6.3e-5, id="gemmlowp-relu-bias2^21"),
    pytest.param("single", 3, 50, 2 ** 12, True, 1.68e-5, id="single-clip"),
    pytest.param("single", -128, 127, 2 ** 28, False, 6.3e-5, id="single-bias2^28-nchw"),
    pytest.param("pow2", -128, 127, 2 ** 30, True, None, id="pow2-int8"),
    pytest.param("pow2", 0, 255, 2 ** 8, False, None, id="pow2-uint8-nchw"),
]


@pytest.mark.parametrize("mode, lo, hi, bias_mag, channels_last, smallest", REQUANT_CASES)
def test_float_requantizer_is_the_published_definitions(mode, lo, hi, bias_mag, channels_last,
                                                        smallest):
    """``fast_requantizer``'s float64 passes give, for every accumulator, the clamped integer
    of the definitions written out on Python integers (gemmlowp, TFLite single rounding, or
    half-to-even shifts): at both roundings' ties, at the edges of its exact ranges and far
    past them, with the bias folded into the constant or added first, in both layouts."""
    from fc.np_ops.integer import fast_requantizer

    rng = np.random.default_rng(7)
    c = 6
    bias = rng.integers(-bias_mag, bias_mag, c, endpoint=True)
    if mode == "pow2":
        ks = np.array([-2, 0, 1, 7, 12, 24])
        reals = 2.0 ** -ks
        rq = fast_requantizer(bias=bias, lo=lo, hi=hi, dtype=np.uint8 if lo >= 0 and hi > 127 else np.int8,
                              shift=ks)
    else:
        # a power of two (M0 = 2^30: ties in the high multiply), 0.5 (n = 0) and odd reals
        reals = np.array([2.0 ** -9, 0.5, 0.0123456, 3.1e-3, 0.37, smallest])
        rq = fast_requantizer(bias=bias, lo=lo, hi=hi, dtype=np.uint8 if hi > 127 else np.int8,
                              real=reals, rounding=mode)
    assert rq is not None
    a = _layer_accumulators(rng, c, reals, lo, hi)
    a = np.clip(a, INT32_MIN + 2 ** 30 + 1, INT32_MAX - 2 ** 30 - 1)  # a + b stays int32
    acc = (a - bias.reshape(1, -1, 1, 1)).astype(np.float64)  # what BLAS hands over
    if channels_last:
        acc = np.ascontiguousarray(acc.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    got = rq(acc)
    assert got.shape == a.shape  # in the accumulators' layout
    assert (got.transpose(0, 2, 3, 1) if channels_last else got).flags.c_contiguous
    for ch in range(c):
        want = [_ref_layer(int(v), float(reals[ch]), int(ks[ch]) if mode == "pow2" else None,
                           mode, lo, hi) for v in a[:, ch].ravel()]
        assert got[:, ch].ravel().tolist() == want, (mode, ch)


def test_float_requantizer_declines_what_it_cannot_prove():
    """None (the int64 definitions run) for a multiplier >= 1 (a left shift), single rounding
    with a shift past 13, and a multiplier too small for the out-of-range values to clamp."""
    from fc.np_ops.integer import fast_requantizer

    kw = dict(bias=np.array([5, -7]), lo=-128, hi=127, dtype=np.int8)
    assert fast_requantizer(real=np.array([0.3, 1.5]), **kw) is None
    assert fast_requantizer(real=np.array([0.3, 2.0 ** -16]), rounding="single", **kw) is None
    assert fast_requantizer(real=np.array([0.3, 2.0 ** -15.5]), **kw) is None
    assert fast_requantizer(real=np.array([0.3, 2.0 ** -12]), **kw) is not None


@pytest.mark.parametrize("over", [False, True], ids=["at_2^24", "past_2^24"])
def test_conv_per_channel_bound_at_float32s_limit(over):
    """One float32 convolution while max|x| * sum|w| <= 2^24 for every output channel: all
    products positive, so the sum runs up to max|x| * S_c exactly; one unit past it the input
    channels are sliced. Both against onnxruntime's ConvInteger."""
    from onnx import TensorProto, helper

    k = 132104  # 127 * 132104 = 2^24 - 8; past it: 127 * 132113, odd, not a float32
    cin = 128  # 1152 taps: K * max|x| * max|w| = 18.6e6 > 2^24 (the bound before)
    x = np.full((1, cin, 3, 3), 127, np.int8)
    w = np.zeros((2, cin, 3, 3), np.int8)
    w[0].flat[: k // 127] = 127
    w[0].flat[k // 127] = k % 127 + (9 if over else 0)
    w[1].flat[::2] = -127
    got = int_conv(x, 0, w, 0, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    vi = helper.make_tensor_value_info
    ref = _ort([helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
               [vi("x", TensorProto.INT8, x.shape), vi("w", TensorProto.INT8, w.shape)],
               [vi("y", TensorProto.INT32, None)], {"x": x, "w": w})
    assert ref.max() == 127 * (k + (9 if over else 0))
    np.testing.assert_array_equal(got, ref)
