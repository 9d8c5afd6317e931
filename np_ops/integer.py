"""Integer arithmetic of the true-quantization (``_t``) strategies: gemmlowp's fixed-point
requantization and exact int8 x int8 -> int32 accumulation.

**Requantization** (gemmlowp ``fixedpoint.h``, TFLite ``quantization_util.cc``): a real
multiplier 0 < M < 1 (M = s_in * s_w / s_out) is stored as an int32 ``M0`` in [2^30, 2^31)
and a right shift ``n`` with M = M0 * 2^-31 * 2^-n (``quantize_multiplier``); an int32
accumulator ``acc`` becomes

    RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, M0), n)

- ``SaturatingRoundingDoublingHighMul(a, b)``: the high 32 bits of 2 * a * b, rounded to
  nearest with ties up, towards +inf (nudge +2^30 for a non-negative product, 1 - 2^30 for
  a negative one, then truncating division by 2^31: a negative tie, a * b = -2^30 (2k + 1),
  goes towards zero, so this is floor(a * b / 2^31 + 1/2), not half away from zero);
  INT32_MIN * INT32_MIN, the one overflow, saturates to INT32_MAX.
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

**Fast requantization** (``fast_requantizer``, ``Requantizer``): the same functions in
float64 passes over the float accumulators, per layer, where a stated bound proves every
step exact or irrelevant (past the exact range the value clamps either way); otherwise the
int64 code above runs. Tested against the definitions on Python integers.

**Accumulation.** numpy's integer matmul has no BLAS and is far too slow, so int8 products
are summed in float BLAS: in float32 where every partial sum stays within 2^24 (bounded per
output channel by max|x| * sum|w|; else ``int_conv`` slices the input channels so that each
part does, and adds the parts in float64), else in float64, which is exact: each product
of (q_x - z_x) in [-255, 255] and q_w in [-127, 127] is below 2^15 in magnitude, so every
partial sum of K products is below K * 2^15, far below 2^53 (exactness holds for K < 2^38;
a 3x3 convolution over 2048 channels has K = 18,432).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INT32_MIN", "INT32_MAX", "saturating_rounding_doubling_high_mul",
           "rounding_divide_by_pot", "quantize_multiplier", "multiply_by_quantized_multiplier",
           "quantize_multipliers", "shift_round", "requantize", "add_rescaled", "div_round",
           "div_round_away",
    "ROUNDINGS", "avg_pool_sums",
           "int_conv", "int_matmul", "Requantizer", "fast_requantizer"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 arrays (computed in int64).

    gemmlowp: (a*b + nudge) / 2^31 truncating, nudge = 2^30 (a*b >= 0) or 1 - 2^30. Both
    cases are floor((a*b + 2^30) / 2^31): for a*b < 0, truncation is floor after adding
    2^31 - 1, and 1 - 2^30 + 2^31 - 1 = 2^30. So one add and one arithmetic shift."""
    a64 = np.asarray(a, np.int64)
    b64 = np.asarray(b, np.int64)
    q = (a64 * b64 + np.int64(1 << 30)) >> 31  # |a * b| <= 2^62: fits int64
    if np.any(b64 == INT32_MIN) and np.any(a64 == INT32_MIN):
        q = np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, q)
    return q.astype(np.int32)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent, ties away from zero (0..31).

    gemmlowp: (x >> e) + (remainder > threshold), remainder = x & (2^e - 1), threshold =
    (2^e - 1) >> 1 plus 1 for x < 0. The same integer is (x + 2^(e-1) - [x < 0]) >> e for
    e > 0 (adding half, less one for negatives so that their ties go down), x for e = 0."""
    return _rdbpot64(np.asarray(x, np.int64), exponent).astype(np.int32)


def _rdbpot64(x64: np.ndarray, exponent: np.ndarray | int, inplace: bool = False) -> np.ndarray:
    """``inplace``: ``x64`` is an int64 array the caller gives away (the result overwrites
    it when the shapes allow)."""
    e = np.asarray(exponent, np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError(f"RoundingDivideByPOT exponent must be in 0..31, got {exponent}")
    half = (np.int64(1) << e) >> 1  # 0 for e = 0
    if e.ndim == 0 and int(e) == 0:
        return x64
    nudge = x64 >> 63  # -1 for negatives
    if not np.all(e > 0):
        nudge *= half > 0
    nudge += half
    if inplace and np.broadcast_shapes(x64.shape, nudge.shape) == x64.shape:
        x64 += nudge
        x64 >>= e
        return x64
    return (x64 + nudge) >> e


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


def quantize_multipliers(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quantize_multiplier`` for any real > 0, elementwise: (M0, right shift n, left shift)
    with real ~= M0 * 2^-31 * 2^(left - n); left > 0 only when real >= 1 (then n = 0), as
    TFLite's QuantizeMultiplier splits its signed exponent. M0 = 0 when real < 2^-62 (the
    product of an int32 and M0 * 2^-62 rounds to zero)."""
    r = np.asarray(real, np.float64)
    if np.any(~(r > 0)) or np.any(~np.isfinite(r)):
        raise ValueError(f"requantization multipliers must be finite and > 0, got {r.min()}")
    mant, exp = np.frexp(r)  # r = mant * 2^exp, mant in [0.5, 1)
    q = np.floor(mant * 2.0 ** 31 + 0.5).astype(np.int64)  # exact in float64; half away
    top = q == (1 << 31)
    q = np.where(top, q // 2, q)
    exp = exp.astype(np.int64) + top
    left = np.maximum(exp, 0)
    n = np.maximum(-exp, 0)
    tiny = n > 31
    return np.where(tiny, 0, q), np.where(tiny, 0, n), left


ROUNDINGS = ("gemmlowp", "single")


def requantize(acc: np.ndarray, real: np.ndarray | float, *, rounding: str = "gemmlowp"
               ) -> np.ndarray:
    """acc * real for any real > 0 (per channel along axis 1 when ``real`` is 1-D), the TFLite
    way.

    - ``rounding="gemmlowp"`` (TFLite's default MultiplyByQuantizedMultiplier): a left shift
      first when real >= 1 (saturated to int32), then SaturatingRoundingDoublingHighMul by M0
      and RoundingDivideByPOT by n: two roundings (ties up, then ties away from zero); the first can
      make a tie of the second, so about 2^-(n+1) of the results differ by one from
      round(acc * real) (measured on EfficientNet-Lite0: 0.1-0.4 % of each layer's outputs).
    - ``rounding="single"`` (TFLite built with TFLITE_SINGLE_ROUNDING):
      (acc * M0 + 2^(s-1)) >> s with s = 31 + n - left, in int64: one rounding, half up;
      equal to round(acc * M0 * 2^-s) exactly.

    The result saturates to int32."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r} is not one of {ROUNDINGS}")
    acc = np.asarray(acc)
    if acc.dtype not in (np.int32, np.int64):
        acc = acc.astype(np.int64)
    reals = np.asarray(real, np.float64)
    m0, n, left = quantize_multipliers(reals)
    if rounding == "single" and np.any(31 + n - left < 1):
        raise ValueError(f"requantization multiplier {reals.max()} >= 2^31")
    # In blocks of ~16K values, so that the int64 temporaries stay in cache (the
    # requantization is memory-bound: ~1.8x faster than whole-array passes): per channel,
    # rows of one (image, channel) each with its own multiplier.
    if reals.ndim == 1 and reals.size > 1:
        a = np.ascontiguousarray(acc).reshape(acc.shape[0] * acc.shape[1], -1)
        reps = acc.shape[0]
        m0, n, left = (np.tile(v, reps).reshape(-1, 1) for v in (m0, n, left))
    else:
        a = np.ascontiguousarray(acc).reshape(-1, 1)
        m0, n, left = (np.asarray(v).reshape(()) for v in (m0, n, left))
    out = np.empty(a.shape, np.int32)
    rows = max(1, _BLOCK // max(a.shape[1], 1))
    per_row = np.ndim(m0) > 0
    for r0 in range(0, a.shape[0], rows):
        sl = slice(r0, r0 + rows)
        p = (m0[sl], n[sl], left[sl]) if per_row else (m0, n, left)
        out[sl] = _requantize_block(a[sl], *p, rounding)
    return out.reshape(acc.shape)


_BLOCK = 32768


def add_rescaled(a: np.ndarray, b: np.ndarray, left: int, reals: tuple[float, float, float], *,
                 rounding: str = "gemmlowp") -> np.ndarray:
    """TFLite's integer Add on same-shaped (centred) integers, in cache-sized blocks:
    requantize(requantize(a << left, r_a) + requantize(b << left, r_b), r_out), each
    ``requantize`` with ``rounding`` (the same integers as the three whole-array calls)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r} is not one of {ROUNDINGS}")
    params = [tuple(np.asarray(v).reshape(()) for v in quantize_multipliers(np.float64(r)))
              for r in reals]
    if rounding == "single" and any(31 + n - lf < 1 for _, n, lf in params):
        raise ValueError(f"requantization multiplier {max(reals)} >= 2^31")
    fa, fb = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    out = np.empty(fa.shape, np.int32)
    for i in range(0, fa.size, _BLOCK):
        sl = slice(i, i + _BLOCK)
        ra = _requantize_block(fa[sl].astype(np.int64) << left, *params[0], rounding)
        rb = _requantize_block(fb[sl].astype(np.int64) << left, *params[1], rounding)
        if rounding == "single":  # (the single path clips to int32 already)
            ra += rb
        else:
            ra = ra.astype(np.int32).astype(np.int64) + rb.astype(np.int32)
        out[sl] = _requantize_block(ra, *params[2], rounding)
    return out.reshape(np.shape(a))


