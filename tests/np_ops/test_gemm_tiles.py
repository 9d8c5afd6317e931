"""fc's own GEMM (np_ops/_gemm.c) by tiles: the convolution read in place from the padded
input, the epilogue fused, the tiles handed out from a shared ticket.

Oracles: the float64 product of numpy's im2col on the exact data, within the float32 error
bound of a length-K dot product (gamma_K * sum |a| |w|); numpy's float32 np.matmul bit for bit
where numpy's BLAS is OpenBLAS running its SkylakeX kernels (the K blocking the kernel
reproduces; skipped elsewhere); numpy's own adds and maximum for the epilogue on the kernel's
own GEMM output. Every instruction set this machine runs gives the same bits, and so does
every split into tiles.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

gemm = pytest.importorskip("fc.np_ops._gemm")

NR = 32


def pack(w2: np.ndarray) -> np.ndarray:
    """(M, K) -> the kernel's (P, K, 32) layout (module docstring), zero past M."""
    m, k = w2.shape
    p = -(-m // NR)
    wp = np.zeros((p * NR, k), np.float32)
    wp[:m] = w2
    return np.ascontiguousarray(wp.reshape(p, NR, k).transpose(0, 2, 1))


@pytest.fixture(params=["avx512", "avx2", "generic"])
def isa(request):
    if request.param not in gemm.ISAS:
        pytest.skip(f"this CPU does not run {request.param} (it runs {', '.join(gemm.ISAS)})")
    previous = gemm.set_isa(request.param)
    yield request.param
    gemm.set_isa(previous)


def _conv_case(n, c, h, w, m, kh, kw, stride, pad, dil, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
    xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), np.float32)
    xp[:, pad:pad + h, pad:pad + w] = x
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    s_n, s_h, s_w, s_c = xp.strides
    cols = as_strided(xp, (n, ho, wo, kh, kw, c),
                      (s_n, s_h * stride, s_w * stride, s_h * dil, s_w * dil, s_c))
    a = np.ascontiguousarray(cols).reshape(n * ho * wo, -1)
    w2 = np.ascontiguousarray(wt.transpose(0, 2, 3, 1)).reshape(m, -1)
    geometry = (ho, wo, kh, kw, stride, stride, dil, dil)
    return xp, geometry, a, w2


