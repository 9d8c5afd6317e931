"""The C counting kernel (quant/_histogram.c) against numpy: the same bins, min and max.

Two oracles: numpy's floor + bincount on the exact data (the kernel's definition), and fc's
numpy path (``TensorStats`` with ``calibration._C`` unset), which the tests of
test_calibration.py hold against numpy's and onnxruntime's calibrators. Every instruction
set this machine runs is checked (``_histogram.ISAS``: avx512, avx2, generic).
"""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest

from fc.errors import FcError
from fc.quant import calibration
from fc.quant.calibration import TensorStats

C = calibration._histogram  # the module, whether or not calibration uses it on this CPU
needs_c = pytest.mark.skipif(C is None, reason=calibration._C_MISSING)
CHUNK = calibration._CHUNK


def test_the_c_kernel_is_built_where_a_compiler_is():
    """pip builds the extension wherever there is a C compiler (setup.py, optional=True): a
    build that broke silently would fall back to numpy's 4x slower loop."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): fc counts with numpy")
    assert C is not None, calibration._C_MISSING
    if C.ISA == "generic":
        assert calibration._C is None and calibration.histogram_kernel().startswith("numpy")
    else:
        assert calibration._C is C and calibration.histogram_kernel() == f"C ({C.ISA})"


@pytest.fixture(params=["avx512", "avx2", "generic"])
def isa(request, monkeypatch):
    """The kernel's loops for one instruction set, in use by TensorStats."""
    if C is None:
        pytest.skip(calibration._C_MISSING)
    if request.param not in C.ISAS:
        pytest.skip(f"this CPU does not run {request.param} (it runs {', '.join(C.ISAS)})")
    monkeypatch.setattr(calibration, "_C", C)
    previous = C.set_isa(request.param)
    yield request.param
    C.set_isa(previous)


def _floor_bins(x: np.ndarray, n: int, inv: np.float32) -> np.ndarray:
    """The definition: bin n/2 + floor(float32(x * inv)), clamped to the end bins."""
    idx = np.floor(x * inv).astype(np.int64) + n // 2
    return np.bincount(np.clip(idx, 0, n - 1), minlength=n)