def _requantize_block(x: np.ndarray, m0: np.ndarray, n: np.ndarray, left: np.ndarray,
                      rounding: str) -> np.ndarray:
    """``requantize`` on one block (its parameters broadcast against it)."""
    if rounding == "single":
        s = 31 + n - left
        y = np.clip(x, INT32_MIN, INT32_MAX).astype(np.int64)
        y *= m0
        y += np.int64(1) << (s - 1)
        y >>= s  # |a * m0| < 2^62
        return np.clip(y, INT32_MIN, INT32_MAX)
    if np.any(left):
        x = np.clip(x.astype(np.int64) << left, INT32_MIN, INT32_MAX)
    hi = np.multiply(x, m0, dtype=np.int64)  # SRDHM: floor((x * M0 + 2^30) / 2^31)
    hi += np.int64(1 << 30)
    hi >>= 31
    nudge = hi >> 63  # RDBPOT (n in 0..31 from quantize_multipliers): + 2^(n-1) - [hi < 0]
    half = (np.int64(1) << n) >> 1
    if not np.all(n > 0):
        nudge *= half > 0
    nudge += half
    hi += nudge
    hi >>= n
    return hi


def _storage_rows(acc: np.ndarray) -> tuple[np.ndarray, bool, tuple[int, ...] | None]:
    """``acc`` (N, C, ...) as a 2-D array of its storage: (N*H*W, C) rows of channels for a
    channels-last buffer (``by_row`` False: the channel is the column), else (N*C, H*W) rows
    of one (image, channel) each of a C-ordered copy (``by_row`` True); ``perm`` to apply to
    an output buffer of the storage's shape (None: C order)."""
    if acc.ndim > 2:
        perm = (0,) + tuple(range(2, acc.ndim)) + (1,)
        t = acc.transpose(perm)
        if t.flags.c_contiguous:
            return t.reshape(-1, acc.shape[1]), False, perm
        a = np.ascontiguousarray(acc)
        return a.reshape(acc.shape[0] * acc.shape[1], -1), True, None
    return np.ascontiguousarray(acc).reshape(acc.shape[0], -1), False, None