CONVS = [  # (N, C, H, W, M, kh, kw, stride, pad, dilation)
    (1, 64, 14, 14, 64, 3, 3, 1, 1, 1),
    (2, 3, 23, 19, 40, 7, 7, 2, 3, 1),     # the stem's runs of 21 floats
    (1, 200, 9, 9, 70, 3, 3, 2, 1, 1),     # K = 1800: four K blocks; M not a multiple of 32
    (2, 16, 11, 11, 33, 3, 3, 1, 2, 2),    # dilated: runs of C floats
    (1, 513, 5, 5, 1000, 1, 1, 1, 0, 1),   # K in (Q, 2Q): two halves; 1000 channels
    (3, 5, 7, 6, 3, 2, 3, 1, 0, 1),        # rectangular kernel, 3 channels out
    (1, 128, 8, 8, 256, 1, 1, 2, 0, 1),    # 1x1 stride 2, read in place
]


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c)))
def test_conv_tiles_within_the_float32_bound_of_float64_im2col(case, isa):
    xp, geometry, a, w2 = _conv_case(*case)
    out = np.full((a.shape[0], w2.shape[0]), np.nan, np.float32)
    gemm.tiles(xp, geometry, pack(w2), out, (a.shape[0], w2.shape[0]), None, None, None, None,
               False, False)
    exact = a.astype(np.float64) @ w2.T.astype(np.float64)
    k = a.shape[1]
    bound = 1.01 * k * 2.0 ** -24 * (np.abs(a).astype(np.float64) @ np.abs(w2).T.astype(np.float64))
    assert np.all(np.abs(out - exact) <= bound)


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c)))
def test_every_isa_and_every_tiling_gives_the_same_bits(case):
    xp, geometry, a, w2 = _conv_case(*case, seed=1)
    rows, m = a.shape[0], w2.shape[0]
    packed = pack(w2)
    results = []
    for isa in gemm.ISAS:
        previous = gemm.set_isa(isa)
        try:
            for steps in [(rows, m), (max(1, rows // 3), NR), (7, 2 * NR), (1, m)]:
                out = np.full((rows, m), np.nan, np.float32)
                gemm.tiles(xp, geometry, packed, out, steps, None, None, None, None, False, False)
                results.append(out)
        finally:
            gemm.set_isa(previous)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])
    # gemm() on the im2col matrix, by column slices: the same bits again
    out = np.full((rows, m + 5), np.nan, np.float32)[:, 2:2 + m]
    for c0 in range(0, m, NR):
        gemm.gemm(a, packed, out[:, c0:c0 + NR], c0)
    np.testing.assert_array_equal(out, results[0])


def _openblas_skylakex() -> bool:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    return any(i.get("internal_api") == "openblas" and str(i.get("architecture", "")).lower()
               == "skylakex" for i in info)


@pytest.mark.parametrize("rows,k,m", [(300, 147, 64), (200, 576, 64), (100, 1152, 128),
                                      (64, 2304, 256), (49, 4608, 512), (150, 1001, 96),
                                      (100, 449, 40), (300, 64, 256)])
def test_bits_equal_numpy_openblas_skylakex(rows, k, m):
    """The kernel cuts K as OpenBLAS's threaded level-3 driver does (Q = 448, the rest below
    2Q in two halves, the first rounded up): numpy's float32 matmul bit for bit where it runs
    OpenBLAS's SkylakeX kernels (shapes past its small-matrix path)."""
    if not _openblas_skylakex():
        pytest.skip("numpy's BLAS is not OpenBLAS with SkylakeX kernels")
    rng = np.random.default_rng(k)
    a = rng.standard_normal((rows, k)).astype(np.float32)
    w2 = rng.standard_normal((m, k)).astype(np.float32)
    out = np.empty((rows, m), np.float32)
    gemm.gemm(a, pack(w2), out)
    np.testing.assert_array_equal(out, np.matmul(a, w2.T))


def _epilogue_oracle(y, bias, res, relu):
    v = y.copy()
    if bias is not None:
        v = v + bias
    conv_out = v.copy()
    if res is not None:
        v = v + res
    if relu:
        v = np.maximum(v, np.float32(0))
    return conv_out, v


@pytest.mark.parametrize("mode", ["bias", "bias+relu", "res+relu", "into", "dst", "relu"])
def test_fused_epilogue_is_numpys_on_the_kernels_own_product(mode, isa):
    xp, geometry, a, w2 = _conv_case(2, 24, 10, 10, 80, 3, 3, 1, 1, 1, seed=2)
    rows, m = a.shape[0], w2.shape[0]
    rng = np.random.default_rng(5)
    bias = None if mode in ("relu", "res+relu") else rng.standard_normal(m).astype(np.float32)
    res = (rng.standard_normal((rows, m)).astype(np.float32)
           if mode in ("res+relu", "into", "dst") else None)
    if res is not None:
        res[::7, ::5] = -0.0
    relu = mode != "bias"
    packed = pack(w2)
    plain = np.empty((rows, m), np.float32)
    gemm.tiles(xp, geometry, packed, plain, (rows, m), None, None, None, None, False, False)
    conv_out, want = _epilogue_oracle(plain, bias, res, relu)
    steps = (23, 2 * NR)
    if mode == "into":
        r = res.copy()
        gemm.tiles(xp, geometry, packed, None, steps, None, bias, r, None, True, relu)
        np.testing.assert_array_equal(r, want)
    elif mode == "dst":
        y = np.empty((rows, m), np.float32)
        d = np.empty((rows, m), np.float32)
        gemm.tiles(xp, geometry, packed, y, steps, None, bias, res, d, False, relu)
        np.testing.assert_array_equal(y, conv_out)
        np.testing.assert_array_equal(d, want)
    else:
        y = np.empty((rows, m), np.float32)
        gemm.tiles(xp, geometry, packed, y, steps, None, bias, res, None, False, relu)
        np.testing.assert_array_equal(y, want)


def test_threads_draining_one_ticket_cover_every_tile_once():
    xp, geometry, a, w2 = _conv_case(4, 32, 12, 12, 96, 3, 3, 1, 1, 1, seed=3)
    rows, m = a.shape[0], w2.shape[0]
    packed = pack(w2)
    want = np.empty((rows, m), np.float32)
    gemm.tiles(xp, geometry, packed, want, (rows, m), None, None, None, None, False, True)
    res = np.random.default_rng(0).standard_normal((rows, m)).astype(np.float32)
    r = res.copy()  # into: a tile run twice would add the residual twice
    ticket = np.zeros(1, np.int64)
    threads = [threading.Thread(target=gemm.tiles,
                                args=(xp, geometry, packed, None, (17, NR), ticket, None, r, None,
                                      True, False)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plain = np.empty((rows, m), np.float32)
    gemm.tiles(xp, geometry, packed, plain, (rows, m), None, None, None, None, False, False)
    np.testing.assert_array_equal(r, plain + res)
    assert ticket[0] >= -(-rows // 17) * -(-m // NR)


def test_bad_arguments_say_which():
    xp, geometry, a, w2 = _conv_case(1, 8, 6, 6, 16, 3, 3, 1, 1, 1)
    packed = pack(w2)
    out = np.empty((a.shape[0], 16), np.float32)
    with pytest.raises(ValueError, match="out"):
        gemm.tiles(xp, geometry, packed, out[:-1], (8, 32), None, None, None, None, False, False)
    with pytest.raises(ValueError, match="K differs"):
        gemm.tiles(xp, geometry, pack(w2[:, :-1]), out, (8, 32), None, None, None, None, False,
                   False)
    with pytest.raises(ValueError, match="geometry"):
        gemm.tiles(xp, (9, 9, 3, 3, 1, 1, 1, 1), packed, out, (8, 32), None, None, None, None,
                   False, False)
    with pytest.raises(ValueError, match="res"):
        gemm.tiles(xp, geometry, packed, out, (8, 32), None, None, out[:, :8], None, False, False)
    with pytest.raises(ValueError, match="float32"):
        gemm.gemm(a.astype(np.float64), packed, out)
