"""The channels-last Conv path (np_ops/conv.py) per shape class and input layout, its row
blocks and thread-pool splits, the packed-weight cache, and the kernels downstream of a
channels-last output (pooling, Add, ...), against torch. Every test runs with both GEMMs
(fc's kernel on packed weights where built, numpy's matmul) and both epilogues."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.np_ops
import fc.np_ops._blas
import fc.np_ops._parallel
import fc.np_ops.conv
import fc.np_ops.nn
from fc.np_ops.conv import is_channels_last
from fc.testing import check_close

T = torch.from_numpy


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, np.float32)


def channels_last(x: np.ndarray) -> np.ndarray:
    """``x`` (NCHW values) stored as an (N, H, W, C) buffer: what a Conv returns."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


LAYOUTS = {
    "nchw": lambda x: x,
    "channels_last": channels_last,
    "strided_view": lambda x: np.pad(x, ((0, 0), (0, 1), (0, 0), (2, 0)))[:, :-1, :, 2:],
}


def torch_conv(x, w, b, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
               **_act) -> torch.Tensor:
    xt = F.pad(T(np.ascontiguousarray(x)), (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(xt, T(w.copy()), None if b is None else T(b), strides, 0, dilations, group)


# one case per shape class of the channels-last path (and the grouped path it hands over to)
SHAPE_CLASSES = [
    pytest.param((2, 8, 5, 6), (4, 8, 1, 1), {}, id="1x1"),
    pytest.param((2, 8, 7, 6), (4, 8, 1, 1), {"strides": (2, 2)}, id="1x1_stride2"),
    pytest.param((1, 8, 7, 7), (5, 8, 1, 1), {"strides": (2, 1)}, id="1x1_stride2x1"),
    pytest.param((1, 8, 5, 5), (4, 8, 1, 1), {"pads": (1, 0, 0, 1)}, id="1x1_padded"),
    pytest.param((2, 6, 8, 9), (7, 6, 3, 3), {"pads": (1, 1, 1, 1)}, id="3x3_pad1"),
    pytest.param((2, 6, 9, 9), (7, 6, 3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)},
                 id="3x3_stride2"),
    pytest.param((1, 3, 30, 30), (8, 3, 7, 7), {"strides": (2, 2), "pads": (3, 3, 3, 3)},
                 id="stem_7x7_stride2"),
    pytest.param((1, 4, 10, 10), (5, 4, 3, 3), {"dilations": (2, 2), "pads": (2, 2, 2, 2)},
                 id="dilation2"),
    pytest.param((1, 3, 7, 8), (4, 3, 3, 3), {"pads": (1, 0, 2, 1)}, id="asymmetric_pads"),
    pytest.param((1, 3, 11, 7), (4, 3, 5, 2), {"strides": (3, 1), "pads": (2, 1, 1, 0)},
                 id="nonsquare"),
    pytest.param((2, 6, 7, 7), (8, 3, 3, 3), {"group": 2, "pads": (1, 1, 1, 1)}, id="group2"),
    pytest.param((2, 6, 9, 9), (6, 1, 3, 3), {"group": 6, "pads": (1, 1, 1, 1)},
                 id="depthwise"),
]


@pytest.mark.parametrize("layout", [pytest.param(k, id=k) for k in LAYOUTS])
@pytest.mark.parametrize(("xs", "ws", "attrs"), SHAPE_CLASSES)
def test_conv_shape_class_and_input_layout(xs, ws, attrs, layout):
    x = LAYOUTS[layout](rand(0, *xs))
    w = rand(1, *ws, scale=float(np.prod(ws[1:])) ** -0.5)
    b = rand(2, ws[0])
    y = fc.np_ops.call("Conv", x, w, b, activation="relu", **attrs)
    check_close(y, F.relu(torch_conv(x, w, b, **attrs)).numpy(), op="Conv")
    # Ordinary convolutions store their output channels-last; grouped ones NCHW.
    assert is_channels_last(y) == (attrs.get("group", 1) == 1)


@pytest.mark.parametrize(("block_bytes", "min_rows"), [
    pytest.param(1, 1, id="one_output_row_per_block"),
    pytest.param(3 * 6 * 54 * 4, 1, id="blocks_across_images"),  # 3 rows of 6 px, K = 54
    pytest.param(1 << 30, 1, id="one_block"),
])
@pytest.mark.parametrize(("ws", "attrs", "layout"), [
    pytest.param((5, 6, 3, 3), {"pads": (1, 1, 1, 1)}, "nchw", id="im2col"),
    pytest.param((5, 6, 1, 1), {}, "channels_last", id="1x1_direct"),
    pytest.param((5, 6, 1, 1), {"strides": (2, 1)}, "channels_last", id="1x1_copied"),
])
def test_conv_row_blocks(monkeypatch, block_bytes, min_rows, ws, attrs, layout):
    """The rows of a batch (3 images of 5 output rows) go through the GEMM in blocks (BLAS's
    row blocks, or fc's kernel's row tiles), which may end inside an image; bias and the
    activation are applied per block, in chunks of rows (one row per chunk here: the same
    bits as whole blocks)."""
    monkeypatch.setattr(fc.np_ops.conv, "_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(fc.np_ops.conv, "_MIN_BLOCK_ROWS", min_rows)
    monkeypatch.setattr(fc.np_ops.conv, "_TILE_MIN_ROWS", min_rows)
    x, w, b = LAYOUTS[layout](rand(3, 3, 6, 5, 6)), rand(4, *ws), rand(5, ws[0])
    for act in ("leaky_relu", "relu"):
        monkeypatch.setattr(fc.np_ops.conv, "_EPILOGUE_BYTES", 1 << 30)
        whole = fc.np_ops.call("Conv", x, w, b, activation=act, act_alpha=0.1, **attrs)
        monkeypatch.setattr(fc.np_ops.conv, "_EPILOGUE_BYTES", 1)
        y = fc.np_ops.call("Conv", x, w, b, activation=act, act_alpha=0.1, **attrs)
        assert np.array_equal(y, whole)
        ref = torch_conv(x, w, b, **attrs)
        ref = F.leaky_relu(ref, 0.1) if act == "leaky_relu" else F.relu(ref)
        check_close(y, ref.numpy(), op="Conv")


def test_pad_of_a_few_channel_nchw_input_plane_by_plane() -> None:
    """An NCHW image input (3 channels) is padded plane by plane into the channels-last
    buffer: the same padded tensor as the generic copy."""
    x = rand(7, 2, 3, 9, 11)
    xp = fc.np_ops.conv._pad_nhwc(x.transpose(0, 2, 3, 1), 1, 2, 3, 0)
    ref = np.pad(x, ((0, 0), (0, 0), (1, 3), (2, 0))).transpose(0, 2, 3, 1)
    assert xp.flags.c_contiguous and np.array_equal(xp, ref)


@pytest.fixture(autouse=True, params=["c_epilogue", "numpy_epilogue"])
def epilogue(request, monkeypatch):
    """Every test with the C epilogue (where built) and with numpy's, its definition."""
    if request.param == "c_epilogue" and not fc.np_ops.conv._C_EPILOGUE:
        pytest.skip("fc.np_ops._epilogue is not built")
    if request.param == "numpy_epilogue":
        monkeypatch.setattr(fc.np_ops.conv, "_C_EPILOGUE", False)
    return request.param


@pytest.fixture(autouse=True, params=["c_gemm", "numpy_gemm"])
def gemm(request, monkeypatch):
    """Every test with fc's GEMM kernel (where built and fast on this CPU) and with numpy's
    matmul (OpenBLAS), the fallback."""
    if request.param == "c_gemm" and not fc.np_ops.conv._C_GEMM:
        pytest.skip("fc.np_ops._gemm is not built or not used on this CPU")
    if request.param == "numpy_gemm":
        monkeypatch.setattr(fc.np_ops.conv, "_C_GEMM", False)
    return request.param


def skip_unless_tiles(gemm: str) -> None:
    """fc's pool runs numpy's GEMMs only with an OpenBLAS whose threads fc can scope (fc's
    kernel needs none)."""
    if gemm == "numpy_gemm" and fc.np_ops._blas.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")


def numpy_gemm_only(gemm: str) -> None:
    """A test of the numpy path's own machinery (its row blocks, tiles, im2col copies, BLAS
    threads), which fc's kernel does not run: with fc's kernel, a convolution is one
    ``_gemm.tiles`` call per thread (its tests: test_conv_kernel_*, test_gemm_tiles.py)."""
    if gemm == "c_gemm":
        pytest.skip("the numpy GEMM path's machinery")


@pytest.fixture
def force_threads(monkeypatch):
    """Split every parallel loop, however small, over 3 threads (more than the CI cores)."""
    monkeypatch.setattr(fc.np_ops._parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(fc.np_ops.conv, "_TILES_SERIAL_FLOPS", 0)
    monkeypatch.setattr(fc.np_ops._parallel, "num_workers", lambda: 3)


@pytest.mark.parametrize("activation", ["relu", "silu", ""])
@pytest.mark.parametrize(("xs", "ws", "attrs"), [
    pytest.param((1, 6, 8, 9), (7, 6, 3, 3), {"pads": (1, 1, 1, 1)}, id="batch1_padded"),
    pytest.param((4, 6, 8, 9), (7, 6, 3, 3), {"strides": (2, 2)}, id="batch4"),
    pytest.param((2, 6, 5, 5), (7, 6, 1, 1), {}, id="1x1"),
])
def test_conv_threaded(force_threads, xs, ws, attrs, activation):
    x, w, b = rand(6, *xs), rand(7, *ws, scale=0.3), rand(8, ws[0])
    act = {"relu": F.relu, "silu": F.silu, "": lambda y: y}[activation]
    y = fc.np_ops.call("Conv", x, w, b, activation=activation, **attrs)
    check_close(y, act(torch_conv(x, w, b, **attrs)).numpy(), op="Conv")


@pytest.mark.parametrize("activation", ["relu", "silu"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_add_threaded(force_threads, layout, activation):
    a, b = LAYOUTS[layout](rand(9, 2, 5, 6, 7)), LAYOUTS[layout](rand(10, 2, 5, 6, 7))
    y = fc.np_ops.call("Add", a, b, activation=activation)
    act = {"relu": F.relu, "silu": F.silu}[activation]
    check_close(y, act(T(np.ascontiguousarray(a)) + T(np.ascontiguousarray(b))).numpy(),
                op="Add")
    assert is_channels_last(y) == (layout == "channels_last")


def test_parallel_for_covers_range_once_and_raises(force_threads):
    seen: list[int] = []
    fc.np_ops._parallel.parallel_for(lambda a, b: seen.extend(range(a, b)), 10, 0)
    assert sorted(seen) == list(range(10))

    def fail(a: int, b: int) -> None:
        if a > 0:
            raise ValueError("in a worker")

    with pytest.raises(ValueError, match="in a worker"):
        fc.np_ops._parallel.parallel_for(fail, 10, 0)


@pytest.mark.parametrize("parts", [1, 4, 10, 25])
def test_parallel_for_parts(force_threads, parts):
    """``parts``: that many contiguous ranges (at most one per item), each index once."""
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fn(a: int, b: int) -> None:
        with lock:
            calls.append((a, b))

    fc.np_ops._parallel.parallel_for(fn, 10, 0, parts=parts)
    assert len(calls) == min(parts, 10)
    assert sorted(i for a, b in calls for i in range(a, b)) == list(range(10))


# -- the packed-weight cache ----------------------------------------------------------------

def test_packed_weight_cache_is_keyed_by_array_and_freezes_it():
    x = rand(11, 1, 4, 6, 6)
    w1 = rand(12, 5, 4, 3, 3)
    y1 = fc.np_ops.call("Conv", x, w1, pads=(1, 1, 1, 1))
    check_close(y1, torch_conv(x, w1, None, pads=(1, 1, 1, 1)).numpy(), op="Conv")
    with pytest.raises(ValueError, match="read-only"):
        w1[0] = 0  # would make the cached reordering stale: refused
    # New arrays (also ones that may reuse a dead array's id) are packed afresh.
    for seed in range(13, 18):
        w = rand(seed, 5, 4, 3, 3)
        y = fc.np_ops.call("Conv", x, w, pads=(1, 1, 1, 1))
        check_close(y, torch_conv(x, w, None, pads=(1, 1, 1, 1)).numpy(), op="Conv")
        del w, y
    # A write through another alias of the memory is seen too (sampled elements).
    base = rand(18, 5 * 4 * 3 * 3)
    w3 = base.reshape(5, 4, 3, 3)
    fc.np_ops.call("Conv", x, w3, pads=(1, 1, 1, 1))
    base *= 2
    check_close(fc.np_ops.call("Conv", x, w3, pads=(1, 1, 1, 1)),
                torch_conv(x, w3, None, pads=(1, 1, 1, 1)).numpy(), op="Conv")
    w2 = w1.copy()  # writable again
    w2[0] = 0
    check_close(fc.np_ops.call("Conv", x, w2, pads=(1, 1, 1, 1)),
                torch_conv(x, w2, None, pads=(1, 1, 1, 1)).numpy(), op="Conv")


# -- kernels downstream of a channels-last Conv ---------------------------------------------

@pytest.mark.parametrize(("op", "attrs", "torch_fn"), [
    pytest.param("MaxPool", {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)},
                 lambda x: F.max_pool2d(x, 3, 2, 1), id="MaxPool"),
    pytest.param("AveragePool", {"kernel_shape": (2, 2), "strides": (2, 2)},
                 lambda x: F.avg_pool2d(x, 2, 2), id="AveragePool"),
    pytest.param("GlobalAveragePool", {}, lambda x: x.mean((2, 3), keepdim=True),
                 id="GlobalAveragePool"),
    pytest.param("Relu", {}, F.relu, id="Relu"),
    pytest.param("Flatten", {}, lambda x: x.flatten(1), id="Flatten"),
    pytest.param("Softmax", {"axis": 1}, lambda x: F.softmax(x, 1), id="Softmax"),
    pytest.param("BatchNormalization", {"epsilon": 1e-5}, None, id="BatchNormalization"),
])
def test_kernels_on_channels_last_input(op, attrs, torch_fn):
    x = channels_last(rand(20, 2, 6, 7, 7))
    xt = T(np.ascontiguousarray(x))
    if op == "BatchNormalization":
        s, b, m, v = rand(21, 6), rand(22, 6), rand(23, 6), np.abs(rand(24, 6)) + 0.5
        y = fc.np_ops.call(op, x, s, b, m, v, **attrs)
        ref = F.batch_norm(xt, T(m), T(v), T(s), T(b), eps=1e-5).numpy()
    else:
        y = fc.np_ops.call(op, x, **attrs)
        ref = torch_fn(xt).numpy()
    check_close(y, ref, op=op)
    if op in ("MaxPool", "AveragePool", "Relu", "BatchNormalization"):
        assert is_channels_last(y), f"{op} dropped the channels-last layout"


def test_run_returns_contiguous_outputs():
    """Graph outputs are plain C-ordered arrays, whatever layout the last kernel used."""
    from fc.ir import Graph

    g = Graph("conv_out")
    x = g.add_input("x", (1, 3, 6, 6))
    w = g.add_const("w", rand(30, 4, 3, 3, 3))
    g.outputs.append(g.add_node("Conv", [x, w], {"pads": (1, 1, 1, 1)}, name="conv").output)
    xv = rand(31, 2, 3, 6, 6)
    y = fc.np_ops.run(g, xv)[g.outputs[0].name]
    assert y.flags.c_contiguous
    check_close(y, torch_conv(xv, g.initializers["w"].const, None, pads=(1, 1, 1, 1)).numpy(),
                op="Conv")


@pytest.mark.parametrize("band_bytes", [pytest.param(1, id="one_row_bands"),
                                        pytest.param(1 << 30, id="whole_images")])
@pytest.mark.parametrize(("op", "attrs", "torch_fn"), [
    pytest.param("MaxPool", {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                             "ceil_mode": 1},
                 lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), id="MaxPool_ceil"),
    pytest.param("MaxPool", {"kernel_shape": (2, 3), "dilations": (2, 1), "strides": (1, 2)},
                 lambda x: F.max_pool2d(x, (2, 3), (1, 2), dilation=(2, 1)), id="MaxPool_dilated"),
    pytest.param("AveragePool", {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                 "count_include_pad": 1},
                 lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), id="AveragePool_pads"),
])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pooling_bands_threaded(monkeypatch, force_threads, band_bytes, op, attrs, torch_fn,
                                layout):
    """Pooling runs image by image in bands of output rows, split over the pool."""
    monkeypatch.setattr(fc.np_ops.nn, "_POOL_BAND_BYTES", band_bytes)
    x = LAYOUTS[layout](rand(40, 3, 5, 11, 10))
    y = fc.np_ops.call(op, x, **attrs)
    check_close(y, torch_fn(T(np.ascontiguousarray(x))).numpy(), op=op)
    assert is_channels_last(y) == (layout == "channels_last")


def test_parallel_for_does_not_wait_for_a_busy_pool(force_threads):
    """Parts go to whoever is free: with every pool worker blocked, the caller does them all."""
    import threading

    release = threading.Event()
    pool = fc.np_ops._parallel._get_pool()
    blockers = [pool.submit(release.wait) for _ in range(pool._max_workers)]
    try:
        seen: list[int] = []
        caller = threading.Thread(target=fc.np_ops._parallel.parallel_for,
                                  args=(lambda a, b: seen.extend(range(a, b)), 12, 0))
        caller.start()
        caller.join(timeout=30)
        assert not caller.is_alive(), "parallel_for waited for a worker that never started"
        assert sorted(seen) == list(range(12))
    finally:
        release.set()
        for f in blockers:
            f.result()


# -- GEMM tiles on fc's pool (BLAS on one thread) -------------------------------------------

@pytest.mark.parametrize(("min_rows", "m_align"), [
    pytest.param(1, 1, id="row_tiles"),            # many row tiles, some across images
    pytest.param(1 << 20, 2, id="channel_tiles"),  # too few rows: output-channel tiles
])
@pytest.mark.parametrize(("xs", "ws", "attrs", "layout"), [
    pytest.param((3, 6, 5, 6), (9, 6, 3, 3), {"pads": (1, 1, 1, 1)}, "nchw", id="im2col"),
    pytest.param((3, 6, 5, 6), (9, 6, 1, 1), {}, "channels_last", id="1x1_direct"),
    pytest.param((3, 6, 5, 6), (9, 6, 1, 1), {"strides": (2, 1)}, "channels_last",
                 id="1x1_copied"),
])
def test_conv_gemm_tiles(monkeypatch, force_threads, gemm, min_rows, m_align, xs, ws, attrs, layout):
    """With fc's pool running the GEMMs, every tile (a block of rows or of output channels)
    gets its bias and activation; the result is torch's."""
    numpy_gemm_only(gemm)
    if fc.np_ops._blas.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")
    monkeypatch.setattr(fc.np_ops.conv, "_MIN_TILE_ROWS", min_rows)
    monkeypatch.setattr(fc.np_ops.conv, "_M_ALIGN", m_align)
    monkeypatch.setattr(fc.np_ops.conv, "_OWN_TILE_ROWS", 0)
    # the tiles even right after a multi-threaded GEMM of an earlier test (a spinning worker)
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_FLOPS", 0)
    calls = []
    real = fc.np_ops.conv._Im2colGemm.run_tiles
    monkeypatch.setattr(fc.np_ops.conv._Im2colGemm, "run_tiles",
                        lambda self, workers: calls.append(workers) or real(self, workers))
    x, w, b = LAYOUTS[layout](rand(50, *xs)), rand(51, *ws, scale=0.3), rand(52, ws[0])
    y = fc.np_ops.call("Conv", x, w, b, activation="leaky_relu", act_alpha=0.1, **attrs)
    check_close(y, F.leaky_relu(torch_conv(x, w, b, **attrs), 0.1).numpy(), op="Conv")
    assert calls == [3], "the tiles path did not run"


@pytest.mark.parametrize(("xs", "attrs", "res"), [
    pytest.param((3, 64, 8, 16), {"pads": (1, 1, 1, 1)}, False, id="im2col"),
    pytest.param((3, 64, 8, 16), {"pads": (1, 1, 1, 1)}, True, id="im2col_residual"),
    pytest.param((3, 64, 16, 16), {"pads": (1, 1, 1, 1), "strides": (2, 1)}, False,
                 id="stride2"),
])
def test_conv_row_tiles_balanced(monkeypatch, force_threads, gemm, xs, attrs, res):
    """The row tiles' count is rounded up to a multiple of parallel_for's 2 * workers parts
    (3 forced workers: 8 tiles of 3 output rows become 12 of 2), each tile handed out on
    its own: the result is torch's and the same bits as the tiles in 2 * workers parts and
    as the unbalanced tiles, the residual added in either. The tiles (32 and
    48 GEMM rows, K = 576, M = 64) are above OpenBLAS's small-matrix kernels, which round
    differently (measured: up to 18 rows of that K and M)."""
    numpy_gemm_only(gemm)
    conv_mod = fc.np_ops.conv
    skip_unless_tiles(gemm)
    monkeypatch.setattr(conv_mod, "_OWN_TILE_ROWS", 0)
    monkeypatch.setattr(conv_mod, "_SPIN_FLOPS", 0)
    monkeypatch.setattr(conv_mod, "_MIN_TILE_ROWS", 1)
    monkeypatch.setattr(conv_mod, "_TILE_MIN_ROWS", 1)
    k, m = 64 * 9, 64
    # 48 GEMM rows (3 output rows of 16 pixels) per tile before balancing; the last
    # parallel_for is the tiles (the padding copy may be one before)
    monkeypatch.setattr(conv_mod, "_BLOCK_BYTES", (k + m + (m if res else 0)) * 4 * 48)
    counts, parts = [], []
    real = conv_mod.parallel_for

    def spy(fn, n, nbytes, **kw):
        counts.append(n)
        parts.append(kw.get("parts"))
        return real(fn, n, nbytes, **kw)

    monkeypatch.setattr(conv_mod, "parallel_for", spy)
    x, w, b = rand(80, *xs), rand(81, m, 64, 3, 3, scale=0.05), rand(82, m)
    full = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, act_alpha=0.0,
                act_beta=0.0)
    full.update(attrs)
    ho, wo = conv_mod._output_hw(x, w, full["strides"], full["pads"], full["dilations"])
    r = channels_last(rand(83, xs[0], m, ho, wo)) if res else None

    def run() -> np.ndarray:
        if res:
            return conv_mod.conv_residual(x, w, b, r, **full, activation="",
                                          add_activation="relu", add_alpha=0.0, add_beta=0.0)
        return conv_mod.conv(x, w, b, **full, activation="relu")

    y = run()
    assert counts[-1] == 12, counts  # 24 output rows: 12 tiles of 2 (8 of 3 unbalanced)
    assert parts[-1] == 12, parts  # handed out one tile at a time (_TILE_TICKETS)
    ref = F.relu(torch_conv(x, w, b, **full) + (T(np.ascontiguousarray(r)) if res else 0))
    check_close(y, ref.numpy(), op="Conv")
    monkeypatch.setattr(conv_mod, "_TILE_TICKETS", False)
    y1 = run()
    assert parts[-1] is None, parts
    assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(y1).tobytes()
    monkeypatch.setattr(conv_mod, "_BALANCE_TILES", False)
    y0 = run()
    assert counts[-1] == 8, counts
    assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(y0).tobytes()


@pytest.mark.parametrize(("hw", "spin", "spin_flops", "tiles"), [
    pytest.param(8, False, 5e8, False, id="few_rows_blas_threads"),
    pytest.param(64, False, 5e8, True, id="many_rows_pool_tiles"),
    pytest.param(64, True, 5e8, False, id="many_rows_worker_spinning_blas_threads"),
    pytest.param(64, True, 1e6, True, id="many_rows_worker_spinning_large_pool_tiles"),
])
def test_conv_who_runs_the_gemms(monkeypatch, force_threads, gemm, hw, spin, spin_flops,
                                 tiles):
    """numpy's GEMMs: fc's pool runs them only with 2 * workers * _OWN_TILE_ROWS GEMM rows or
    more (3 forced workers, 16 rows per tile: 96 rows); fewer go to BLAS's own threads in row
    blocks. While OpenBLAS's worker probably still spins after a multi-threaded GEMM
    (within _SPIN_SECONDS of it), a conv of at most _SPIN_FLOPS goes to BLAS's threads too
    (this one: 2 * 4096 * 54 * 40 = 17.7 Mflop), a larger one keeps the pool. fc's kernel
    repacks nothing and uses no BLAS thread: always the pool's tiles. All give torch's
    result."""
    numpy_gemm_only(gemm)
    if gemm == "c_gemm":
        tiles = True
    elif fc.np_ops._blas.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")
    monkeypatch.setattr(fc.np_ops.conv, "_OWN_TILE_ROWS", 16)
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_FLOPS", spin_flops)
    # the window: "just now" and a window no delay of the test can outlast, or "never"
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_SECONDS", 3600.0)
    monkeypatch.setattr(fc.np_ops._blas, "_last_threaded",
                        time.perf_counter() if spin else float("-inf"))
    calls = []
    for meth in ("run_tiles", "run_blocks"):
        real = getattr(fc.np_ops.conv._Im2colGemm, meth)
        monkeypatch.setattr(fc.np_ops.conv._Im2colGemm, meth,
                            lambda self, *a, _m=meth, _r=real: calls.append(_m) or _r(self, *a))
    x, w, b = rand(53, 1, 6, hw, hw), rand(54, 40, 6, 3, 3, scale=0.3), rand(55, 40)
    attrs = {"pads": (1, 1, 1, 1)}
    y = fc.np_ops.call("Conv", x, w, b, activation="relu", **attrs)
    check_close(y, F.relu(torch_conv(x, w, b, **attrs)).numpy(), op="Conv")
    assert calls == (["run_tiles"] if tiles else ["run_blocks"])


def test_blocks_path_records_threaded_gemm(monkeypatch, gemm):
    """A conv on BLAS's threads records when its GEMMs ran if OpenBLAS has more than one
    thread (the next small convs then avoid fc's pool), and records nothing on one thread;
    a conv on fc's kernel runs no BLAS GEMM and records nothing."""
    numpy_gemm_only(gemm)
    if fc.np_ops._blas.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")
    setter, getter = fc.np_ops._blas._get_api()
    saved = getter()
    x, w = rand(56, 1, 6, 8, 8), rand(57, 40, 6, 3, 3, scale=0.3)
    try:
        for threads in (1, 2):
            setter(threads)
            monkeypatch.setattr(fc.np_ops._blas, "_last_threaded", float("-inf"))
            fc.np_ops.call("Conv", x, w, None, pads=(1, 1, 1, 1))
            since = fc.np_ops._blas.since_threaded_gemm()
            assert (since < 60.0) == (threads > 1 and gemm == "numpy_gemm"), (threads, since)
    finally:
        setter(saved)


def test_blas_single_threaded_scopes_and_restores():
    """OpenBLAS is on one thread inside (nested) blocks and back to its count after."""
    from fc.np_ops import _blas

    before = _blas.blas_threads()
    if before is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")
    with _blas.single_threaded() as own:
        assert own and _blas.blas_threads() == 1
        with _blas.single_threaded():
            assert _blas.blas_threads() == 1
        assert _blas.blas_threads() == 1
    assert _blas.blas_threads() == before
    with pytest.raises(RuntimeError), _blas.single_threaded():
        raise RuntimeError("inside")
    assert _blas.blas_threads() == before


@pytest.mark.parametrize("shape", [pytest.param((2, 40, 300), id="few_rows"),
                                   pytest.param((300, 40, 70), id="row_blocks"),
                                   pytest.param((50, 40, 300), id="column_blocks")])
def test_matmul_tiles(monkeypatch, force_threads, shape):
    monkeypatch.setattr(fc.np_ops.nn, "_TILE", 8)
    r, k, n = shape
    a, b = rand(60, r, k), rand(61, k, n)
    y = fc.np_ops.call("MatMul", a, b)
    assert y.flags.c_contiguous and y.shape == (r, n)
    check_close(y, torch.matmul(T(a), T(b)).numpy(), op="MatMul")


# -- conv_post: an elementwise step on each output block in the epilogue ---------------------

@pytest.mark.parametrize("path", ["row_blocks", "row_tiles", "channel_tiles"])
@pytest.mark.parametrize(("ws", "attrs", "layout"), [
    pytest.param((70, 6, 3, 3), {"pads": (1, 1, 1, 1)}, "nchw", id="im2col"),
    pytest.param((70, 6, 1, 1), {}, "channels_last", id="1x1_direct"),
    pytest.param((70, 6, 1, 1), {"strides": (2, 1)}, "channels_last", id="1x1_copied"),
])
def test_conv_post_is_the_step_on_the_conv_output(monkeypatch, force_threads, gemm, path, ws, attrs,
                                                  layout):
    """``conv_post(x, w, b, post)`` calls ``post`` in place on every output block after the
    bias and activation: bit for bit ``post`` applied to ``conv``'s output (an elementwise
    ``post``), in the channels-last layout, on each path that runs the GEMMs (BLAS's row
    blocks, fc's row tiles, fc's output-channel tiles; fc's kernel: blocks of rows over the
    pool after the convolution); a grouped conv is left to ``conv``."""
    conv_mod = fc.np_ops.conv
    if path == "row_blocks":  # fc's kernel: one-output-row tiles
        monkeypatch.setattr(conv_mod, "_BLOCK_BYTES", 1)
        monkeypatch.setattr(conv_mod, "_MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(conv_mod, "_TILE_MIN_ROWS", 1)
        monkeypatch.setattr(conv_mod, "_OWN_TILE_ROWS", 1 << 20)  # never the tiles
    else:
        skip_unless_tiles(gemm)
        monkeypatch.setattr(conv_mod, "_OWN_TILE_ROWS", 0)
        monkeypatch.setattr(conv_mod, "_SPIN_FLOPS", 0)  # a spinning BLAS worker: tiles still
        monkeypatch.setattr(conv_mod, "_MIN_TILE_ROWS", 1 if path == "row_tiles" else 1 << 20)
        monkeypatch.setattr(conv_mod, "_TILE_MIN_ROWS",
                            1 if path == "row_tiles" else 1 << 20)
        monkeypatch.setattr(conv_mod, "_M_ALIGN", 2)  # fc's kernel: 32 (70 = 32 + 38)
    x, w, b = LAYOUTS[layout](rand(60, 3, 6, 5, 6)), rand(61, *ws, scale=0.3), rand(62, ws[0])
    full = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                activation="relu", act_alpha=0.0, act_beta=0.0)
    full.update(attrs)
    blocks = []

    def post(blk):
        blocks.append(blk.shape)
        np.multiply(blk, np.float32(7.3), out=blk)
        np.rint(blk, out=blk)

    ref = conv_mod.conv(x, w, b, **full)
    y = conv_mod.conv_post(x, w, b, post, **full)
    want = np.rint(ref * np.float32(7.3))
    assert y.tobytes() == want.tobytes() and y.strides == ref.strides
    assert len(blocks) > 1 and sum(r * m for r, m in blocks) == y.size  # each output once
    if path == "channel_tiles" and gemm == "numpy_gemm":  # fc's kernel: blocks of rows
        assert all(m < ws[0] for _, m in blocks)
    assert conv_mod.conv_post(rand(1, 2, 6, 7, 7), rand(2, 8, 3, 3, 3), None, post,
                              **{**full, "group": 2}) is None


# -- conv_residual(overwrite=True): the sum written into the residual's memory ---------------

@pytest.mark.parametrize("path", ["row_blocks", "row_tiles", "channel_tiles"])
@pytest.mark.parametrize(("ws", "attrs", "layout"), [
    pytest.param((70, 6, 3, 3), {"pads": (1, 1, 1, 1)}, "nchw", id="im2col"),
    pytest.param((70, 6, 1, 1), {}, "channels_last", id="1x1_direct"),
    pytest.param((70, 6, 1, 1), {"strides": (2, 1)}, "channels_last", id="1x1_copied"),
])
def test_conv_residual_overwrite_writes_the_same_bits_into_the_residual(
        monkeypatch, force_threads, gemm, path, ws, attrs, layout):
    """With overwrite, the sum lands in the residual's own memory (returned), bit for bit
    the new-array result, on each GEMM path (several blocks / tiles, scratch reused);
    NaN and -0.0 in the residual keep their bits. A residual sharing memory with x is not
    overwritten. With keep_conv the Conv's output is kept beside a new sum, the same bits."""
    conv_mod = fc.np_ops.conv
    if path == "row_blocks":  # fc's kernel: one-output-row tiles
        monkeypatch.setattr(conv_mod, "_BLOCK_BYTES", 1)
        monkeypatch.setattr(conv_mod, "_MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(conv_mod, "_TILE_MIN_ROWS", 1)
        monkeypatch.setattr(conv_mod, "_OWN_TILE_ROWS", 1 << 20)
    else:
        skip_unless_tiles(gemm)
        monkeypatch.setattr(conv_mod, "_OWN_TILE_ROWS", 0)
        monkeypatch.setattr(conv_mod, "_SPIN_FLOPS", 0)
        monkeypatch.setattr(conv_mod, "_MIN_TILE_ROWS", 1 if path == "row_tiles" else 1 << 20)
        monkeypatch.setattr(conv_mod, "_TILE_MIN_ROWS",
                            1 if path == "row_tiles" else 1 << 20)
        monkeypatch.setattr(conv_mod, "_M_ALIGN", 2)  # fc's kernel: 32 (70 = 32 + 38)
    monkeypatch.setattr(conv_mod, "_EPILOGUE_BYTES", 70 * 4 * 2)  # two rows per chunk
    x, w, b = LAYOUTS[layout](rand(70, 3, 6, 5, 6)), rand(71, *ws, scale=0.3), rand(72, ws[0])
    full = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, activation="",
                act_alpha=0.0, act_beta=0.0, add_activation="relu", add_alpha=0.0, add_beta=0.0)
    full.update(attrs)
    ho, wo = conv_mod._output_hw(x, w, full["strides"], full["pads"], full["dilations"])
    res = channels_last(rand(73, 3, ws[0], ho, wo))
    res[0, 0, 0, :2] = np.nan
    res[1, 1, 0, 0] = -0.0
    ref = conv_mod.conv_residual(x, w, b, res, **full)
    assert not np.shares_memory(ref, res)
    mine = res.copy(order="K")
    assert is_channels_last(mine)
    y = conv_mod.conv_residual(x, w, b, mine, **full, overwrite=True)
    assert np.shares_memory(y, mine) and y.strides == ref.strides
    assert y.tobytes() == ref.tobytes() and mine.tobytes() == ref.tobytes()
    # keep_conv (an observer watches): the Conv's own output, as the Conv kernel gives it,
    # and the sum in a new array, the residual untouched
    kept = res.copy(order="K")
    conv_y, total = conv_mod.conv_residual(x, w, b, kept, **full, overwrite=True, keep_conv=True)
    plain = fc.np_ops.call("Conv", x, w, b, **{k: full[k] for k in (
        "strides", "pads", "dilations", "group")})
    assert conv_y.tobytes() == plain.tobytes() and is_channels_last(conv_y)
    assert total.tobytes() == ref.tobytes() and total.strides == ref.strides
    assert kept.tobytes(order="A") == res.tobytes(order="A") and not np.shares_memory(total, kept)
    # the input itself as the residual (a 1x1 conv, M = C): a new array, the input untouched
    x2 = channels_last(rand(74, 2, 6, 5, 6))
    before = x2.copy()
    y2 = conv_mod.conv_residual(x2, rand(75, 6, 6, 1, 1), None, x2,
                                **{**full, "strides": (1, 1), "pads": (0, 0, 0, 0)},
                                overwrite=True)
    assert not np.shares_memory(y2, x2) and np.array_equal(x2, before)


@pytest.mark.parametrize("path", ["blocks", "tiles"])
@pytest.mark.parametrize(("xs", "ws", "attrs", "by_runs"), [
    pytest.param((1, 3, 40, 40), (16, 3, 7, 7), {"strides": (2, 2), "pads": (3, 3, 3, 3)}, True,
                 id="stem_c3_b1"),
    pytest.param((8, 3, 24, 24), (16, 3, 7, 7), {"strides": (2, 2), "pads": (3, 3, 3, 3)}, True,
                 id="stem_c3_b8"),
    pytest.param((2, 1, 21, 19), (5, 1, 5, 5), {"strides": (1, 2), "pads": (2, 1, 0, 2)}, True,
                 id="c1_5x5_asym"),
    pytest.param((8, 4, 17, 17), (9, 4, 3, 3), {"strides": (3, 3), "pads": (1, 1, 1, 1)}, True,
                 id="c4_3x3_stride3_b8"),
    pytest.param((1, 3, 15, 15), (6, 3, 3, 3), {"dilations": (2, 2), "pads": (2, 2, 2, 2)}, False,
                 id="c3_dilated_float_copy"),
    pytest.param((1, 32, 9, 9), (6, 32, 3, 3), {"pads": (1, 1, 1, 1)}, False,
                 id="c32_long_runs_float_copy"),
])
def test_conv_im2col_by_runs(monkeypatch, force_threads, gemm, path, xs, ws, attrs, by_runs):
    """Few input channels: the im2col copies each run of kw*C elements as one opaque item
    (_run_view), on both paths (BLAS's threads' row blocks, fc's pool's tiles), small blocks
    so that runs cross images; dilated or long runs keep the float copy. torch's result, and
    the same bits as the float copy."""
    numpy_gemm_only(gemm)
    if path == "tiles":
        skip_unless_tiles(gemm)
    monkeypatch.setattr(fc.np_ops.conv, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(fc.np_ops.conv, "_MIN_BLOCK_ROWS", 8)
    monkeypatch.setattr(fc.np_ops.conv, "_MIN_TILE_ROWS", 8)
    monkeypatch.setattr(fc.np_ops.conv, "_TILE_MIN_ROWS", 8)
    monkeypatch.setattr(fc.np_ops.conv, "_OWN_TILE_ROWS", 0 if path == "tiles" else 1 << 30)
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_FLOPS", 0)
    runs = []
    real = fc.np_ops.conv._run_view
    monkeypatch.setattr(fc.np_ops.conv, "_run_view",
                        lambda *a: runs.append(real(*a)) or runs[-1])
    x, w, b = rand(60, *xs), rand(61, *ws, scale=0.3), rand(62, ws[0])
    y = fc.np_ops.call("Conv", x, w, b, activation="relu", **attrs)
    check_close(y, F.relu(torch_conv(x, w, b, **attrs)).numpy(), op="Conv")
    assert [r is not None for r in runs] == [by_runs]
    monkeypatch.setattr(fc.np_ops.conv, "_SHORT_RUN_BYTES", 0)
    y0 = fc.np_ops.call("Conv", x, w, b, activation="relu", **attrs)
    assert runs[-1] is None
    np.testing.assert_array_equal(np.ascontiguousarray(y).view(np.uint32),
                                  np.ascontiguousarray(y0).view(np.uint32))


# -- fc's GEMM kernel: row x channel tiles ---------------------------------------------------

@pytest.mark.parametrize("steps", [(32, 100), (64, 32), (13, 64), (1, 32)])
@pytest.mark.parametrize("res", [False, True, "into", "keep_conv"])
def test_conv_kernel_tiles_any_split(monkeypatch, force_threads, gemm, res, steps):
    """With fc's kernel a convolution is one ``_gemm.tiles`` call per pool thread, all drawing
    tiles of (rows, output channels) from one ticket: whatever the split (row tiles across
    images, 32-channel panels, both, single rows) the result is torch's and the same bits
    as one tile on one thread, the residual added (into a new array, into the residual's
    memory, or beside the kept convolution)."""
    if gemm == "numpy_gemm":
        pytest.skip("fc's kernel only (numpy's tiles: test_conv_gemm_tiles)")
    conv_mod = fc.np_ops.conv
    x, w, b = rand(90, 2, 8, 8, 8), rand(91, 100, 8, 3, 3, scale=0.1), rand(92, 100)
    full = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1, act_alpha=0.0,
                act_beta=0.0)
    r = channels_last(rand(93, 2, 100, 8, 8))

    def run() -> np.ndarray:
        if not res:
            return conv_mod.conv(x, w, b, **full, activation="relu")
        kw = dict(**full, activation="", add_activation="relu", add_alpha=0.0, add_beta=0.0)
        if res == "into":
            return conv_mod.conv_residual(x, w, b, r.copy(order="K"), **kw, overwrite=True)
        if res == "keep_conv":
            return conv_mod.conv_residual(x, w, b, r, **kw, keep_conv=True)[1]
        return conv_mod.conv_residual(x, w, b, r, **kw)

    seen = []
    monkeypatch.setattr(conv_mod, "_tile_steps", lambda rows, m, workers: seen.append(
        (rows, m, workers)) or steps)
    y = run()
    assert seen == [(128, 100, 3)]
    ref = F.relu(torch_conv(x, w, b, **full) + (T(np.ascontiguousarray(r)) if res else 0))
    check_close(y, ref.numpy(), op="Conv")
    monkeypatch.setattr(fc.np_ops._parallel, "num_workers", lambda: 1)
    y1 = run()
    assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(y1).tobytes()


def test_tile_steps_balance_rows_or_split_channels():
    """Row tiles of equal height (a multiple of 8) when rows suffice and are at least the
    channels, up to 4 per thread; few rows (batch 1, late layers) or fewer rows than
    channels (batch 8's last stage): whole 32-channel panels, two tiles per thread."""
    steps = fc.np_ops.conv._tile_steps
    assert steps(25088, 64, 2) == (3136, 64)     # 8 tiles: 4 per thread
    assert steps(1568, 1024, 2) == (200, 1024)   # 8 tiles of 196 rows, rounded up to 8
    assert steps(392, 256, 2) == (72, 256)       # 6 tiles of 66 rows, rounded up to 8
    assert steps(392, 512, 2) == (392, 128)      # fewer rows than channels: 4 panel tiles
    assert steps(392, 2048, 2) == (392, 512)
    assert steps(800, 64, 3) == (72, 64)         # 12 tiles of 67 rows, rounded up to 8
    assert steps(196, 256, 2) == (196, 64)       # 4 tiles of 2 panels
    assert steps(49, 2048, 2) == (49, 512)
    assert steps(49, 1000, 2) == (49, 256)       # 32 panels (the last one 8 wide)


def test_conv_kernel_only_for_float32(gemm):
    """float64 (and other dtypes) take numpy's matmul even where fc's kernel is on."""
    x, w, b = rand(94, 2, 5, 6, 6).astype(np.float64), rand(95, 7, 5, 3, 3), rand(96, 7)
    w, b = w.astype(np.float64), b.astype(np.float64)
    y = fc.np_ops.call("Conv", x, w, b, pads=(1, 1, 1, 1))
    assert y.dtype == np.float64
    check_close(y, torch_conv(x, w, b, pads=(1, 1, 1, 1)).numpy(), op="Conv")


def test_num_workers_follows_the_affinity(monkeypatch):
    """The pool's thread count is the CPUs this process may run on (at most MAX_WORKERS),
    read again once _WORKERS_TTL has passed since the last read, and served from that read
    before."""
    par = fc.np_ops._parallel
    reads = []

    def affinity(pid):
        reads.append(pid)
        return {0, 1, 2}

    monkeypatch.setattr(par.os, "sched_getaffinity", affinity)
    monkeypatch.setattr(par, "_workers", (float("-inf"), 1))
    monkeypatch.setattr(par, "_WORKERS_TTL", 3600.0)
    assert par.num_workers() == 3 and par.num_workers() == 3 and len(reads) == 1
    monkeypatch.setattr(par.os, "sched_getaffinity", lambda pid: set(range(20)))
    assert par.num_workers() == 3  # within the TTL: the last read
    monkeypatch.setattr(par, "_WORKERS_TTL", 0.0)
    assert par.num_workers() == par.MAX_WORKERS
    monkeypatch.setattr(par.os, "sched_getaffinity", lambda pid: {1})
    assert par.num_workers() == 1