class Requantizer:
    """One layer's requantization and output clamp on exact float accumulators, in float64
    passes over cache-sized blocks, giving the integers of the int64 definitions
    (``requantize`` / ``shift_round``, plus the bias, then the clamp [lo, hi]) bit for bit.
    Built once per layer by ``fast_requantizer``, which proves the float arithmetic exact on
    the layer's numbers (or returns None); called as ``rq(acc)`` with the float32/float64
    array holding a Conv's or Gemm's accumulators (``int_conv(..., exact_float=True)``), it
    returns the output integers (``dtype``) in the accumulators' memory layout.

    Per output channel c, with a = acc + b_c the int32 accumulator (|a| < 2^31 is the caller's
    bound), the steps are, in float64 (every product by a power of two exact):

    - ``gemmlowp``: h = floor(acc * m + (b m + 1/2)) with m = M0 2^-31 is SRDHM(a, M0) =
      floor((a M0 + 2^30) / 2^31); then u = h 2^-n, clamped to [lo, hi], and rounded half
      away from zero as trunc(u + copysign(1/2, u)) (the cast), which is RDBPOT(h, n)
      clamped (rounding is monotone and fixes integers, so clamping first changes nothing).
    - ``single``: floor(acc * M + (b M + 1/2)) with M = M0 2^-(31 + n), clamped first (the
      floor is the cast's truncation when lo >= 0); also gemmlowp's for lo >= 0, with the
      constant b M + 1/2 + 2^-(n+1) (see ``fast_requantizer``).
    - ``pow2``: rint(acc 2^-k + b 2^-k) (half to even), clamped first.

    With ``fold`` False the bias is added first (acc + b, exact: two integers below 2^31)
    and the constant is 1/2."""

    def __init__(self, mode: str, mult: np.ndarray, const: np.ndarray, post: np.ndarray | None,
                 bias: np.ndarray | None, lo: int, hi: int, dtype: np.dtype):
        self.mode = mode
        self.params = [mult, const] + ([] if post is None else [post]) + (
            [] if bias is None else [bias])
        self.has_post, self.has_bias = post is not None, bias is not None
        self.lo, self.hi = float(lo), float(hi)
        self.dtype = np.dtype(dtype)
        self._tiled: dict[int, list[np.ndarray]] = {}

    def _by_row(self, images: int) -> list[np.ndarray]:
        got = self._tiled.get(images)
        if got is None:
            got = self._tiled[images] = [np.tile(p, images).reshape(-1, 1) if p.ndim else p
                                         for p in self.params]
        return got

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        a2, by_row, perm = _storage_rows(acc)
        params = self._by_row(acc.shape[0]) if by_row else self.params
        out = np.empty(a2.shape, self.dtype)
        rows = max(1, _BLOCK // max(a2.shape[1], 1))
        t = np.empty((min(rows, a2.shape[0]), a2.shape[1]))
        s = np.empty_like(t) if self.mode == "gemmlowp" else None
        lo, hi = self.lo, self.hi
        for r0 in range(0, a2.shape[0], rows):
            r1 = min(r0 + rows, a2.shape[0])
            p = [v[r0:r1] if by_row and v.ndim else v for v in params]
            tt = t[: r1 - r0]
            if self.has_bias:
                np.add(a2[r0:r1], p[-1], out=tt)
                tt *= p[0]
            else:
                np.multiply(a2[r0:r1], p[0], out=tt)
            tt += p[1]
            if self.mode == "gemmlowp":
                np.floor(tt, out=tt)
                tt *= p[2]
                np.minimum(tt, hi, out=tt)
                np.maximum(tt, lo, out=tt)
                ss = s[: r1 - r0]
                np.copysign(0.5, tt, out=ss)
                tt += ss  # the cast truncates towards zero: half away from zero
            else:
                np.minimum(tt, hi, out=tt)
                np.maximum(tt, lo, out=tt)
                if self.mode == "pow2":
                    np.rint(tt, out=tt)
                elif lo < 0:  # (for lo >= 0 the cast's truncation is the floor)
                    np.floor(tt, out=tt)
            np.copyto(out[r0:r1], tt, casting="unsafe")
        if perm is None:
            return out.reshape(acc.shape)
        shape = tuple(acc.shape[i] for i in perm)
        inv = tuple(int(i) for i in np.argsort(perm))
        return out.reshape(shape).transpose(inv)


def fast_requantizer(*, bias: np.ndarray | None, lo: int, hi: int, dtype: np.dtype,
                     real: np.ndarray | float | None = None, rounding: str = "gemmlowp",
                     shift: np.ndarray | int | None = None) -> Requantizer | None:
    """The ``Requantizer`` of a layer whose int32 accumulators a = acc + bias cannot overflow
    (the caller's bound), requantized by ``real`` (per channel or one) with ``rounding``, or
    by a rounding shift by ``shift`` (k: acc * 2^-k, ``shift_round``), then clamped to
    [lo, hi] (zero point 0); None when the float64 arithmetic is not proven exact for it
    (the caller then runs the int64 definitions). The proofs, per channel:

    - ``pow2``: acc 2^-k, b 2^-k and their sum a 2^-k are integers below 2^53 times a power
      of two: exact; rint is shift_round's half-to-even rounding; its int32 saturation for
      k < 0 lies outside [lo, hi]. Always exact.
    - ``gemmlowp`` (M0 in [2^30, 2^31), right shift n; no left shift, i.e. real < 1):
      with the bias folded (|b| < 2^21: b m + 1/2 is a multiple of 2^-31 below 2^21 + 1, exact),
      for |a| < R = 2^21 we have |acc| < 2^22, so acc * m (|acc| M0 < 2^53) and the sum
      a m + 1/2 (a multiple of 2^-31 below 2^22) are exact, and so is h; otherwise the bias is
      added first (exact) and R = 2^22 - 1 (|a| M0 < 2^53, a m + 1/2 below 2^22). u = h 2^-n
      clamped to [lo, hi] (|u| <= Q = max(|lo|, |hi|)), plus 1/2, is a multiple of 2^-31
      below Q + 1 < 2^22: exact. Beyond R the float result is within 2^-20 of a m + 1/2, so h and y move by
      at most one, and |y - a M| <= 1 (M = M0 2^-(31+n), two roundings of 1/2): |y| >= R M - 2
      for both, so both clamp to the same bound when R M >= Q + 3 for every channel (the
      condition checked; on ResNet-50, n <= 12 and Q = 128: 2^21 2^-13 = 256 >= 131).
    - ``single`` (s = 31 + n, no left shift): the values that can land in [lo, hi] have
      |a M| <= Q + 4 < 2^qb, so a M + 1/2 is a multiple of 2^-(31+n) below 2^qb: exact when
      qb + 31 + n <= 52, and so are acc * M (|acc| M0 <= |a| M0 + |b| M0 < 2^53 with the bias
      folded when |b| M0 < 2^51, else added first) and the sum; every other value is computed
      within 2^-20, its floor within one, beyond the same bound."""
    lo, hi = int(lo), int(hi)
    q = max(abs(lo), abs(hi))
    b = None if bias is None else np.asarray(bias, np.float64).reshape(-1)
    if shift is not None:
        k = np.asarray(shift, np.int64).reshape(-1)
        if np.any(np.abs(k) > 60):
            return None
        k, b = _channels(k, b)
        e = np.ldexp(1.0, -k)
        const = np.zeros_like(e) if b is None else b * e
        return Requantizer("pow2", _row(e), _row(const), None, None, lo, hi, dtype)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r} is not one of {ROUNDINGS}")
    m0, n, left = quantize_multipliers(np.asarray(real, np.float64).reshape(-1))
    if np.any(left):
        return None
    (m0, n), b = _channels((m0, n), b)
    m0f = m0.astype(np.float64)
    babs = np.zeros_like(m0f) if b is None else np.abs(b)
    if rounding == "single" or lo >= 0:
        # gemmlowp into a clamp at lo >= 0 is one floor too: RDBPOT(h, n) = floor((h +
        # 2^(n-1)) 2^-n) for h >= 0, so with the nested floors y = floor(a M + 1/2 +
        # 2^-(n+1)) (n = 0: floor(a M + 1/2)); for h < 0 both it and RDBPOT are <= 0 and clamp
        # to lo >= 0. Exact under single's bounds.
        if not np.any(int(np.ceil(np.log2(q + 4))) + 31 + n > 52):
            mult = np.ldexp(m0f, -(31 + n))
            fold = bool(np.all(babs * m0f < 2.0 ** 51))
            const = 0.5 if rounding == "single" else 0.5 + np.where(n > 0, np.ldexp(1.0, -(n + 1)), 0.0)
            const = const + (b * mult if fold and b is not None else np.zeros_like(mult))
            return Requantizer("single", _row(mult), _row(const), None,
                               None if fold or b is None else _row(b), lo, hi, dtype)
        if rounding == "single":
            return None
    fold = bool(np.all(babs < 2.0 ** 21))
    radius = 2.0 ** 21 if fold else 2.0 ** 22 - 1
    if np.any(radius * np.ldexp(m0f, -(31 + n)) < q + 3):
        return None
    mult = m0f * 2.0 ** -31
    const = 0.5 + (b * mult if fold and b is not None else np.zeros_like(mult))
    return Requantizer("gemmlowp", _row(mult), _row(const), _row(np.ldexp(1.0, -n)),
                       None if fold or b is None else _row(b), lo, hi, dtype)


