"""Calibration: streaming statistics of activations, threshold methods, the table.

``Calibrator`` is an executor observer: after each node it folds the outputs it tracks into
a ``TensorStats`` (min, max, and for the histogram methods a histogram) and lets the arrays
go, so memory does not depend on the number of images.

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
  (step T / (2^(b-1) - 1), values above T clipped) over the histogram's bin centres.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.quant.strategies import Range

__all__ = ["METHODS", "TensorStats", "Calibrator", "CalibrationTable", "threshold",
           "DEFAULT_BINS", "MAX_BINS"]

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

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise FcError(f"calibration saw a non-finite value (min {lo}, max {hi})")
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += x.size
        if self.num_bins:
            self._histogram(x.ravel(), max(-lo, hi))

    def _histogram(self, x: np.ndarray, amax: float) -> None:
        if self.hist is None:
            if amax == 0:
                self._zeros += x.size
                return
            self.width = 2 * amax / self.num_bins
            self.hist = np.zeros(self.num_bins, np.int64)
            if self._zeros:  # the all-zero batches seen before: their bin is [0, width)
                self.hist[self.num_bins // 2] += self._zeros
        elif amax > self.half_range:
            k = math.ceil((amax - self.half_range) / self.width)
            self.hist = np.pad(self.hist, k)
            while len(self.hist) > MAX_BINS:
                self._merge_pairs()
        n = len(self.hist)
        t = np.multiply(x, np.float32(1 / self.width), dtype=np.float32)
        t += np.float32(n // 2)
        idx = t.astype(np.intp)
        np.clip(idx, 0, n - 1, out=idx)
        self.hist += np.bincount(idx, minlength=n)

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


def _entropy(st: TensorStats, quantized_bins: int) -> float:
    """onnxruntime's ``get_entropy_threshold`` semantics (MXNet's before it), vectorized:
    window i spans bins [zero - i, zero + i + 1); q is the window merged into
    ``quantized_bins`` groups of len // quantized_bins bins (the remainder joins the last
    group's mass only), each group's mass spread over its bins where p is non-zero, truncated
    to an integer as those implementations store it."""
    hist = st.hist
    assert hist is not None
    n = len(hist)
    zero = n // 2
    half_q = quantized_bins // 2
    if zero < half_q:  # fewer bins than levels: nothing to clip
        return st.absmax
    csum = np.concatenate([[0], np.cumsum(hist)])
    best, best_t = math.inf, st.absmax
    for i in range(half_q, zero + 1):
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
        kl = math.inf if ps is None or qs is None else _kl(ps, qs)
        if kl < best:
            best, best_t = kl, (i + 1) * st.width
    return min(best_t, st.absmax)


def _mse(st: TensorStats, bits: int) -> float:
    f = st.folded().astype(np.float64)
    centres = (np.arange(len(f)) + 0.5) * st.width
    qmax = 2 ** (bits - 1) - 1
    nz = f > 0
    f, centres = f[nz], centres[nz]
    best, best_t = math.inf, st.absmax
    for k in range(1, len(st.folded()) + 1):
        t = k * st.width
        s = t / qmax
        err = np.minimum(np.rint(centres / s), qmax) * s - centres
        e = float(np.dot(f, err * err))
        if e < best:
            best, best_t = e, t
    return min(best_t, st.absmax)


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
    """

    def __init__(self, tensors: Iterable[str], *, method: str = "max", num_bins: int = DEFAULT_BINS,
                 percentile: float = 99.99, quantized_bins: int = 255, bits: int = 8):
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

    def observe_inputs(self, feeds: Mapping[str, np.ndarray]) -> None:
        for name, arr in feeds.items():
            if name in self.stats:
                self.stats[name].update(arr)
        self.batches += 1
        self.images += len(next(iter(feeds.values()))) if feeds else 0

    def __call__(self, node: Any, outputs: Sequence[np.ndarray]) -> None:
        for v, arr in zip(node.outputs, outputs):
            st = self.stats.get(v.name)
            if st is not None:
                st.update(arr)

    def table(self, meta: Mapping[str, Any] | None = None) -> CalibrationTable:
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
