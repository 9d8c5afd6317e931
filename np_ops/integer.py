"""Integer arithmetic of the true-quantization (``_t``) strategies: gemmlowp's fixed-point
requantization and exact int8 x int8 -> int32 accumulation.

**Requantization** (gemmlowp ``fixedpoint.h``, TFLite ``quantization_util.cc``): a real
multiplier 0 < M < 1 (M = s_in * s_w / s_out) is stored as an int32 ``M0`` in [2^30, 2^31)
and a right shift ``n`` with M = M0 * 2^-31 * 2^-n (``quantize_multiplier``); an int32
accumulator ``acc`` becomes

    RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, M0), n)

- ``SaturatingRoundingDoublingHighMul(a, b)``: the high 32 bits of 2 * a * b, rounded half
  away from zero (nudge +2^30 for a non-negative product, 1 - 2^30 for a negative one, then
  truncating division by 2^31); INT32_MIN * INT32_MIN, the one overflow, saturates to
  INT32_MAX.
- ``RoundingDivideByPOT(x, n)``: x / 2^n rounded half away from zero (mask = 2^n - 1,
  remainder = x & mask, threshold = mask >> 1 plus 1 for negative x; add 1 when remainder >
  threshold), for 0 <= n <= 31.

For the power-of-two scales of ``scale_shift_t`` the multiplier is 2^-k and the
requantization is one rounding shift, ``shift_round(acc, k)`` (a left shift, saturated, for
k < 0), rounding half to even like the simulation: with power-of-two scales exact ties are
common (an integer accumulator / 2^k), and gemmlowp's away-from-zero rule would move each
of them one step from the simulation (measured on the digits CNN: 34% of the outputs 1-5
steps off, against 0 with half to even). It is not routed through the high multiply either:
M0 = 2^30 stands for 1/2 there, and rounding twice differs from one rounding on ~0.4% of
accumulators.

**Accumulation.** numpy's integer matmul has no BLAS and is far too slow, so int8 products
are summed in float64 BLAS, which is exact: each product of (q_x - z_x) in [-255, 255] and
q_w in [-127, 127] is below 2^15 in magnitude, so every partial sum of K products is below
K * 2^15, far below 2^53 (exactness holds for K < 2^38; a 3x3 convolution over 2048
channels has K = 18,432).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INT32_MIN", "INT32_MAX", "saturating_rounding_doubling_high_mul",
           "rounding_divide_by_pot", "quantize_multiplier", "multiply_by_quantized_multiplier",
           "shift_round", "requantize", "div_round",
           "int_conv", "int_matmul"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 arrays (computed in int64)."""
    a64 = np.asarray(a, np.int64)
    b64 = np.asarray(b, np.int64)
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    ab = a64 * b64  # |a * b| <= 2^62: fits int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C++ integer division truncates toward zero
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    return np.where(overflow, INT32_MAX, q).astype(np.int32)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent, ties away from zero (0..31)."""
    x64 = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError(f"RoundingDivideByPOT exponent must be in 0..31, got {exponent}")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return ((x64 >> e) + (remainder > threshold)).astype(np.int32)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier for 0 < real < 1: (M0 in [2^30, 2^31), right shift n >= 0)
    with real ~= M0 * 2^-31 * 2^-n."""
    if not 0 < real < 1:
        raise ValueError(f"requantization multiplier {real} is not in (0, 1)")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    q = int(math.floor(mant * (1 << 31) + 0.5))  # std::round: half away (mant > 0)
    if q == 1 << 31:
        q //= 2
        exp += 1
    shift = -exp
    if shift > 31:  # below the int32 range of M0 * 2^-62: the product rounds to zero
        return 0, 0
    return q, shift