def _channels(per, b):
    """The per-channel parameters (an array or a tuple of them) and the bias broadcast to one
    length (the channels)."""
    many = per if isinstance(per, tuple) else (per,)
    c = max([v.size for v in many] + ([] if b is None else [b.size]))
    many = tuple(np.broadcast_to(v, (c,)) for v in many)
    return (many if isinstance(per, tuple) else many[0]), (None if b is None else np.broadcast_to(b, (c,)))


def _row(v: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(v, np.float64).reshape(-1)
    return v.reshape(()) if v.size == 1 else v


def multiply_by_quantized_multiplier(acc: np.ndarray, m0: np.ndarray | int, shift: np.ndarray | int
                                     ) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier for right shifts: RDBPOT(SRDHM(acc, M0), n),
    kept in int64 between the two (M0 >= 0 is never INT32_MIN: no saturation case)."""
    m = np.asarray(m0, np.int64)
    if np.any(m < 0):
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc, m0), shift)
    hi = np.multiply(acc, m, dtype=np.int64)  # in place from here: one int64 array
    hi += np.int64(1 << 30)
    hi >>= 31
    return _rdbpot64(hi, shift, inplace=True).astype(np.int32)


def shift_round(acc: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """acc * 2^-k rounded half to even (k > 0; the rounding fc's simulation uses everywhere,
    so scale_shift_t's integers are the simulation's), or acc * 2^-k saturated to int32
    (k <= 0); ``k`` broadcasts against ``acc`` (per channel: shape (1, C, 1, 1)). On
    integers: q = acc >> k (floor), r = acc & (2^k - 1); q + 1 when r > 2^(k-1), or
    r == 2^(k-1) and q is odd."""
    a = np.asarray(acc, np.int64)
    k = np.asarray(k, np.int64)
    right = np.clip(k, 0, 62)  # |acc| < 2^61: a shift by 62 rounds to 0 like any larger one
    q = a >> right
    r = a & ((np.int64(1) << right) - 1)
    half = (np.int64(1) << np.maximum(right - 1, 0)) * (right > 0)
    q = q + ((right > 0) & ((r > half) | ((r == half) & (q & 1).astype(bool))))
    q = np.clip(q, INT32_MIN, INT32_MAX) << np.clip(-k, 0, 32)  # |q| <= 2^31: fits after 32
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def div_round(num: np.ndarray, den: int) -> np.ndarray:
    """num / den (den > 0) rounded half to even, exactly on integers (floor division, then
    the remainder against den / 2): the integer mean of scale_shift_t's average pools."""
    n = np.asarray(num, np.int64)
    q, r = np.divmod(n, np.int64(den))
    twice = 2 * r
    q += (twice > den) | ((twice == den) & (q & 1).astype(bool))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def div_round_away(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    """num / den (den > 0) rounded half away from zero, as TFLite's integer AveragePool does
    it: (num + den / 2) / den for num > 0, (num - den / 2) / den otherwise, with C's
    truncating division (den / 2 also truncated: for odd den no tie exists)."""
    n = np.asarray(num, np.int64)
    d = np.asarray(den, np.int64)
    half = d // 2
    t = np.where(n > 0, n + half, n - half)
    q = np.abs(t) // d * np.sign(t)
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def avg_pool_sums(x: np.ndarray, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], ceil_mode: int, count_include_pad: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The int64 window sums of integers ``x`` (already minus the zero point, so padding is 0)
    and the (Ho, Wo) map of the counts AveragePool divides them by (fc.np_ops.nn's rule:
    input positions, or input + pads with count_include_pad, never a ceil_mode overhang)."""
    from fc.np_ops.nn import _pad2d, _pool_geometry, _window_reduce

    x = np.asarray(x, np.int64)
    ho, wo, eh, ew = _pool_geometry("AveragePool", x, kernel_shape, strides, pads, (1, 1),
                                    ceil_mode)
    xp = _pad2d(x, pads[0], pads[1], pads[2] + eh, pads[3] + ew, 0)
    sums = _window_reduce(xp, np.add, kernel_shape, strides, (1, 1), ho, wo)
    ones = np.ones((1, 1) + x.shape[2:], np.int64)
    inside = _pad2d(ones, pads[0], pads[1], pads[2], pads[3], 1 if count_include_pad else 0)
    inside = _pad2d(inside, 0, 0, eh, ew, 0)
    counts = _window_reduce(inside, np.add, kernel_shape, strides, (1, 1), ho, wo)[0, 0]
    return np.ascontiguousarray(sums), counts


F32_EXACT = 2 ** 24
"""Every integer up to 2^24 in magnitude is a float32, so is every partial sum of integer
products while the sum of their magnitudes stays within it."""


def _exact_float(wq: np.ndarray, w_zp: np.ndarray | int) -> np.ndarray:
    """The (centred) integer weights as float32 (a float32/float64 array of integers with
    zero point 0 is used as it is)."""
    if wq.dtype in (np.float32, np.float64) and not np.any(w_zp):
        return wq
    zp = np.asarray(w_zp, np.float32)
    return np.asarray(wq, np.float32) - (zp.reshape(-1, *(1,) * (wq.ndim - 1)) if zp.ndim else zp)


def _int_max(xq: np.ndarray, zp: float) -> float:
    """max |xq - zp| (0 for an empty array): two integer reductions for integer arrays (no
    float copy), else on the values."""
    if xq.size == 0:
        return 0.0
    if np.issubdtype(xq.dtype, np.integer):
        return float(max(int(xq.max()) - zp, zp - int(xq.min()), 0))
    return float(np.abs(np.asarray(xq, np.float64) - zp).max())


def _centred_float32(xq: np.ndarray, zp: float) -> np.ndarray:
    """(xq - zp) as float32 (exact: |xq - zp| <= 2^16), in ``xq``'s memory order (an NCHW view
    of a channels-last buffer stays one)."""
    x = xq.astype(np.float32)  # order "K"
    if zp:
        x -= np.float32(zp)
    return x


def int_conv(xq: np.ndarray, x_zp: int, wq: np.ndarray, w_zp: np.ndarray | int = 0, *,
             strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
             group: int, cache: dict | None = None, exact_float: bool = False) -> np.ndarray:
    """The int32 accumulators of a convolution of integers: sum (q_x - z_x)(q_w - z_w) over
    each window (padding contributes 0, i.e. the zero point), exact through float BLAS.

    float32 when every partial sum is exact in it: each partial sum of output channel c is
    a sum of some of its products, so its magnitude is at most max|x| * S_c with S_c =
    sum |w| over the channel's taps; one float32 convolution when max|x| * max_c S_c <= 2^24
    (every integer up to 2^24 is a float32, and so is each partial sum, in whatever order and
    grouping BLAS adds them, FMA or not); otherwise, for group 1, over slices of the input
    channels that each meet the (coarser) bound K_slice * max|x| * max|w| < 2^24, the exact
    float32 parts summed in float64; else (grouped, wide K) in float64 (exact for K < 2^38,
    see the module docstring). ``cache``: a dict kept by the caller for this weight (its
    max |w|, max S_c and channel slices are computed once). ``exact_float``: return the
    accumulators as the float array that holds them exactly (float32 or float64, in the
    convolution's output layout: an NCHW view of a channels-last buffer for group 1) instead
    of int32."""
    from fc.np_ops.registry import call

    cache = {} if cache is None else cache

    x = _centred_float32(xq, x_zp)
    w = _exact_float(wq, w_zp)
    kw = dict(strides=strides, pads=pads, dilations=dilations, group=group)
    xm = _int_max(xq, x_zp)
    wm = cache.get("max")
    if wm is None:
        wm = cache["max"] = float(np.abs(w).max(initial=0.0))
        cache["smax"] = float(np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(1).max(initial=0.0))
    taps = int(np.prod(w.shape[2:]))
    if xm * cache["smax"] <= F32_EXACT:
        y = call("Conv", x, w.astype(np.float32, copy=False), **kw)
        return y if exact_float else y.astype(np.int32)
    per = int((F32_EXACT - 1) // max(xm * wm * taps, 1.0))
    if group == 1 and per >= 16:
        w32 = w.astype(np.float32, copy=False)
        acc = None
        for c0 in range(0, w.shape[1], per):
            ws = cache.get((c0, per))
            if ws is None:
                ws = cache[(c0, per)] = np.ascontiguousarray(w32[:, c0:c0 + per])
            part = call("Conv", x[:, c0:c0 + per].copy(order="K"), ws, **kw)
            acc = part.astype(np.float64) if acc is None else acc + part
        return acc if exact_float else _exact_int32(acc)
    y = call("Conv", x.astype(np.float64), w.astype(np.float64, copy=False), **kw)
    return y if exact_float else _exact_int32(y)


def int_matmul(aq: np.ndarray, a_zp: int, bq: np.ndarray, b_zp: np.ndarray | int = 0, *,
               cache: dict | None = None, exact_float: bool = False) -> np.ndarray:
    """The int32 accumulators of (q_a - z_a) @ (q_b - z_b), exact through float BLAS: one
    float32 product when max|a| * max_j sum_k |b_kj| <= 2^24 (``int_conv``'s bound), else
    over slices of K that meet K_slice * max|a| * max|b| < 2^24, their parts summed in
    float64. ``cache`` and ``exact_float`` as for ``int_conv``."""
    cache = {} if cache is None else cache
    a = _centred_float32(np.asarray(aq), a_zp)
    b = bq if bq.dtype in (np.float32, np.float64) and not np.any(b_zp) else (
        np.asarray(bq, np.float32) - np.asarray(b_zp, np.float32))
    am = _int_max(np.asarray(aq), a_zp)
    bm = cache.get("max")
    if bm is None:
        bm = cache["max"] = float(np.abs(b).max(initial=0.0))
        cache["smax"] = float(np.abs(b.astype(np.float64)).sum(axis=0).max(initial=0.0))
    b32 = b.astype(np.float32, copy=False)
    per = int((F32_EXACT - 1) // max(am * bm, 1.0))
    if am * cache["smax"] <= F32_EXACT or per >= a.shape[-1]:
        y = a @ b32
        return y if exact_float else y.astype(np.int32)
    acc = None
    for k0 in range(0, a.shape[-1], per):
        part = a[..., k0:k0 + per] @ b32[k0:k0 + per]
        acc = part.astype(np.float64) if acc is None else acc + part
    return acc if exact_float else _exact_int32(acc)


def _exact_int32(y: np.ndarray) -> np.ndarray:
    if y.size and np.abs(y).max() > INT32_MAX:
        raise OverflowError(f"int32 accumulator overflow (|acc| up to {np.abs(y).max():.0f})")
    return y.astype(np.int32)
