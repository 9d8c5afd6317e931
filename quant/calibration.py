"""Calibration: streaming statistics of activations, threshold methods, the table.

``Calibrator`` is an executor observer: after each node it folds the outputs it tracks into
a ``TensorStats`` (min, max, and for the histogram methods a histogram) and lets the arrays
go, so memory does not depend on the number of images. The folding runs on one worker thread
beside the executor, behind a queue of at most ``Calibrator.QUEUE_DEPTH`` arrays.

Cost, measured on ResNet-50 (16.8 M calibrated values per image; ns per value on one core,
the tensors read from memory, ``benchmarks/bench_histogram.py``, 2026-12-03): the counting
runs in C where it was built (``quant/_histogram.c``, ``fc.quant._histogram``; DEVELOPERS.md
"Compiled code"): one pass per 32K chunk takes the chunk's min and max and the bins of 16
values at a time (AVX-512; 8 with AVX2), counts the bin holding zero with a popcount (half
the values of a ReLU output) and increments the others into 8 interleaved sub-histograms
(repeated increments of one bin do not wait on each other's store); a chunk past the range
is taken back out (the same bins decremented) and counted again after the growth, so the
bins are numpy's to the bit. Xeon @ 2.8 GHz (AVX-512), whole tensors: ~0.5 ns per value on
ReLU outputs and ~0.75 on signed ones on a quiet core, 0.56-0.84 and 0.80-1.08 beside
another engineer's load (numpy's loop there: 3.1-4.2 and 2.7-4.6); inside a calibration
beside the executor ~0.95 (its thread's CPU time), ~0.15-0.2 of a float forward pass. numpy's
loop, the definition and the fallback without a compiler: ~2.2-2.6 ns per value on a quiet
core (per 32K chunk: its min, the index ``floor(x * (1 / width))`` in one to three ufunc
passes, ``np.bincount`` ~1.3 ns, which is numpy's only counting primitive), ~0.55 of a
float pass. min and max alone (the first batch, method ``max``): ~0.4 ns per value,
memory-bound, in C or numpy.

The histogram is over signed values on a symmetric range [-A, A] with an even number of
bins of fixed width (the zero edge is a bin edge, so it folds into a histogram of |x|).
The first batch fixes the width (2 * max|x| / num_bins); a later batch that exceeds A adds
whole bins on both sides, so counts are never re-binned approximately (onnxruntime's
``HistogramCollector`` grows the same way). Past ``MAX_BINS`` adjacent pairs are merged
(exact, the width doubles).

Methods, each giving an absolute threshold T (``Range.threshold``):

- ``max``: T = max|x|.
- ``percentile``: the ``percentile`` (99.99 by default) of |x|, interpolated inside its bin.
- ``entropy``: TensorRT's KL-divergence threshold as MXNet and onnxruntime implement it: for
  each candidate window of 2i + 1 bins around zero (outliers folded into the end bins), the
  reference p is compared with its quantization q into ``quantized_bins`` groups (each
  group's mass spread evenly over the group's bins where p is non-zero); both are smoothed
  (zeros get 1e-4 of mass, taken from the non-zero bins), T = (i + 1) * width of the window
  with the least KL(p || q). Their integer truncation of q is kept, so fc's thresholds
  agree with onnxruntime's ``EntropyCalibrater`` on the same data (the tests hold it to one
  bin).
- ``mse``: the T that minimizes the expected squared error of symmetric b-bit quantization
  (step T / (2^(b-1) - 1), values above T clipped) over the histogram's bin centres
  (candidates T = k * width; prefix sums per quantization level, ``_mse``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.np_ops._parallel import parallel_for
from fc.quant.strategies import Range

try:  # the counting kernel in C (quant/_histogram.c); optional at install (setup.py)
    import fc.quant._histogram as _histogram
except ImportError as e:
    _histogram = None
    _C_MISSING = f"{e}; pip builds it where a C compiler is"
else:  # its scalar loop (no AVX2 on this CPU) is slower than numpy's
    _C_MISSING = "" if _histogram.ISA != "generic" else (
        "fc.quant._histogram has no vector loop for this CPU (AVX2 or AVX-512)")
_C = None if _C_MISSING else _histogram  # the kernel in use (None: numpy's loop)

__all__ = ["METHODS", "TensorStats", "Calibrator", "CalibrationTable", "threshold",
           "DEFAULT_BINS", "MAX_BINS", "histogram_kernel"]

METHODS = ("max", "percentile", "entropy", "mse")
HISTOGRAM_METHODS = frozenset({"percentile", "entropy", "mse"})
DEFAULT_BINS = 2048
MAX_BINS = 1 << 16
TABLE_FORMAT = "fc-calibration"


class TensorStats:
    """min, max and (optionally) a symmetric histogram of one tensor, updated per batch."""

    __slots__ = ("min", "max", "count", "hist", "width", "num_bins", "_zeros")

    def __init__(self, num_bins: int = DEFAULT_BINS, histogram: bool = True):
        if num_bins < 2 or num_bins % 2:
            raise ValueError(f"num_bins must be even and >= 2, got {num_bins}")
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.num_bins = num_bins if histogram else 0
        self.hist: np.ndarray | None = None
        self.width = 0.0
        self._zeros = 0  # values seen while every value so far was 0 (no width yet)

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    @property
    def half_range(self) -> float:
        """A: the histogram covers [-A, A]."""
        return 0.0 if self.hist is None else self.width * (len(self.hist) // 2)

    def update(self, x: np.ndarray, parallel: bool = True) -> None:
        """Fold one batch of values in. ``parallel``: a large array's binning is split over
        fc's thread pool (the same bins; False for a caller that is itself a worker)."""
        x = np.asarray(x)
        if x.size == 0:
            return
        self.count += x.size
        if not self.num_bins or self.hist is None:
            # the first batch fixes the bin width from its own max|x|: a whole-array pass
            lo, hi = _minmax(x)
            self._extend(lo, hi)
            if not self.num_bins:
                return
            amax = max(-lo, hi)
            if amax == 0:
                self._zeros += x.size
                return
            self.width = 2 * amax / self.num_bins
            self.hist = np.zeros(self.num_bins, np.int64)
            if self._zeros:  # the all-zero batches seen before: their bin is [0, width)
                self.hist[self.num_bins // 2] += self._zeros
            known = lo < 0
        else:
            known = None  # min and max per chunk, while the chunk is in cache
        # order "K": the executor's channels-last views ravel without a copy
        self._bin(x.ravel(order="K"), known, parallel)

    def _extend(self, lo: float, hi: float) -> None:
        _check_finite(lo, hi)
        if lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi

    def _grow(self, amax: float) -> None:
        """Whole bins on both sides until [-A, A] holds amax (merging pairs past MAX_BINS)."""
        k = math.ceil((amax - self.half_range) / self.width)
        self.hist = np.pad(self.hist, k)
        while len(self.hist) > MAX_BINS:
            self._merge_pairs()

    def _bin(self, x: np.ndarray, signed: bool | None, parallel: bool = True) -> None:
        """hist[n/2 + floor(x * float32(1 / width))] += 1 for every x (end values clamp into
        the end bins), chunk by chunk so the index array stays in cache (``_count``).
        ``signed`` None: each chunk's min and max are taken here, while it is in cache, and
        the range grows when a chunk exceeds it; otherwise they are known for the whole array.

        Large arrays are split over fc's thread pool (the C kernel, numpy's ufunc loops and
        bincount's counting loop release the GIL): each part counts into its own histogram on the same
        bin grid (bins k * width), growing its own range by whole bins; the parts are then
        centred and added, which gives the bins the sequential loop gives. A part whose range
        would pass MAX_BINS gives up, and the array is counted sequentially (with merges)."""
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        n_chunks = -(-x.size // _CHUNK)
        if n_chunks < 4 or not parallel:
            self._bin_sequential(x, signed)
            return
        width, n0 = self.width, len(self.hist)
        inv = np.float32(1 / width)
        c_inv = _c_inv(width) if _C is not None else None
        parts: dict[int, tuple[np.ndarray, float, float]] = {}

        def work(c0: int, c1: int) -> None:
            loc = np.zeros(n0, np.int64)
            lo_all, hi_all = math.inf, -math.inf
            if c_inv is not None:
                loc, lo_all, hi_all = _work_c(x[c0 * _CHUNK:c1 * _CHUNK], loc, c_inv, width,
                                              signed is None)
                parts[c0] = (loc, lo_all, hi_all)
                return
            for ci in range(c0, c1):
                c = x[ci * _CHUNK:(ci + 1) * _CHUNK]
                neg = signed
                if neg is None:
                    loc, lo, hi = _fit_part(loc, c, width)
                    lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
                    neg = lo < 0
                _count(loc, c, inv, neg)
            parts[c0] = (loc, lo_all, hi_all)

        try:
            parallel_for(work, n_chunks, x.nbytes)
        except _TooWide:
            self._bin_sequential(x, signed)
            return
        n = max(len(loc) for loc, _, _ in parts.values())
        if n > len(self.hist):
            self.hist = np.pad(self.hist, (n - len(self.hist)) // 2)
        for loc, lo, hi in parts.values():
            if signed is None:
                self._extend(lo, hi)
            k = (n - len(loc)) // 2
            self.hist[k:k + len(loc)] += loc

    def _bin_sequential(self, x: np.ndarray, signed: bool | None) -> None:
        """``_bin`` on the calling thread: the C kernel's ``_bin_c`` when it is built, else
        numpy's loop below, chunk by chunk (the bins of ``_count``). With
        ``signed`` None each chunk's min is taken (it picks the index path, and a min below
        the range grows it) but not its max: the top bin a chunk reaches is the length of its
        ``np.bincount``, and its exact max is taken only when that bin is within one of the
        running max's bin (a new max can only be there) or past the range, which then grows
        (whole bins, or merged pairs past ``MAX_BINS``) and the chunk is counted again."""
        if _C is not None and _c_inv(self.width) is not None:
            self._bin_c(x, signed is None)
            return
        start, size = 0, x.size
        grid = None
        while start < size:
            if grid is None:  # (re)read the bin grid: at the start and after a growth
                hist, width = self.hist, self.width
                inv = np.float32(1 / width)
                n = len(hist)
                half = n // 2
                half_range = width * half
                top = self._top_bin(inv, half) if signed is None else n + 1
                grid = True
            c = x[start:start + _CHUNK]
            if signed is None:
                lo = float(c.min())
                if not lo >= -half_range:  # below the range, or NaN
                    self._grow_to(lo, float(c.max()))
                    grid = None
                    continue
                if lo < self.min:
                    self.min = lo
                neg = lo < 0
            else:
                neg = signed
            idx, origin = _indices(c, inv, half, neg)
            try:
                counts = np.bincount(idx)
            except ValueError:  # a negative index: inf, NaN or past intp (cast to its least)
                self._grow_to(float(c.min()), float(c.max()))
                grid = None
                continue
            k = len(counts)
            if origin + k >= top:  # the chunk's top bin (origin + k - 1) is >= top - 1
                hi = float(c.max())
                if not hi <= half_range:  # past the range
                    self._grow_to(self.min, hi)
                    grid = None
                    continue
                if hi > self.max:
                    self.max = hi
                    top = self._top_bin(inv, half)
            _place(hist, counts, origin)
            start += c.size

    def _bin_c(self, x: np.ndarray, check: bool) -> None:
        """``_bin_sequential``'s bins, min and max with the C kernel (``_histogram.count``):
        with ``check`` it takes each chunk's min and max in the pass that counts it and
        stops, the chunk uncounted, at the first chunk that has a NaN or passes the range;
        that chunk's min and max (numpy's) then grow the range (or raise) as they do in the
        numpy loop, and the count goes on from it on the new grid."""
        start = 0
        while True:
            stop, lo, hi = _C.count(x[start:], self.hist, _c_inv(self.width), self.half_range,
                                    _CHUNK if check else 0)
            if lo <= hi:  # some chunk was counted (check only)
                self._extend(lo, hi)
            start += stop
            if start >= x.size:
                return
            c = x[start:start + _CHUNK]
            self._grow_to(float(c.min()), float(c.max()))

    def _grow_to(self, lo: float, hi: float) -> None:
        self._extend(lo, hi)  # raises on a non-finite value
        if not max(-lo, hi) > self.half_range:
            raise AssertionError(f"no growth for [{lo}, {hi}] in +-{self.half_range}")
        self._grow(max(-lo, hi))

    def _top_bin(self, inv: np.float32, half: int) -> int:
        """The bin of the running max (as ``_count`` computes it); -2 before the first value
        (every chunk then takes its exact max)."""
        if self.max == -math.inf:
            return -2
        return half + math.floor(float(np.float32(self.max) * inv))

    def _merge_pairs(self) -> None:
        h = self.hist
        if len(h) % 4:  # keep zero on a merged edge: one more bin each side first
            h = np.pad(h, 1)
        self.hist = h.reshape(-1, 2).sum(axis=1)
        self.width *= 2

    def folded(self) -> np.ndarray:
        """Histogram of |x|: bin k covers [k * width, (k + 1) * width)."""
        assert self.hist is not None
        half = len(self.hist) // 2
        return self.hist[half:] + self.hist[:half][::-1]


_CHUNK = 1 << 15  # elements binned at a time: the scratch (float32 + intp) stays in L2
_scratch = threading.local()


_MINMAX_CHUNK = 1 << 16


def _minmax(x: np.ndarray) -> tuple[float, float]:
    """``x.min()`` and ``x.max()`` with one pass over memory: both of each 256 KiB chunk while
    it is in cache (a NaN propagates, as in ``x.min()``); order "K" as the binning reads."""
    r = x.ravel(order="K")
    if _C is not None and r.dtype == np.float32:
        return _C.minmax(r)
    n = -(-r.size // _MINMAX_CHUNK)
    if n <= 2:
        return float(r.min()), float(r.max())
    lo, hi = np.empty(n, r.dtype), np.empty(n, r.dtype)
    for i in range(n):
        c = r[i * _MINMAX_CHUNK:(i + 1) * _MINMAX_CHUNK]
        lo[i] = c.min()
        hi[i] = c.max()
    return float(lo.min()), float(hi.max())


class _TooWide(Exception):
    """A part's own range passed MAX_BINS (count that array sequentially, with merges)."""


def histogram_kernel() -> str:
    """Which loop counts the histograms: ``"C (avx512)"`` (the instruction set of
    ``fc.quant._histogram``'s loops) or ``"numpy (fallback: why)"``."""
    return f"C ({_C.ISA})" if _C is not None else f"numpy (fallback: {_C_MISSING})"


def _c_inv(width: float) -> float | None:
    """float32(1 / width) for the C kernel, None where it cannot take it (overflowed to
    inf: a range of denormals; numpy's loop then counts, as before)."""
    with np.errstate(over="ignore"):
        inv = float(np.float32(1 / width))
    return inv if math.isfinite(inv) and inv > 0 else None


def _work_c(x: np.ndarray, loc: np.ndarray, inv: float, width: float, check: bool
            ) -> tuple[np.ndarray, float, float]:
    """One part of ``TensorStats._bin``'s pool loop with the C kernel: the same bins, range
    growth and errors as its numpy loop (a chunk past the part's range grows it by whole
    bins, then is counted without a second check); returns (loc, min, max)."""
    lo_all, hi_all = math.inf, -math.inf
    start = 0
    while start < x.size:
        half_range = width * (len(loc) // 2)
        stop, lo, hi = _C.count(x[start:], loc, inv, half_range, _CHUNK if check else 0)
        lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
        start += stop
        if start >= x.size:
            break
        c = x[start:start + _CHUNK]
        loc, lo, hi = _fit_part(loc, c, width)
        lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
        _C.count(c, loc, inv, 0.0, 0)
        start += c.size
    return loc, lo_all, hi_all


def _check_finite(lo: float, hi: float) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise FcError(f"calibration saw a non-finite value (min {lo}, max {hi})")


def _fit_part(loc: np.ndarray, c: np.ndarray, width: float) -> tuple[np.ndarray, float, float]:
    """A pool part's histogram ``loc`` grown by whole bins on both sides until it holds chunk
    ``c`` (``_TooWide`` past ``MAX_BINS``), and ``c``'s min and max (a non-finite value
    raises)."""
    lo, hi = float(c.min()), float(c.max())
    _check_finite(lo, hi)
    amax, half_range = max(-lo, hi), width * (len(loc) // 2)
    if amax > half_range:
        loc = np.pad(loc, math.ceil((amax - half_range) / width))
        if len(loc) > MAX_BINS:
            raise _TooWide
    return loc, lo, hi


def _buffers() -> tuple[np.ndarray, np.ndarray]:
    """This thread's scratch buffers for one chunk: float32 products and intp indices."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or len(buf[0]) != _CHUNK:
        buf = _scratch.buf = (np.empty(_CHUNK, np.float32), np.empty(_CHUNK, np.intp))
    return buf


def _count(hist: np.ndarray, c: np.ndarray, inv: np.float32, neg: bool) -> None:
    """hist[n/2 + floor(c * inv)] += 1 for one chunk (at most ``_CHUNK`` values): one
    multiply, one conversion and ``np.bincount``, the index array in a per-thread scratch
    buffer. Non-negative chunks (ReLU outputs) skip the floor (truncation is the floor
    there) and count into the upper half directly; values at +A (or rounded past it) go to
    the last bin, values rounded below -A to the first."""
    idx, origin = _indices(c, inv, len(hist) // 2, neg)
    _place(hist, np.bincount(idx), origin)


def _indices(c: np.ndarray, inv: np.float32, half: int, neg: bool) -> tuple[np.ndarray, int]:
    """The ``np.bincount`` indices of one chunk, in this thread's scratch buffer, and the bin
    index 0 counts into: floor(c * inv) + half + 1 from bin -1 for a chunk with negative
    values, plain truncation from bin ``half`` for a non-negative one."""
    fbuf, ibuf = _buffers()
    m = c.size
    idx = ibuf[:m]
    if neg:
        f = fbuf[:m]
        np.multiply(c, inv, out=f)
        np.floor(f, out=f)  # >= -n/2 - 1 (-A * (1/w) may round below -n/2)
        np.add(f, np.float32(half + 1), out=idx, casting="unsafe")
        return idx, -1  # counts[j] belongs to bin j - 1
    np.multiply(c, inv, out=idx, casting="unsafe")
    return idx, half


def _place(hist: np.ndarray, counts: np.ndarray, origin: int) -> None:
    """hist[origin + j] += counts[j], with what falls below the first bin (rounded below -A)
    counted in the first and what falls past the last (values at +A) in the last."""
    n = len(hist)
    if origin < 0:
        hist[0] += counts[:-origin].sum()
        counts = counts[-origin:]
        origin = 0
    k = min(len(counts), n - origin)
    hist[origin:origin + k] += counts[:k]
    if len(counts) > k:
        hist[n - 1] += counts[k:].sum()


# -- threshold methods ------------------------------------------------------------------------

def _percentile(st: TensorStats, pct: float) -> float:
    """numpy's (linear) percentile of |x| from the folded histogram: the ranks around
    (N - 1) * pct / 100 are located in their bins (each element at its position among the
    bin's count), then interpolated as numpy does, so the estimate is within one bin."""
    f = st.folded()
    cdf = np.cumsum(f)
    rank = (cdf[-1] - 1) * pct / 100.0
    lo = math.floor(rank)

    def value(j: int) -> float:  # the j-th smallest |x| (0-based), placed inside its bin
        k = int(np.searchsorted(cdf, j, side="right"))
        before = cdf[k - 1] if k else 0
        return (k + (j - before + 0.5) / f[k]) * st.width

    hi = min(lo + 1, int(cdf[-1]) - 1)
    v = value(lo) + (rank - lo) * (value(hi) - value(lo))
    return min(st.absmax, v)


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    zeros = p == 0
    nz = p.size - int(zeros.sum())
    if nz == 0:
        return None
    eps1 = eps * (p.size - nz) / nz
    return p + np.where(zeros, eps, -eps1)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def _window_kl(hist: np.ndarray, csum: np.ndarray, i: int, quantized_bins: int) -> float:
    """KL(p || q) of window i, computed as onnxruntime's ``get_entropy_threshold`` does
    (MXNet's before it): the window spans bins [zero - i, zero + i + 1), the outliers fold
    into its end bins; q is the window merged into ``quantized_bins`` groups of
    len // quantized_bins bins (the remainder joins the last group's mass only), each group's
    mass divided by the number of its bins where p is non-zero, truncated to an integer as
    those implementations store it, and given to every bin of the group; both smoothed."""
    n = len(hist)
    zero = n // 2
    a, b = zero - i, min(zero + i + 1, n)
    sliced = hist[a:b]
    p = sliced.astype(np.float64)
    p[0] += csum[a]
    p[-1] += csum[n] - csum[b]
    m = len(sliced) // quantized_bins
    covered = m * quantized_bins
    mass = sliced[:covered].reshape(quantized_bins, m).sum(axis=1)
    mass[-1] += sliced[covered:].sum()
    nonzero = (p[:covered] != 0).reshape(quantized_bins, m)
    norm = nonzero.sum(axis=1)
    per_bin = np.where(norm > 0, mass // np.maximum(norm, 1), 0)
    q = np.zeros(len(p))
    q[:covered] = np.repeat(per_bin, m).astype(np.float64)
    ps, qs = _smooth(p), _smooth(q)
    return math.inf if ps is None or qs is None else _kl(ps, qs)


def _entropy_reference(st: TensorStats, quantized_bins: int) -> float:
    """The entropy threshold window by window (``_window_kl``): the definition ``_entropy``
    computes in closed form, kept for the tests and for the windows the series does not
    cover."""
    hist = st.hist
    assert hist is not None
    n = len(hist)
    zero = n // 2
    half_q = quantized_bins // 2
    if zero < half_q:
        return st.absmax
    csum = np.concatenate([[0], np.cumsum(hist)])
    kls = [_window_kl(hist, csum, i, quantized_bins) for i in range(half_q, zero + 1)]
    best = int(np.argmin(kls))
    if not math.isfinite(kls[best]):
        return st.absmax
    return min((half_q + best + 1) * st.width, st.absmax)


_EPS = 1e-4  # _smooth's mass for empty bins
_U = 2.0 ** -53  # float64's unit roundoff
_GROUPS: dict[int, tuple] = {}  # quantized_bins -> _entropy_groups' layout (windows i < 4096)
_GROUPS_MAX = 1 << 12
_CHUNK_GROUPS = 1 << 17  # interior groups summed at a time (5 rows of 1 MiB)


def _entropy_groups(Q: int, top: int) -> tuple:
    """The layout of ``_entropy``'s interior groups for windows i = Q // 2 .. top - 1 (of
    length L = 2i + 1, group size m = L // Q), in bins relative to the histogram's centre, so
    one layout serves every histogram of at most 2 * top bins.

    Group g of window i is bins [zero - i + g m, zero - i + (g + 1) m): for g = 1 .. Q - 2 it
    depends on its start s and m only. For each m, the starts of its windows' interior groups
    are laid out residue class by residue class (s mod m), each class in increasing s, so one
    cumulative sum over the layout gives sum_{g=1}^{Q-2} X[s_i + g m] = P[hi_i] - P[lo_i], lo_i
    the position of s_i = zero - i and hi_i that of s_i + (Q - 2) m (the same class, nothing
    else between). Returns (start - zero, m) per position, (lo, hi) per window, and per m the
    first window and the first position."""
    got = _GROUPS.get(Q)
    if got is not None and got[0] >= top:
        return got[1:]
    if top <= _GROUPS_MAX:
        top = max(top, min(_GROUPS_MAX, 2 * (got[0] if got else 0)))
    i = np.arange(Q // 2, top)
    m = (2 * i + 1) // Q
    rel, size, seg_win, seg_pos = [], [], [], []
    lo, hi = np.empty(len(i), np.intp), np.empty(len(i), np.intp)
    off = 0
    for mv in np.unique(m):  # windows of one m are consecutive (m grows with i)
        w = np.flatnonzero(m == mv)
        i0, i1 = int(i[w[0]]), int(i[w[-1]])
        span = (i1 - i0) + (Q - 2) * int(mv) + 1
        rows = -(-span // mv)
        r = np.arange(rows) * mv + np.arange(mv)[:, None]  # [class, row] -> start + i1
        rel.append(r.ravel() - i1)
        size.append(np.full(r.size, mv))
        r_lo = i1 - i[w]
        r_hi = r_lo + (Q - 2) * mv
        lo[w] = off + (r_lo % mv) * rows + r_lo // mv
        hi[w] = off + (r_hi % mv) * rows + r_hi // mv
        seg_win.append(int(w[0]))
        seg_pos.append(off)
        off += r.size
    seg_win.append(len(i))
    seg_pos.append(off)
    layout = (np.concatenate(rel), np.concatenate(size), lo, hi, seg_win, seg_pos)
    if top <= _GROUPS_MAX:
        _GROUPS[Q] = (top, *layout)
    return layout


def _interior_sums(C: np.ndarray, NZ: np.ndarray, s0: np.ndarray, m: np.ndarray | int,
                   zmul: int) -> tuple[np.ndarray, np.ndarray]:
    """Per interior group [s0, s0 + m): the columns of ``_entropy``'s strided sums, all
    >= 0: mass' log v, gnz log v, mass' / v, gnz / v (mass' = mass + eps m; 0 where the group
    is empty, v = 0) and, in int64, v * zmul + [v == 0]. Starts past the histogram's ends
    (layout positions no window of this histogram sums) are clipped into it."""
    mass = np.take(C, s0 + m, mode="clip") - np.take(C, s0, mode="clip")
    gnz = np.take(NZ, s0 + m, mode="clip") - np.take(NZ, s0, mode="clip")
    vf = np.floor(mass / np.maximum(gnz, 1))  # exact: mass < 2^53; 0 where the group is empty
    pos = vf > 0
    inv = np.divide(1.0, vf, out=np.zeros(len(vf)), where=pos)
    logv = np.log(vf, out=np.zeros(len(vf)), where=pos)
    X = np.empty((4, len(vf)))
    wm = mass + _EPS * m
    np.multiply(wm, logv, out=X[0])
    np.multiply(gnz, logv, out=X[1])
    np.multiply(wm, inv, out=X[2])
    np.multiply(gnz, inv, out=X[3])
    return X, vf.astype(np.int64) * zmul + ~pos


def _entropy(st: TensorStats, quantized_bins: int) -> float:
    """``_entropy_reference``'s threshold (the same first least window) from closed forms.

    With N the total count, the smoothed p (zeros get eps, the z_p non-zero bins lose
    e = eps z_p / (L - z_p)) sums to N and the smoothed q to S_q = sum q, so

        KL = (sum ps log ps - sum ps log qs) / N - log N + log S_q.

    The first sum over the window's inner bins is sum (h - e) log(h - e) over non-zero h, a
    series in e/h (h >= 1): h log h - e (log h + 1) + e^2/2h + e^3/6h^2 + e^4/12h^3, each term
    a prefix sum, the rest below e^5 / (20 (1 - e)) per bin; the two end bins (which carry
    the outliers) are exact. q is constant on each group, so the second sum is a sum over
    groups of log qs_g = log(v_g - e_q) (v_g = floor(mass / non-zero bins), e_q q's
    smoothing) times the group's smoothed p mass ps_g = mass - (e + eps) gnz + eps m. The
    first and last groups (which carry the outliers and the remainder) are exact; an
    interior group depends only on its start and m (``_entropy_groups``), so with
    log(v - e_q) = log v - e_q / v - rest, 0 <= rest <= e_q^2 / (2 (1 - e_q) v) (v >= 1),
    its sum is four strided prefix sums of per-group columns (``_interior_sums``): O(1) per
    window after O(bins^2 / quantized_bins), instead of O(windows x quantized_bins).

    Each window's KL is so known within a bound (the two series' rests, and Higham's bound
    of the float64 rounding of these sums and of ``_window_kl``'s own, generously); the
    windows whose interval reaches below the least upper end are computed by the definition
    (``_window_kl``, as ``_entropy_reference`` does: the same bits), and the first least of
    them is the reference's window (a window outside the interval cannot be least there;
    when a single window is left, it is the least without being computed).
    Windows outside the series' range (e or e_q >= 0.5) are computed by the definition too;
    a NaN there (q smoothed below zero) makes the reference's threshold the max, and so
    this one's. ResNet-50's 72 histograms (2048-2538 bins, 48 photo crops), beside another
    engineer's load (2.5-2.9), alternated runs: 0.088-0.12 s for all (1.2-1.7 ms per tensor;
    the series over every window at once before: 0.66-0.93 s), a single window left in
    every one. The cost is O(bins^2 / quantized_bins): the series was faster past ~30K bins
    (one run, quiet: 20536 bins 0.084 vs 0.113 s, 35250 0.216 vs 0.188, 51214 0.83 vs
    0.25 s); ResNet-50's histograms stay near 2K bins."""
    hist = st.hist
    assert hist is not None
    zero = len(hist) // 2
    half_q = quantized_bins // 2
    if zero < half_q:  # fewer bins than levels: nothing to clip
        return st.absmax
    if quantized_bins < 2:
        return _entropy_reference(st, quantized_bins)
    kl, bound, exact = _entropy_bounds(hist, quantized_bins)
    if np.isnan(kl).any():
        return st.absmax  # the reference's argmin takes a NaN (q smoothed below 0): not finite
    top = float(np.min(kl + bound))
    if not math.isfinite(top):
        return st.absmax
    near = np.flatnonzero(kl - bound <= top).tolist()
    best = near[0]  # alone, it is the least window (every other is above its upper end)
    if len(near) > 1:
        csum = np.concatenate([[0], np.cumsum(hist)])
        done = set(exact.tolist())
        ref = [kl[k] if k in done else _window_kl(hist, csum, half_q + k, quantized_bins)
               for k in near]
        best = near[int(np.argmin(ref))]
    return min((half_q + best + 1) * st.width, st.absmax)


def _entropy_bounds(hist: np.ndarray, Q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every window's KL (i = Q // 2 .. n / 2) and a bound of its distance to
    ``_window_kl``'s, by ``_entropy``'s closed forms; the windows outside the series' range
    (listed third) by ``_window_kl`` itself (bound 0)."""
    n = len(hist)
    zero = n // 2
    half_q = Q // 2
    i = np.arange(half_q, zero + 1)
    a = zero - i
    b = np.minimum(zero + i + 1, n)
    L = b - a
    m = L // Q
    cov = m * Q
    last = cov == L
    nzh = hist > 0
    h = hist.astype(np.float64)
    lg = np.log(np.maximum(h, 1.0))  # 0 for empty bins, as the terms below
    inv = np.divide(1.0, h, out=np.zeros(n), where=nzh)

    def prefix(v: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(v)])

    C = np.concatenate([[0], np.cumsum(hist)])  # int64: exact counts
    NZ = np.concatenate([[0], np.cumsum(nzh)])
    T0, T1 = prefix(h * lg), prefix(lg) + NZ  # sums of h log h and of log h + 1
    inv2 = inv * inv
    T2, T3, T4 = prefix(inv), prefix(inv2), prefix(inv2 * inv)
    N = int(C[n])
    log_eps = math.log(_EPS)
    # the window's bins: p and its smoothing
    h_a, h_l = hist[a], hist[b - 1]
    p0 = h_a + C[a]  # the first bin with everything below the window
    pl = h_l + (N - C[b])  # the last bin with everything above it
    fix0 = (p0 != 0).astype(np.int64) - (h_a != 0)
    fixl = (pl != 0).astype(np.int64) - (h_l != 0)
    nzp = NZ[b] - NZ[a] + fix0 + fixl
    zp = L - nzp
    e = _EPS * zp / nzp
    with np.errstate(invalid="ignore", divide="ignore"):
        r_lo, r_hi = a + 1, b - 1
        A = ((T0[r_hi] - T0[r_lo]) - e * (T1[r_hi] - T1[r_lo]) + e ** 2 / 2 * (T2[r_hi] - T2[r_lo])
             + e ** 3 / 6 * (T3[r_hi] - T3[r_lo]) + e ** 4 / 12 * (T4[r_hi] - T4[r_lo]))
        rest = (NZ[r_hi] - NZ[r_lo]) * e ** 5 / (20 * (1 - e))
    for pe in (p0, pl):
        v = np.maximum(pe - e, 1e-300)
        A += np.where(pe > 0, v * np.log(v), 0.0)
    A += zp * _EPS * log_eps
    # the interior groups' sums: windows i < zero from the shared layout, chunk by chunk
    # (a few segments of m at a time), the last window (i = zero, L = n) on its own
    zmul = 1 << (Q - 1).bit_length()  # > the number of interior groups
    S = np.empty((4, len(i)))
    SZ = np.empty(len(i), np.int64)
    mags, longest = 0.0, Q
    if zero > half_q:
        rel, size, lo, hi, seg_win, seg_pos = _entropy_groups(Q, zero)
        nw = zero - half_q
        k = 0
        while seg_win[k] < nw:
            j = k + 1
            while seg_win[j] < nw and seg_pos[j + 1] - seg_pos[k] <= _CHUNK_GROUPS:
                j += 1
            p0_, p1_ = seg_pos[k], seg_pos[j]
            w0, w1 = seg_win[k], min(seg_win[j], nw)
            X, Z = _interior_sums(C, NZ, rel[p0_:p1_] + zero, size[p0_:p1_], zmul)
            P = np.cumsum(X, axis=1)
            mags += float(P[:, -1].sum())  # the columns are >= 0
            longest = max(longest, X.shape[1])
            PZ = np.cumsum(Z)
            wl, wh = lo[w0:w1] - p0_, hi[w0:w1] - p0_
            S[:, w0:w1] = P[:, wh] - P[:, wl]
            SZ[w0:w1] = PZ[wh] - PZ[wl]
            k = j
    X, Z = _interior_sums(C, NZ, int(m[-1]) * np.arange(1, Q - 1), int(m[-1]), zmul)
    S[:, -1] = X.sum(axis=1)
    mags += float(S[:, -1].sum())
    SZ[-1] = Z.sum()
    v_int, z_int = SZ // zmul, SZ % zmul
    # the first and last groups, exact
    mass_f = C[a + m] - C[a]
    gnz_f = NZ[a + m] - NZ[a] + fix0
    sl = a + (Q - 1) * m
    tail_h = C[b] - C[a + cov]
    pg_l = C[a + cov] - C[sl]
    mass_l = pg_l + tail_h
    gnz_l = NZ[a + cov] - NZ[sl] + np.where(last, fixl, 0)
    v_f = mass_f // np.maximum(gnz_f, 1) * (gnz_f > 0)
    v_l = mass_l // np.maximum(gnz_l, 1) * (gnz_l > 0)
    pg_f = mass_f + C[a]
    pg_l = pg_l + np.where(last, N - C[b], 0)
    zq = m * (z_int + (v_f == 0) + (v_l == 0)) + (L - cov)
    nzq = L - zq
    tail_nz = NZ[b] - NZ[a + cov] + np.where(last, 0, fixl)
    tail_p = tail_h + np.where(last, 0, N - C[b])
    ps_tail = tail_p - e * tail_nz + _EPS * ((L - cov) - tail_nz)
    with np.errstate(divide="ignore", invalid="ignore"):
        eq = _EPS * zq / nzq
        c1 = e + _EPS
        inner_v = S[2] - c1 * S[3]  # sum ps / v over the interior groups
        B = (S[0] - c1 * S[1]) - eq * inner_v + log_eps * _EPS * m * z_int
        rest += eq ** 2 / (2 * (1 - eq)) * inner_v
        for vg, pg, gz in ((v_f, pg_f, gnz_f), (v_l, pg_l, gnz_l)):
            ps = pg - e * gz + _EPS * (m - gz)
            B += ps * np.where(vg > 0, np.log(np.maximum(vg - eq, 1e-300)), log_eps)
        B += log_eps * ps_tail
        log_sq = np.log(m * (v_int + v_f + v_l))
        kl = (A - B) / N - math.log(N) + log_sq
        # rounding: prefix sums of up to n + longest terms and ~40 more operations,
        # twice over for _window_kl's own, relative to the sums of absolute values
        mags += (T0[n] + T1[n] + T2[n] + T3[n] + T4[n]
                 + 4 * (N + _EPS * n) * (-log_eps + math.log(N + 1)))
        bound = rest / N + 8 * _gamma(n + longest + 64) * (
            mags / N + math.log(N) + np.abs(log_sq) + 1)
    exact = (e >= 0.5) | ((nzq > 0) & (eq >= 0.5)) | ~np.isfinite(bound)
    kl = np.where(nzq > 0, kl, np.inf)  # q all zero: the reference's inf
    bound = np.where(nzq > 0, bound, 0.0)
    for k in np.flatnonzero(exact).tolist():
        kl[k], bound[k] = _window_kl(hist, C, int(i[k]), Q), 0.0
    return kl, bound, np.flatnonzero(exact)


def _gamma(k: int) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of k float64 roundings."""
    return k * _U / (1 - k * _U)


_LEVELS: dict[int, np.ndarray] = {}  # qmax -> _mse_levels' matrix, grown to the largest n seen
_LEVELS_MAX = 1 << 13  # candidates kept in it (qmax x 8192 intp: 8 MiB at 8 bits)


def _mse_errors(st: TensorStats, ks: np.ndarray, bits: int) -> np.ndarray:
    """The direct definition for candidates T = k * width (k in ``ks``): the sum over the
    folded histogram's non-empty bins, centres c, of count * (min(rint(c / s), qmax) * s - c)^2,
    s = T / qmax, in blocks of 64K errors (one cache-resident buffer). Each candidate's row is
    reduced on its own (numpy's pairwise sum, no BLAS), so its error has the same bits
    whichever candidates share its block."""
    f = st.folded().astype(np.float64)
    centres = (np.arange(len(f)) + 0.5) * st.width
    qmax = 2 ** (bits - 1) - 1
    nz = f > 0
    f, centres = f[nz], centres[nz]
    rows = max(1, (1 << 16) // max(1, len(f)))
    e = np.empty(len(ks))
    buf = np.empty(rows * len(f))
    for start in range(0, len(ks), rows):
        t = ks[start:start + rows] * st.width
        s = (t / qmax)[:, None]
        err = buf[:len(t) * len(f)].reshape(len(t), len(f))
        np.divide(centres, s, out=err)
        np.rint(err, out=err)
        np.minimum(err, qmax, out=err)
        err *= s
        err -= centres
        err *= err
        err *= f
        np.add.reduce(err, axis=1, out=e[start:start + len(t)])
    return e


def _mse_reference(st: TensorStats, bits: int) -> float:
    """The mse threshold by its definition (``_mse_errors`` of every candidate k = 1 .. bins
    of |x|, the first least wins): the oracle of ``_mse``, O(candidates x bins)."""
    e = _mse_errors(st, np.arange(1, len(st.folded()) + 1), bits)
    return min((int(np.argmin(e)) + 1) * st.width, st.absmax)


def _mse_levels(k0: int, k1: int, qmax: int) -> np.ndarray:
    """b[m - 1, k - k0] (m = 1 .. qmax, k = k0 .. k1 - 1): the first folded bin j whose centre
    (j + 1/2) w reaches level m - 1/2 of candidate k's step s = k w / qmax, i.e. the least j
    with (2j + 1) qmax >= (2m - 1) k, clipped at 0. It is below k (level qmax - 1/2 is below
    T), so it never depends on the histogram's length: one matrix per qmax, cached up to
    ``_LEVELS_MAX`` candidates (later blocks of a longer histogram are computed)."""
    cached = _LEVELS.get(qmax)
    if cached is not None and cached.shape[1] >= k1 - 1:
        return cached[:, k0 - 1:k1 - 1]
    cache = k1 - 1 <= _LEVELS_MAX
    if cache:  # the matrix from k = 1, grown by doubling
        k0, k1 = 1, max(k1, min(_LEVELS_MAX, 2 * (0 if cached is None else cached.shape[1])) + 1)
    k = np.arange(k0, k1, dtype=np.int64)
    m = np.arange(1, qmax + 1, dtype=np.int64)[:, None]
    b = np.maximum(-((qmax - (2 * m - 1) * k) // (2 * qmax)), 0).astype(np.intp)
    if cache:
        _LEVELS[qmax] = b
    return b


def _mse(st: TensorStats, bits: int) -> float:
    """``_mse_reference``'s threshold (the same first least candidate) in O(candidates x
    levels) instead of O(candidates x bins).

    In units of w / (2 qmax), candidate k's error is E_k = sum_j f_j (2 q_j k - (2j + 1) qmax)^2
    with q_j = min(rint((2j + 1) qmax / 2k), qmax) = #{m = 1 .. qmax : j >= b_m(k)}
    (``_mse_levels``; at an exact tie either rounding gives the same square). So with the
    integer prefix sums P0 of f and P1 of f (2j + 1),

        E_k = 4 k^2 sum_m (2m - 1)(N - P0[b_m]) - 4 k qmax sum_m (P1[n] - P1[b_m]) + qmax^2 S2,

    S2 = sum f (2j + 1)^2 the same for every k: two gathers of qmax values per candidate, the
    sums exact in int64. Only the last products round, and the direct errors round too:
    each is within ``delta`` = 256 u (qmax^2 S2 + its two terms) of exact (u = 2^-53; a
    generous bound of the direct sum's rounding, a rint flipped on a near-tie included), so
    the direct least can only be a candidate within 2 max(delta) of the least E here. Those
    few are recomputed by the definition (``_mse_errors``, the same bits as in
    ``_mse_reference``) and the first least of them is the threshold. 8 bits, ResNet-50's 72
    histograms (1024-1240 candidates), load ~2: 0.075-0.087 s for all (~1.1 ms per tensor;
    the block matmul before: 0.36-0.43 s wall, up to 0.85 s CPU on BLAS's threads), one
    candidate rechecked per tensor."""
    f = st.folded()
    n = len(f)
    qmax = 2 ** (bits - 1) - 1
    N = int(f.sum())
    j2 = 2 * np.arange(n, dtype=np.int64) + 1
    P1n = int(np.dot(f, j2))
    if not 1 <= qmax < n // 2 or qmax * qmax * N >= 1 << 62 or qmax * P1n >= 1 << 62:
        return _mse_reference(st, bits)  # few bins per level (or int64 too small): direct
    P0 = np.concatenate([[0], np.cumsum(f)])
    P1 = np.concatenate([[0], np.cumsum(f * j2)])
    w = 2 * np.arange(1, qmax + 1, dtype=np.int64) - 1
    A, B = np.empty(n, np.int64), np.empty(n, np.int64)
    for k0 in range(1, n + 1, _LEVELS_MAX):  # blocks of candidates (qmax x 8192 gathers)
        k1 = min(k0 + _LEVELS_MAX, n + 1)
        b = _mse_levels(k0, k1, qmax)[:, :k1 - k0]
        A[k0 - 1:k1 - 1] = N * qmax * qmax - w @ np.take(P0, b, mode="clip")  # b in [0, n)
        B[k0 - 1:k1 - 1] = qmax * P1n - np.take(P1, b, mode="clip").sum(axis=0)
    k = np.arange(1, n + 1, dtype=np.float64)
    t1 = 4 * k * k * A
    t2 = 4 * qmax * k * B
    F = t1 - t2
    S2 = float((f * (j2 * j2).astype(np.float64)).sum())
    delta = 256 * _U * (qmax * qmax * S2 + t1 + t2)
    cand = np.flatnonzero(F <= F.min() + 2 * delta.max())
    e = _mse_errors(st, cand + 1, bits)
    return min((int(cand[np.argmin(e)]) + 1) * st.width, st.absmax)


def threshold(st: TensorStats, method: str, *, percentile: float = 99.99,
              quantized_bins: int = 255, bits: int = 8) -> float:
    """The absolute threshold T of ``method`` for one tensor's statistics."""
    if method == "max" or st.absmax == 0:
        return st.absmax
    if st.hist is None:
        raise FcError(f"calibration method {method!r} needs a histogram; this tensor was "
                      "observed without one")
    if method == "percentile":
        return _percentile(st, percentile)
    if method == "entropy":
        return _entropy(st, quantized_bins)
    if method == "mse":
        return _mse(st, bits)
    raise FcError(f"unknown calibration method {method!r}; fc has {', '.join(METHODS)}")


# -- the calibrator (an executor observer) ----------------------------------------------------

class Calibrator:
    """Observes ``tensors`` (names) through the executor's observer hook.

    Use: ``cal = Calibrator(names, method="entropy")``; per batch, ``cal.observe_inputs(feeds)``
    then ``fc.np_ops.run(graph, feeds, observer=cal)``; finally ``cal.table()``.

    ``background`` (the default): the node outputs are folded in on one worker thread while
    the executor runs the next nodes (the C kernel releases the GIL while it counts, as numpy
    does in its ufunc loops and in ``np.bincount``'s counting loop). The observer only queues
    the array; the queue holds at most ``QUEUE_DEPTH`` arrays (the executor waits when it is
    full), so memory stays bounded: at most ``QUEUE_DEPTH + 1`` layer outputs are kept alive
    past their last use, whatever the number of images. One thread, first in first out, so
    every tensor sees its batches in order and the statistics are those of
    ``background=False`` to the bit. It relies on what the executor's hook promises: a
    tensor is not written after its node produced it.
    The graph inputs are folded in at once (the caller may refill its input buffer). An error
    of the worker (a non-finite value) is raised by the next observation, ``flush`` or
    ``table``.
    """

    QUEUE_DEPTH = 2

    def __init__(self, tensors: Iterable[str], *, method: str = "max", num_bins: int = DEFAULT_BINS,
                 percentile: float = 99.99, quantized_bins: int = 255, bits: int = 8,
                 background: bool = True):
        if method not in METHODS:
            raise FcError(f"unknown calibration method {method!r}; fc has {', '.join(METHODS)}")
        self.method = method
        self.percentile = percentile
        self.quantized_bins = quantized_bins
        self.bits = bits
        hist = method in HISTOGRAM_METHODS
        self.stats: dict[str, TensorStats] = {t: TensorStats(num_bins, hist) for t in tensors}
        self.batches = 0
        self.images = 0
        self.background = background
        self._queue: queue.Queue | None = None
        self._errors: list[BaseException] = []

    def _submit(self, st: TensorStats, arr: np.ndarray) -> None:
        if self._errors:
            self._raise()
        if not self.background:
            st.update(arr)
            return
        if self._queue is None:
            self._queue = queue.Queue(self.QUEUE_DEPTH)
            threading.Thread(target=_fold_queued, args=(self._queue, self._errors),
                             name="fc-calibration", daemon=True).start()
            weakref.finalize(self, self._queue.put, None)  # ends the thread with self
        self._queue.put((st, arr))

    def flush(self) -> None:
        """Wait until every queued array is folded in (raise the worker's error, if any)."""
        if self._queue is not None:
            self._queue.join()
        if self._errors:
            self._raise()

    def _raise(self) -> None:
        raise self._errors[0]

    def observe_inputs(self, feeds: Mapping[str, np.ndarray]) -> None:
        if self._errors:
            self._raise()
        for name, arr in feeds.items():
            if name in self.stats:
                self.stats[name].update(arr)
        self.batches += 1
        self.images += len(next(iter(feeds.values()))) if feeds else 0

    def __call__(self, node: Any, outputs: Sequence[np.ndarray]) -> None:
        for v, arr in zip(node.outputs, outputs):
            st = self.stats.get(v.name)
            if st is not None:
                self._submit(st, arr)

    def table(self, meta: Mapping[str, Any] | None = None) -> CalibrationTable:
        self.flush()
        missing = [n for n, st in self.stats.items() if st.count == 0]
        if missing:
            raise FcError(f"calibration saw no values for {len(missing)} tensor(s): "
                          f"{', '.join(missing[:5])}")
        entries = {}
        for name, st in self.stats.items():
            t = threshold(st, self.method, percentile=self.percentile,
                          quantized_bins=self.quantized_bins, bits=self.bits)
            entries[name] = Range(st.min, st.max, t)
        info = {"method": self.method, "images": self.images, "batches": self.batches}
        if self.method == "percentile":
            info["percentile"] = self.percentile
        return CalibrationTable(entries, self.method, {**info, **(meta or {})})


def _fold_queued(q: queue.Queue, errors: list[BaseException]) -> None:
    """The ``Calibrator``'s worker: ``(stats, array)`` items in order until ``None``. After an
    error the remaining items are dropped (the producer sees the error at its next call)."""
    while True:
        item = q.get()
        try:
            if item is None:
                return
            if not errors:
                item[0].update(item[1], parallel=False)
        except BaseException as e:  # handed to the producer
            errors.append(e)
        finally:
            item = None  # the array goes now, not at the next get
            q.task_done()


# -- the table --------------------------------------------------------------------------------

@dataclass
class CalibrationTable:
    """tensor name -> Range, in graph order, with how it was made (``meta``)."""

    entries: dict[str, Range]
    method: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Range:
        try:
            return self.entries[name]
        except KeyError:
            raise FcError(f"calibration table has no entry for tensor {name!r} "
                          "(recalibrate for this graph)") from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def to_json(self) -> str:
        doc = {"format": TABLE_FORMAT, "version": 1, "method": self.method, "meta": self.meta,
               "tensors": {n: {"min": _f(r.min), "max": _f(r.max), "threshold": _f(r.threshold),
                               "method": self.method} for n, r in self.entries.items()}}
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"

    def to_text(self) -> str:
        """tpu-mlir's calibration table form: ``name threshold min max`` per line."""
        lines = [f"# fc calibration table: method {self.method}, "
                 f"{self.meta.get('images', '?')} images",
                 "# name threshold min max"]
        lines += [f"{n} {_f(r.threshold):.7g} {_f(r.min):.7g} {_f(r.max):.7g}"
                  for n, r in self.entries.items()]
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """``path`` (JSON) and the text form beside it (``.txt``), each written atomically."""
        from fc.ir.serialize import atomic_write

        path = Path(path)
        txt = path.with_suffix(".txt")
        with atomic_write(path, "w") as f:
            f.write(self.to_json())
        with atomic_write(txt, "w") as f:
            f.write(self.to_text())
        return path, txt

    @classmethod
    def read(cls, path: str | os.PathLike) -> CalibrationTable:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FcError(f"{path}: calibration table not found (run `fcc quant calibrate`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FcError(f"{path}: not a readable calibration table ({e})") from None
        except RecursionError:
            raise FcError(f"{path}: not a readable calibration table (JSON nested too "
                          "deeply)") from None
        if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
            raise FcError(f"{path}: not an fc calibration table (format {TABLE_FORMAT!r})")
        entries = {}
        try:
            for name, e in doc["tensors"].items():
                entries[name] = _checked_range(path, name, e)
            return cls(entries, str(doc["method"]), dict(doc.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FcError(f"{path}: malformed calibration table ({type(e).__name__}: {e})") from None


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_range(path: Path, name: str, e: Any) -> Range:
    """One entry of a table read from a file: finite float32 numbers (not booleans or
    strings), min <= max, threshold >= 0 — what scales can be computed from."""
    values = {}
    for key in ("min", "max", "threshold"):
        v = e[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) \
                or not abs(v) <= _FLOAT32_MAX:  # NaN fails too
            raise FcError(f"{path}: tensor {name!r}: {key} must be a finite float32 number, "
                          f"got {v!r}")
        values[key] = float(v)
    if values["min"] > values["max"] or values["threshold"] < 0:
        raise FcError(f"{path}: tensor {name!r}: needs min <= max and threshold >= 0, got "
                      f"min {values['min']!r}, max {values['max']!r}, threshold "
                      f"{values['threshold']!r}")
    return Range(values["min"], values["max"], values["threshold"])


def _f(v: float) -> float:
    return float(np.float32(v))


def fingerprint(*parts: Any) -> str:
    """A stable hash of what a table depends on (files by content, settings by value)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(p.read_bytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