def requantize(acc: np.ndarray, real: np.ndarray | float) -> np.ndarray:
    """acc * real for any real > 0 (per channel along axis 1 when ``real`` is 1-D), the TFLite
    way: a left shift first when real >= 1, then the fixed-point multiply and rounding shift.
    Intermediate values saturate to int32."""
    acc = np.asarray(acc, np.int64)
    reals = np.atleast_1d(np.asarray(real, np.float64))
    out = np.empty(acc.shape, np.int32)
    chan = reals.size > 1
    for c, r in enumerate(reals):
        a = acc[:, c] if chan else acc
        left = 0
        while r >= 1:  # M = r * 2^-left < 1
            r /= 2
            left += 1
        m0, n = quantize_multiplier(r)
        a = np.clip(a << left, INT32_MIN, INT32_MAX).astype(np.int32)
        res = multiply_by_quantized_multiplier(a, m0, n) if m0 else np.zeros_like(a)
        if chan:
            out[:, c] = res
        else:
            out[...] = res
    return out


def multiply_by_quantized_multiplier(acc: np.ndarray, m0: np.ndarray | int, shift: np.ndarray | int
                                     ) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier for right shifts: RDBPOT(SRDHM(acc, M0), n)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc, m0), shift)


def shift_round(acc: np.ndarray, k: int) -> np.ndarray:
    """acc * 2^-k rounded half to even (k > 0; the rounding fc's simulation uses everywhere,
    so scale_shift_t's integers are the simulation's), or acc * 2^-k saturated to int32
    (k <= 0). On integers: q = acc >> k (floor), r = acc & (2^k - 1); q + 1 when r > 2^(k-1),
    or r == 2^(k-1) and q is odd."""
    a = np.asarray(acc, np.int64)
    if k <= 0:
        return np.clip(a << -k, INT32_MIN, INT32_MAX).astype(np.int32)  # |a| < 2^32: fits
    if k > 62:
        return np.zeros(a.shape, np.int32)
    q = a >> k
    r = a & ((np.int64(1) << k) - 1)
    half = np.int64(1) << (k - 1)
    q += (r > half) | ((r == half) & (q & 1).astype(bool))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def div_round(num: np.ndarray, den: int) -> np.ndarray:
    """num / den (den > 0) rounded half to even, exactly on integers (floor division, then
    the remainder against den / 2): the integer mean of scale_shift_t's average pools."""
    n = np.asarray(num, np.int64)
    q, r = np.divmod(n, np.int64(den))
    twice = 2 * r
    q += (twice > den) | ((twice == den) & (q & 1).astype(bool))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def int_conv(xq: np.ndarray, x_zp: int, wq: np.ndarray, w_zp: np.ndarray | int = 0, *,
             strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
             group: int) -> np.ndarray:
    """The int32 accumulators of a convolution of integers: sum (q_x - z_x)(q_w - z_w) over
    each window (padding contributes 0, i.e. the zero point), exact through float64 BLAS."""
    from fc.np_ops.registry import call

    x = np.asarray(xq, np.float64) - np.float64(x_zp)
    w = np.asarray(wq, np.float64) - np.asarray(w_zp, np.float64).reshape(-1, *(1,) * (wq.ndim - 1))
    y = call("Conv", x, w, strides=strides, pads=pads, dilations=dilations, group=group)
    return _exact_int32(y)


def int_matmul(aq: np.ndarray, a_zp: int, bq: np.ndarray, b_zp: np.ndarray | int = 0) -> np.ndarray:
    """The int32 accumulators of (q_a - z_a) @ (q_b - z_b), exact through float64 BLAS."""
    a = np.asarray(aq, np.float64) - np.float64(a_zp)
    b = np.asarray(bq, np.float64) - np.asarray(b_zp, np.float64)
    return _exact_int32(a @ b)


def _exact_int32(y: np.ndarray) -> np.ndarray:
    if y.size and np.abs(y).max() > INT32_MAX:
        raise OverflowError(f"int32 accumulator overflow (|acc| up to {np.abs(y).max():.0f})")
    return y.astype(np.int32)
