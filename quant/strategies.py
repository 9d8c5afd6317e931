"""Quantization strategies: how a calibrated range (or a weight tensor) becomes ``QParams``.

Each strategy is one class here with its maths in the docstring; ``STRATEGIES`` lists them by
the config's name. A calibration entry gives a tensor's ``min``, ``max`` and the method's
``threshold`` T (an absolute value: ``max`` -> max|x|, ``entropy`` -> the KL-optimal clip...).
``b`` is the bit width (8 by default, 2..16). Biases are always int32 at scale
``s_in * s_w`` (per output channel with per-channel weights), as TFLite and gemmlowp define
them, so the integer kernels add them to the int32 accumulator as they are.

The ``_t`` names are the same maths executed in integers (``integer=True``): the quantized IR
is identical, only the kernels that run it differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fc.errors import FcError
from fc.quant.qparams import INT32_RANGE, INT64_RANGE, QParams

__all__ = ["Strategy", "Range", "STRATEGIES", "get_strategy", "bias_qparams"]


@dataclass(frozen=True)
class Range:
    """What calibration knows about one tensor."""

    min: float
    max: float
    threshold: float


def _reduce_axes(w: np.ndarray, axis: int | None) -> tuple[int, ...] | None:
    return None if axis is None else tuple(i for i in range(w.ndim) if i != axis % w.ndim)


def _absmax(w: np.ndarray, axis: int | None) -> np.ndarray:
    return np.max(np.abs(w), axis=_reduce_axes(w, axis)).astype(np.float32)


def _safe(t: np.ndarray) -> np.ndarray:
    """A zero range (an all-zero tensor or channel) gets scale 1: every value quantizes to 0
    exactly, and the scale stays positive."""
    t = np.asarray(t, np.float32)
    return np.where(t > 0, t, np.float32(1.0)).astype(np.float32)


class Strategy:
    """Base: the integer ranges for ``bits`` and the two parameter rules."""

    name = ""
    integer = False   # True for the _t strategies (integer kernels)
    quantizes = True  # False for null (the float baseline)
    symmetric = True
    unsigned = False  # non-negative activations in [0, 2^b - 1] (zero point still 0)

    def __init__(self, *, unsigned: bool = False):
        self.unsigned = unsigned

    def act_range(self, bits: int, non_negative: bool = False) -> tuple[int, int]:
        """Signed [-2^(b-1), 2^(b-1) - 1]; for a tensor known to be non-negative (after a
        ReLU/ReLU6) with ``unsigned`` strategies, [0, 2^b - 1]: the sign bit is spent on range."""
        if non_negative and self.unsigned:
            return 0, 2 ** bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def weight_range(self, bits: int) -> tuple[int, int]:
        """Narrow: [-(2^(b-1) - 1), 2^(b-1) - 1], so -q is always representable."""
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1

    def activation(self, r: Range, bits: int, non_negative: bool = False) -> QParams:
        raise NotImplementedError

    def weight(self, w: np.ndarray, axis: int | None, bits: int) -> QParams:
        raise NotImplementedError

    def widen_weight(self, w: np.ndarray, p: QParams, smallest: np.ndarray) -> QParams:
        """``p`` (from ``weight``) with every scale at least ``smallest`` (float64, p's
        shape): the symmetric rule, zero point 0, scale max(s, smallest) rounded up to
        float32."""
        s = np.maximum(np.asarray(p.scale, np.float64), smallest)
        s32 = s.astype(np.float32)
        s32 = np.where(s32.astype(np.float64) < s, np.nextafter(s32, np.float32(np.inf)), s32)
        return QParams(s32.astype(np.float32), p.zero_point, p.qmin, p.qmax, p.axis)


class Null(Strategy):
    """``null``: no quantization, the float baseline every report compares against."""

    name = "null"
    quantizes = False


class SymmetryMax(Strategy):
    """``symmetry_max``: symmetric, zero point 0, scale s = T / (2^(b-1) - 1).

    Activations: q in [-2^(b-1), 2^(b-1) - 1] (int8: [-128, 127]), T from the calibration
    table; with ``unsigned`` (config ``qconfig.unsigned``), a tensor the graph proves
    non-negative (a ReLU/ReLU6 output, ``fc.ir.activations.is_non_negative``) uses
    [0, 2^b - 1] (uint8) and s = T / (2^b - 1), still with zero point 0.

    Weights: T = max|w| per tensor or per output channel, q in [-(2^(b-1) - 1), 2^(b-1) - 1]
    (int8: [-127, 127]), so the largest weight maps to exactly +-127.
    """

    name = "symmetry_max"

    def activation(self, r: Range, bits: int, non_negative: bool = False) -> QParams:
        qmin, qmax = self.act_range(bits, non_negative)
        s = _safe(np.float32(r.threshold) / np.float32(qmax))
        return QParams(s, np.zeros((), np.int64), qmin, qmax)

    def weight(self, w: np.ndarray, axis: int | None, bits: int) -> QParams:
        qmin, qmax = self.weight_range(bits)
        s = _safe(_absmax(w, axis) / np.float32(qmax))
        return QParams(s, np.zeros(s.shape, np.int64), qmin, qmax, axis)


class SymmetryMaxT(SymmetryMax):
    """``symmetry_max_t``: symmetry_max executed in integers (int8 x int8 -> int32, then
    gemmlowp fixed-point requantization; see ``fc.np_ops.integer``)."""

    name = "symmetry_max_t"
    integer = True


def _pow2_shift(t: np.ndarray, qmax: int) -> np.ndarray:
    """The largest f with T * 2^f <= qmax: s = 2^-f is the finest power-of-two scale that
    does not clip T (T = 0 gives f = 0)."""
    t = np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):
        f = np.floor(np.log2(qmax / np.where(t > 0, t, qmax)))
    # log2 may be off by one ulp at exact powers of two: fix it with an exact check.
    f = np.where(t * np.exp2(f) > qmax, f - 1, f)
    f = np.where(t * np.exp2(f + 1) <= qmax, f + 1, f)
    return f.astype(np.int64)


class ScaleShift(Strategy):
    """``scale_shift``: symmetric with power-of-two scales s = 2^-f (the FPGA's arithmetic:
    every rescale is a shift).

    ``pow2='ceil'`` (default): f is the largest integer with T * 2^f <= qmax, so T is never
    clipped (s is the smallest power of two >= T / qmax). ``pow2='mse'`` (weights): f or f + 1,
    whichever gives the smaller squared error on the tensor (f + 1 clips the largest values
    but halves the step). Activations take T from the table (use calibration method ``mse``
    for a least-error T). Ranges as ``symmetry_max``; biases int32 at s_in * s_w = 2^-(f_in +
    f_w), and a requantization by s_in * s_w / s_out is a shift by f_in + f_w - f_out.
    """

    name = "scale_shift"

    def __init__(self, pow2: str = "ceil", *, unsigned: bool = False):
        super().__init__(unsigned=unsigned)
        if pow2 not in ("ceil", "mse"):
            raise FcError(f"scale_shift: pow2 must be 'ceil' or 'mse', got {pow2!r}")
        self.pow2 = pow2

    @staticmethod
    def _params(f: np.ndarray, qmin: int, qmax: int, axis: int | None) -> QParams:
        f = np.asarray(f, np.int64)
        s = np.exp2(-f.astype(np.float64)).astype(np.float32)
        return QParams(s, np.zeros(s.shape, np.int64), qmin, qmax, axis, shift=f.astype(np.int8))

    def activation(self, r: Range, bits: int, non_negative: bool = False) -> QParams:
        qmin, qmax = self.act_range(bits, non_negative)
        return self._params(_pow2_shift(np.float64(r.threshold), qmax), qmin, qmax, None)

    def weight(self, w: np.ndarray, axis: int | None, bits: int) -> QParams:
        qmin, qmax = self.weight_range(bits)
        f = _pow2_shift(_absmax(w, axis), qmax)
        if self.pow2 == "mse":
            from fc.quant.qparams import fake_quant

            errs = []
            for cand in (f, f + 1):
                p = self._params(cand, qmin, qmax, axis)
                d = (fake_quant(w, p) - w).astype(np.float64) ** 2
                errs.append(d.sum(axis=_reduce_axes(w, axis)))
            f = np.where(errs[1] < errs[0], f + 1, f)
        return self._params(f, qmin, qmax, axis)

    def widen_weight(self, w: np.ndarray, p: QParams, smallest: np.ndarray) -> QParams:
        """The power of two 2^-f with f = min(f, floor(-log2(smallest))) (exactly: the
        largest f with 2^-f >= smallest)."""
        f = np.asarray(p.shift, np.int64)
        top = np.floor(-np.log2(smallest)).astype(np.int64)
        top = np.where(np.exp2(-top.astype(np.float64)) < smallest, top - 1, top)
        return self._params(np.minimum(f, top), p.qmin, p.qmax, p.axis)


class ScaleShiftT(ScaleShift):
    """``scale_shift_t``: scale_shift executed in integers, every requantization one rounding
    right shift (half to even, ``fc.np_ops.integer.shift_round``)."""

    name = "scale_shift_t"
    integer = True


class MinMax(Strategy):
    """``minmax``: asymmetric affine uint8 exactly as TensorFlow's FakeQuantWithMinMaxVars
    (num_bits=b, narrow_range=False) computes its parameters, in float32:

        [lo, hi] = [min(m, 0), max(M, 0)]     (the range widened to include 0)
        s = (hi - lo) / (2^b - 1)
        z = clamp(round_half_away(-lo / s), 0, 2^b - 1)   (the nudged zero point: 0 is exact)

    Activations: [m, M] = [max(min, -T), min(max, T)] from the table (the method's threshold
    clips both sides; with ``max`` it is the observed range). Weights: per tensor or per
    output channel min/max of w.
    """

    name = "minmax"
    symmetric = False

    def act_range(self, bits: int, non_negative: bool = False) -> tuple[int, int]:
        return 0, 2 ** bits - 1

    def weight_range(self, bits: int) -> tuple[int, int]:
        return 0, 2 ** bits - 1

    def _params(self, lo: np.ndarray, hi: np.ndarray, bits: int, axis: int | None) -> QParams:
        qmin, qmax = self.act_range(bits)
        lo = np.minimum(np.asarray(lo, np.float32), np.float32(0))
        hi = np.maximum(np.asarray(hi, np.float32), np.float32(0))
        s = _safe((hi - lo) / np.float32(qmax - qmin))
        zf = np.float32(qmin) - lo / s
        z = np.clip(np.sign(zf) * np.floor(np.abs(zf) + np.float32(0.5)), qmin, qmax)
        return QParams(s, z.astype(np.int64), qmin, qmax, axis)

    def activation(self, r: Range, bits: int, non_negative: bool = False) -> QParams:
        lo = max(r.min, -r.threshold)
        hi = min(r.max, r.threshold)
        return self._params(np.float32(lo), np.float32(hi), bits, None)

    def weight(self, w: np.ndarray, axis: int | None, bits: int) -> QParams:
        ax = _reduce_axes(w, axis)
        return self._params(np.min(w, axis=ax), np.max(w, axis=ax), bits, axis)

    def widen_weight(self, w: np.ndarray, p: QParams, smallest: np.ndarray) -> QParams:
        """The range [min(w, 0), max(w, 0)] widened upwards until s >= smallest (the zero
        point nudged again from the same lower end)."""
        ax = _reduce_axes(w, p.axis)
        lo = np.minimum(np.min(w, axis=ax), 0).astype(np.float64)
        hi = np.maximum(np.max(w, axis=ax), 0).astype(np.float64)
        need = lo + np.asarray(smallest, np.float64) * (p.qmax - p.qmin) * (1 + 2 ** -20)
        return self._params(lo.astype(np.float32), np.maximum(hi, need).astype(np.float32),
                            (p.qmax - p.qmin + 1).bit_length() - 1, p.axis)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Null, MinMax, SymmetryMax, SymmetryMaxT, ScaleShift, ScaleShiftT)
}


def get_strategy(name: str, *, pow2: str = "ceil", unsigned: bool = False) -> Strategy:
    """The strategy called ``name`` with its options (``pow2``: scale_shift's rule for
    weights; ``unsigned``: the symmetric strategies' unsigned range for non-negative
    activations)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise FcError(f"unknown quantization strategy {name!r}; fc has "
                      f"{', '.join(STRATEGIES)}") from None
    if issubclass(cls, ScaleShift):
        return cls(pow2, unsigned=unsigned)
    return cls(unsigned=unsigned) if cls.symmetric and cls.quantizes else cls()


def bias_qparams(s_in: np.ndarray, s_w: np.ndarray, axis: int | None, *, wide: bool = False
                 ) -> QParams:
    """int32 at scale s_in * s_w (computed in float64, stored float32), zero point 0; int64
    when ``wide`` (more than 8 + 8 bits of input and weight: at 16 x 16 bits s_in * s_w is so
    small that an ordinary bias overflows int32, as the accumulator would)."""
    s = (np.float64(s_in) * np.asarray(s_w, np.float64)).astype(np.float32)
    s = np.where(s > 0, s, np.float32(np.finfo(np.float32).tiny)).astype(np.float32)
    rng = INT64_RANGE if wide else INT32_RANGE
    return QParams(s, np.zeros(s.shape, np.int64), *rng, axis if s.ndim else None)