def _data(kind: str, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(np.float32)
    if kind == "relu":  # about half exact zeros, in runs and alone
        x = np.maximum(x, 0)
        x[size // 3:size // 3 + 5000] = 0
    elif kind == "edges":  # exactly on bin edges, and one ulp either side
        k = rng.integers(-32, 32, size).astype(np.float32)
        x = k * np.float32(0.125)
        x[::3] = np.nextafter(x[::3], np.float32(np.inf))
        x[1::3] = np.nextafter(x[1::3], np.float32(-np.inf))
    return x


@needs_c
@pytest.mark.parametrize("kind", ["signed", "relu", "edges"])
def test_count_is_the_floor_definition(isa, kind):
    """Every value's bin, through a tail shorter than a vector and the range's ends (+A and
    -A, rounded past them, clamp into the end bins); min and max of the counted chunks."""
    x = _data(kind, 5 * CHUNK + 13)
    n = 64
    half_range = float(np.abs(x).max())
    x[7], x[8] = half_range, -half_range
    width = 2 * half_range / n
    inv = np.float32(1 / width)
    hist = np.zeros(n, np.int64)
    stop, lo, hi = C.count(x, hist, float(inv), width * (n // 2), CHUNK)
    assert stop == x.size and (lo, hi) == (x.min(), x.max())
    assert np.array_equal(hist, _floor_bins(x, n, inv))
    again = np.zeros(n, np.int64)
    assert C.count(x, again, float(inv), 0.0, 0)[0] == x.size  # chunk 0: no range check
    assert np.array_equal(again, hist)


@needs_c
@pytest.mark.parametrize("bad", [np.float32(9.0), np.float32(-9.0), np.nan, np.inf])
def test_count_stops_at_the_first_chunk_outside_the_range_uncounted(isa, bad):
    x = _data("relu", 4 * CHUNK)
    x[2 * CHUNK + 100] = bad
    n = 128
    width = 2 * 5.0 / n
    inv = np.float32(1 / width)
    hist = np.ones(n, np.int64)
    stop, lo, hi = C.count(x, hist, float(inv), 5.0, CHUNK)
    assert stop == 2 * CHUNK
    assert (lo, hi) == (x[:stop].min(), x[:stop].max())
    assert np.array_equal(hist, 1 + _floor_bins(x[:stop], n, inv))


@needs_c
def test_minmax_is_numpys(isa):
    x = _data("signed", 3 * CHUNK + 5)
    x[-1], x[CHUNK + 3] = 11.5, -12.25
    assert C.minmax(x) == (x.min(), x.max()) == (-12.25, 11.5)
    for size in (1, 7, 33, 100):
        assert C.minmax(x[:size]) == (x[:size].min(), x[:size].max())
    x[-2] = np.nan
    assert all(np.isnan(C.minmax(x)))


def _both(batches, parallel: bool, monkeypatch, bins: int = 64):
    """TensorStats of the batches by the C kernel and by numpy's loop."""
    def run():
        st = TensorStats(bins)
        for b in batches:
            st.update(b, parallel=parallel)
        return st

    c = run()
    monkeypatch.setattr(calibration, "_C", None)
    ref = run()
    monkeypatch.setattr(calibration, "_C", C)
    return c, ref


def _growing(kind: str) -> list[np.ndarray]:
    """Batches whose range grows, as activations' do over calibration images."""
    rng = np.random.default_rng(11)
    if kind == "rising":  # a new max in every chunk of one array
        first = rng.standard_normal(1000).astype(np.float32)
        return [first, np.sort(rng.standard_normal(12 * CHUNK) * 3).astype(np.float32)]
    if kind == "wide":  # past MAX_BINS: pairs of bins merge
        return [rng.standard_normal(1000).astype(np.float32),
                rng.standard_normal(300_000).astype(np.float32) * 5000]
    out = []
    for i, scale in enumerate((1.0, 1.5, 1.2, 2.5)):
        x = (rng.standard_normal((4, 40, 40, 24)) * scale).astype(np.float32)
        if kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "edges":
            x = _data("edges", x.size, i).reshape(x.shape) * np.float32(scale)
        out.append(x.transpose(0, 3, 1, 2))  # channels-last memory, as the executor's
    return out


@needs_c
@pytest.mark.parametrize("parallel", [pytest.param(p, id=["one-thread", "pool"][p]) for p in (0, 1)])
@pytest.mark.parametrize("kind", ["signed", "relu", "edges", "rising", "wide"])
def test_tensor_stats_are_numpys_bit_for_bit(isa, kind, parallel, monkeypatch):
    """The whole update (first batch, range growth by whole bins, merges past MAX_BINS,
    the pool's parts) gives numpy's loop's histogram, width, min and max exactly."""
    c, ref = _both(_growing(kind), bool(parallel), monkeypatch)
    assert len(ref.hist) > 64  # the range grew
    assert np.array_equal(c.hist, ref.hist)
    assert (c.width, c.min, c.max, c.count) == (ref.width, ref.min, ref.max, ref.count)


@needs_c
@pytest.mark.parametrize("parallel", [pytest.param(p, id=["one-thread", "pool"][p]) for p in (0, 1)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_raises_numpys_error(isa, bad, parallel, monkeypatch):
    first = _data("signed", 1000)
    late = _data("signed", 9 * CHUNK, 1)
    late[6 * CHUNK + 5] = bad
    messages = []
    for kernel in (C, None):
        monkeypatch.setattr(calibration, "_C", kernel)
        st = TensorStats(64)
        st.update(first)
        with pytest.raises(FcError, match="non-finite") as e:
            st.update(late, parallel=bool(parallel))
        messages.append(str(e.value))
    assert messages[0] == messages[1]
