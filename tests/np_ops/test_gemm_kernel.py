"""fc's GEMM on packed weights (np_ops/_gemm.c: ``gemm``, and ``tiles``, a whole convolution
read in place from its padded input, epilogue fused) against a float64 oracle, and against
numpy's np.matmul where that is OpenBLAS with the SkylakeX kernels.

``gemm(a, packed, c, col0)`` computes ``c = a @ W2[col0 : col0 + mc].T`` in float32, ``W2``
the (M, K) weight matrix packed by ``conv._pack_panels`` into (ceil(M / 32), K, 32) panels.
The oracle is numpy in float64 on the exact float32 data; the tolerance is the rounding
error bound of a float32 sum of K products, ``K * 2**-24 * sum_k |a_ik| |w_jk|`` (each
product and partial sum rounded once), so any missed, doubled or misplaced term fails.
Shapes are odd on purpose: rows 1..50 (and past the kernel's 8-row groups and 144-row
blocks), M not a multiple of 32 (3, 33, 1000), K from 1 to 5000 (across the 448-wide K
blocks and the halved last blocks), column slices with ``col0``, row strides of the
operands. Every instruction set this machine runs is checked (``_gemm.ISAS``; the generic
loop on smaller shapes: it is slow), and each output must have the same bits whatever the
split into calls and whatever the instruction set.
"""

from __future__ import annotations

import shutil
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import fc.np_ops.conv as conv_mod

G = conv_mod._gemm_c
EPS = 2.0 ** -24

pytestmark = pytest.mark.skipif(G is None, reason="fc.np_ops._gemm is not built")


def test_the_gemm_kernel_is_built_where_a_compiler_is():
    """pip builds the extension wherever there is a C compiler (setup.py, optional=True), and
    conv uses it where its loops are fast (avx512)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): fc's convolutions multiply with numpy")
    assert G is not None
    assert conv_mod._C_GEMM == (G.ISA in conv_mod._GEMM_ISAS)
    assert conv_mod.gemm_kernel() == (f"C ({G.ISA})" if conv_mod._C_GEMM else "numpy")


@pytest.fixture(params=["avx512", "avx2", "generic"])
def isa(request):
    if request.param not in G.ISAS:
        pytest.skip(f"this CPU does not run {request.param} (it runs {', '.join(G.ISAS)})")
    previous = G.set_isa(request.param)
    yield request.param
    G.set_isa(previous)


def _operands(rows: int, k: int, m: int, seed: int, *, lda: int = 0, scale: float = 1.0):
    """a (rows, k) float32 (a row slice of a wider array when ``lda`` > k), W2 (m, k), the
    packed panels."""
    rng = np.random.default_rng(seed)
    wide = (rng.standard_normal((rows, max(k, lda) + 3)) * scale).astype(np.float32)
    a = wide[:, 3:3 + k]
    w2 = rng.standard_normal((m, k)).astype(np.float32)
    return a, w2, conv_mod._pack_panels(w2)


def _check(c: np.ndarray, a: np.ndarray, w2: np.ndarray) -> None:
    a64, w64 = a.astype(np.float64), w2.astype(np.float64)
    want = a64 @ w64.T
    bound = a.shape[1] * EPS * (np.abs(a64) @ np.abs(w64).T) + 1e-30
    err = np.abs(c.astype(np.float64) - want)
    assert np.isfinite(c).all()
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), (f"output {worst}: error {err[worst]:.3g} > bound "
                                  f"{bound[worst]:.3g}")


def test_pack_panels_layout():
    """packed[p, k, j] = W2[p * 32 + j, k], the rows past M zero, 64-byte aligned."""
    w2 = np.arange(70 * 5, dtype=np.float32).reshape(70, 5)
    p = conv_mod._pack_panels(w2)
    assert p.shape == (3, 5, 32) and p.flags.c_contiguous and p.ctypes.data % 64 == 0
    for j in range(96):
        for kk in range(5):
            assert p[j // 32, kk, j % 32] == (w2[j, kk] if j < 70 else 0.0)


@pytest.mark.parametrize("rows", [1, 2, 5, 11, 12, 13, 24, 37, 50, 193, 400])
@pytest.mark.parametrize("k", [1, 3, 16, 447, 449, 897, 1000, 2304])
@pytest.mark.parametrize("m", [3, 32, 33, 100])
def test_gemm_odd_shapes_against_float64(isa, rows, k, m):
    if isa == "generic" and rows * k * m > 2_000_000:
        pytest.skip("the generic loop: smaller shapes only")
    a, w2, p = _operands(rows, k, m, seed=rows * 7 + k + m)
    c = np.full((rows, m), np.nan, dtype=np.float32)
    G.gemm(a, p, c)
    _check(c, a, w2)


@pytest.mark.parametrize(("rows", "k", "m"), [(50, 5000, 40), (7, 4608, 1000), (49, 4096, 64)])
def test_gemm_long_k_and_wide_m(isa, rows, k, m):
    """K past several 448-wide blocks (5000: 448 * 10 + two halves of 260), M = 1000 (the
    classifier's 31 full panels and one of 8 columns)."""
    if isa == "generic" and rows * k * m > 2_000_000:
        pytest.skip("the generic loop: smaller shapes only")
    a, w2, p = _operands(rows, k, m, seed=k)
    c = np.empty((rows, m), dtype=np.float32)
    G.gemm(a, p, c)
    _check(c, a, w2)


@pytest.mark.parametrize(("rows", "k", "m"), [(37, 600, 100), (200, 147, 70), (13, 1000, 1000)])
def test_gemm_row_strides_column_slices_and_splits_give_the_same_bits(isa, rows, k, m):
    """a as a row slice of a wider array (row stride > K), c as a column block of a wider
    output (``col0`` a multiple of 32, the last block ragged): each output has the same bits
    whatever the split into calls, by rows or by 32-column panels; nothing outside the
    block is written."""
    if isa == "generic" and rows * k * m > 2_000_000:
        pytest.skip("the generic loop: smaller shapes only")
    a, w2, p = _operands(rows, k, m, seed=m, lda=k + 37)
    assert a.strides[0] > 4 * k
    whole = np.empty((rows, m), dtype=np.float32)
    G.gemm(a, p, whole)
    _check(whole, a, w2)
    out = np.full((rows, m + 9), -7.0, dtype=np.float32)
    c = out[:, 4:4 + m]
    cuts = sorted({0, 32, 64, m - m % 32, m} - {x for x in (32, 64) if x >= m})
    for m0, m1 in zip(cuts, cuts[1:]):
        for r0, r1 in ((0, rows // 3), (rows // 3, rows)):
            G.gemm(a[r0:r1], p, c[r0:r1, m0:m1], m0)
    assert c.tobytes() == np.ascontiguousarray(whole).tobytes()
    assert (out[:, :4] == -7.0).all() and (out[:, 4 + m:] == -7.0).all()


def test_gemm_isas_give_the_same_bits():
    """The generic loop and the vector loops make the same float32 operations in the same
    order (one fused multiply-add per product, the K blocks added in order)."""
    if len(G.ISAS) < 2:
        pytest.skip("one instruction set only")
    a, w2, p = _operands(29, 1000, 70, seed=3)
    outs = []
    previous = G.ISA
    try:
        for name in G.ISAS:
            G.set_isa(name)
            c = np.empty((29, 70), dtype=np.float32)
            G.gemm(a, p, c)
            outs.append(c.tobytes())
    finally:
        G.set_isa(previous)
    assert all(o == outs[0] for o in outs)


#: where numpy's wheel keeps the libraries it links, its OpenBLAS among them
NUMPY_LIBS = Path(np.__file__).resolve().parent.parent / "numpy.libs"


def _numpys_blas_kernels() -> str | None:
    """The kernel set (threadpoolctl's ``architecture``) of the OpenBLAS that numpy itself
    runs: the library in numpy's wheel (``NUMPY_LIBS``), not another one loaded beside it.
    scipy brings its own OpenBLAS, whose CPU detection can differ: on an AMD EPYC (Zen 4)
    scipy's reported SkylakeX while numpy's ran Cooperlake kernels, which cut K otherwise.
    None where numpy's BLAS is not found (a system numpy, threadpoolctl missing)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for info in threadpool_info():
        if (info.get("user_api") == "blas" and info.get("internal_api") == "openblas"
                and Path(info.get("filepath", "")).parent.resolve() == NUMPY_LIBS):
            return info.get("architecture")
    return None


NUMPYS_BLAS_KERNELS = _numpys_blas_kernels()
#: the guard of the two bit-for-bit tests below
NOT_SKYLAKEX = pytest.mark.skipif(
    NUMPYS_BLAS_KERNELS != "SkylakeX",
    reason=f"numpy's BLAS is not OpenBLAS with the SkylakeX kernels "
           f"({NUMPYS_BLAS_KERNELS or 'not found'})")


def test_numpys_own_blas_is_found():
    """The guard of the two tests below finds numpy's OpenBLAS where numpy is a wheel with its
    BLAS inside and threadpoolctl is installed (else those tests would skip everywhere)."""
    pytest.importorskip("threadpoolctl")
    if not any(NUMPY_LIBS.glob("*openblas*")):
        pytest.skip(f"numpy's BLAS is not in {NUMPY_LIBS} (not a wheel)")
    assert _numpys_blas_kernels()


#: (rows, K, M) of ResNet-50's convolutions at batch 1 (rows = Ho*Wo), the stem included
RESNET50_SHAPES = [(12544, 147, 64), (3136, 64, 64), (3136, 576, 64), (3136, 64, 256),
                   (3136, 256, 64), (784, 256, 512), (3136, 256, 128), (784, 1152, 128),
                   (784, 128, 512), (784, 512, 128), (196, 512, 1024), (784, 512, 256),
                   (196, 2304, 256), (196, 256, 1024), (196, 1024, 256), (49, 1024, 2048),
                   (196, 1024, 512), (49, 4608, 512), (49, 512, 2048), (49, 2048, 512)]


@NOT_SKYLAKEX
@pytest.mark.parametrize(("rows", "k", "m"), RESNET50_SHAPES)
def test_gemm_has_numpys_bits_on_resnet50_shapes(rows, k, m):
    """On OpenBLAS's SkylakeX kernels, the kernel's K blocking is OpenBLAS's: the same bits
    as np.matmul (channels-last: (rows, K) @ (M, K).T), so switching the convolutions to it
    leaves a network's outputs unchanged."""
    if "avx512" not in G.ISAS:
        pytest.skip("the kernel's avx512 loops do not run here")
    previous = G.set_isa("avx512")
    try:
        a, w2, p = _operands(rows, k, m, seed=rows + k + m, scale=0.5)
        c = np.empty((rows, m), dtype=np.float32)
        G.gemm(a, p, c)
    finally:
        G.set_isa(previous)
    assert c.tobytes() == np.matmul(a, w2.T).tobytes()


@NOT_SKYLAKEX
@pytest.mark.parametrize(("rows", "k", "m"), [(150, 1001, 96), (100, 449, 40), (300, 897, 64)])
def test_gemm_has_numpys_bits_when_k_is_cut_in_halves(rows, k, m):
    """Below 2Q = 896 columns left, OpenBLAS's threaded driver (numpy's, with more than one
    thread) cuts the rest in two halves, the first rounded up: 1001 = 448 + 277 + 276."""
    a, w2, p = _operands(rows, k, m, seed=k, scale=0.5)
    c = np.empty((rows, m), dtype=np.float32)
    G.gemm(a, p, c)
    assert c.tobytes() == np.matmul(a, w2.T).tobytes()


# -- tiles(): a whole convolution, in place, epilogue fused ----------------------------------

def _conv_case(n, c, h, w, m, kh, kw, stride, pad, dil, seed=0):
    """The unpadded channels-last input, tiles()'s geometry (the padding implicit), numpy's
    im2col matrix of the zero-padded input (the oracle's operand) and the weight matrix."""
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
    geometry = (ho, wo, kh, kw, stride, stride, dil, dil, pad, pad)
    return x, geometry, a, w2


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
    x, geometry, a, w2 = _conv_case(*case)
    out = np.full((a.shape[0], w2.shape[0]), np.nan, np.float32)
    G.tiles(x, geometry, conv_mod._pack_panels(w2), out, (a.shape[0], w2.shape[0]), None, None, None, None,
               False, False)
    exact = a.astype(np.float64) @ w2.T.astype(np.float64)
    k = a.shape[1]
    bound = 1.01 * k * 2.0 ** -24 * (np.abs(a).astype(np.float64) @ np.abs(w2).T.astype(np.float64))
    assert np.all(np.abs(out - exact) <= bound)


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c)))
def test_implicit_padding_is_a_zero_padded_copy(case):
    """The taps in the padding read zeros: the same bits as the convolution of an explicitly
    zero-padded copy with no padding (windows across every edge, the corners included,
    whole rows of padding above and below)."""
    n, c, h, w, m, kh, kw, stride, pad, dil = case
    x, geometry, a, w2 = _conv_case(*case, seed=4)
    packed = conv_mod._pack_panels(w2)
    xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), np.float32)
    xp[:, pad:pad + h, pad:pad + w] = x
    implicit = np.empty((a.shape[0], m), np.float32)
    G.tiles(x, geometry, packed, implicit, (7, 32), None, None, None, None, False, False)
    explicit = np.empty((a.shape[0], m), np.float32)
    G.tiles(xp, geometry[:8] + (0, 0), packed, explicit, (a.shape[0], m), None, None, None, None,
            False, False)
    np.testing.assert_array_equal(implicit, explicit)


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c)))
def test_every_isa_and_every_tiling_gives_the_same_bits(case):
    x, geometry, a, w2 = _conv_case(*case, seed=1)
    rows, m = a.shape[0], w2.shape[0]
    packed = conv_mod._pack_panels(w2)
    results = []
    for isa in G.ISAS:
        previous = G.set_isa(isa)
        try:
            for steps in [(rows, m), (max(1, rows // 3), 32), (7, 2 * 32), (1, m)]:
                out = np.full((rows, m), np.nan, np.float32)
                G.tiles(x, geometry, packed, out, steps, None, None, None, None, False, False)
                results.append(out)
        finally:
            G.set_isa(previous)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])
    # gemm() on the im2col matrix, by column slices: the same bits again
    out = np.full((rows, m + 5), np.nan, np.float32)[:, 2:2 + m]
    for c0 in range(0, m, 32):
        G.gemm(a, packed, out[:, c0:c0 + 32], c0)
    np.testing.assert_array_equal(out, results[0])


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


@pytest.mark.parametrize("case", [
    (2, 24, 10, 10, 80, 3, 3, 1, 1, 1),   # one K block
    (1, 200, 9, 9, 70, 3, 3, 2, 1, 1),    # K = 1800: the epilogue on the last of four K blocks
    (1, 513, 5, 5, 1000, 1, 1, 1, 0, 1),  # K in (Q, 2Q): two halves; 1000 channels
], ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("mode", ["bias", "bias+relu", "res+relu", "into", "dst", "relu"])
def test_fused_epilogue_is_numpys_on_the_kernels_own_product(mode, isa, case):
    """The epilogue fused into each block's last micro-kernel call (on the registers, or on
    the block just stored): numpy's operations on the kernel's own product, bit for bit,
    whichever K block is the last."""
    x, geometry, a, w2 = _conv_case(*case, seed=2)
    rows, m = a.shape[0], w2.shape[0]
    rng = np.random.default_rng(5)
    bias = None if mode in ("relu", "res+relu") else rng.standard_normal(m).astype(np.float32)
    res = (rng.standard_normal((rows, m)).astype(np.float32)
           if mode in ("res+relu", "into", "dst") else None)
    if res is not None:
        res[::7, ::5] = -0.0
    relu = mode != "bias"
    packed = conv_mod._pack_panels(w2)
    plain = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, plain, (rows, m), None, None, None, None, False, False)
    conv_out, want = _epilogue_oracle(plain, bias, res, relu)
    steps = (23, 2 * 32)
    if mode == "into":
        r = res.copy()
        G.tiles(x, geometry, packed, None, steps, None, bias, r, None, True, relu)
        np.testing.assert_array_equal(r, want)
    elif mode == "dst":
        y = np.empty((rows, m), np.float32)
        d = np.empty((rows, m), np.float32)
        G.tiles(x, geometry, packed, y, steps, None, bias, res, d, False, relu)
        np.testing.assert_array_equal(y, conv_out)
        np.testing.assert_array_equal(d, want)
    else:
        y = np.empty((rows, m), np.float32)
        G.tiles(x, geometry, packed, y, steps, None, bias, res, None, False, relu)
        np.testing.assert_array_equal(y, want)


# (qmin, qmax, zero point, scale, relu): int8 symmetric with a scale that makes v / s
# inexact, int8 with 2.0 (integer sums: every odd one a tie, rounded to even), uint8 with a
# zero point (relu: the lower clamp skipped, as fake_quant_step does for a ReLU's output), and
# uint8 with z = 0 on a signed output (values in (-s/2, 0) round to -0.0 before the clamp)
FQ_CASES = {
    "int8": (-128, 127, 0, 0.0371, False),
    "int8_ties": (-128, 127, 0, 2.0, False),
    "uint8_z_relu": (0, 255, 37, 0.0213, True),
    "uint8_z0": (0, 255, 0, 0.0213, False),
}


@pytest.mark.parametrize("case", list(FQ_CASES), ids=list(FQ_CASES))
@pytest.mark.parametrize("integers", [False, True], ids=["floats", "integer_sums"])
def test_fake_quant_epilogue_is_the_definition(case, integers, isa):
    """``tiles(..., fq)``: the output fake-quantized in the epilogue (after bias and relu) is
    ``fc.quant.qparams.fake_quant`` (the unblocked definition: divide, rint to even, + z,
    clip, - z, * s) of the plain convolution's output, bit for bit, the values past both
    bounds, ties and a NaN included, on the kernel's registers (AVX-512) or the rows just
    stored (AVX2, generic)."""
    from fc.quant.qparams import QParams, fake_quant, fake_quant_step

    qmin, qmax, z, s, relu = FQ_CASES[case]
    case_ = (2, 24, 10, 10, 70, 3, 3, 1, 1, 1)  # 70 channels: a partial last panel
    x, geometry, a, w2 = _conv_case(*case_, seed=8)
    if integers:  # exact integer sums: with s = 2 every odd one is a tie
        x, w2 = np.round(x * 2).astype(np.float32), np.round(w2 * 2).astype(np.float32)
    x[1, 4, 5, 3] = np.nan
    rows, m = a.shape[0], w2.shape[0]
    bias = np.random.default_rng(9).standard_normal(m).astype(np.float32)
    if integers:
        bias = np.round(bias * 2)
    packed = conv_mod._pack_panels(w2)
    plain = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, plain, (rows, m), None, bias, None, None, False, relu)
    p = QParams(np.float32(s), np.array(z), qmin, qmax)
    assert plain.size < 2 * (1 << 16)  # fake_quant's unblocked definition, not its blocks
    want = fake_quant(plain, p)
    v = plain / np.float32(s)
    assert np.isnan(want).any()
    if s == 2.0:
        assert not integers or (v % 1 == 0.5).any()  # ties
    else:  # past the bounds
        assert (v > qmax - z + 1).any() and (relu or (v < qmin - z - 1).any())
    step = fake_quant_step(p, nonneg=relu)
    y = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, y, (23, 2 * 32), None, bias, None, None, False, relu, 2,
            step.c_params)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(y), nan)
    assert y[~nan].tobytes() == want[~nan].tobytes()
    # numpy's blocked step agrees up to the sign of a zero (where it skips the lower clamp)
    blocked = plain.copy()
    step(blocked)
    np.testing.assert_array_equal(blocked, y)


@pytest.mark.parametrize("mode", ["bias+relu", "res+relu", "into", "dst"])
def test_empty_k_gives_the_epilogue_of_zero_sums(mode, isa):
    """K = 0: every sum is +0.0, and the epilogue still runs on it (numpy's operations)."""
    rows, m = 9, 40
    rng = np.random.default_rng(11)
    a = np.empty((rows, 0), np.float32)
    packed = conv_mod._pack_panels(np.empty((m, 0), np.float32))
    bias = None if mode == "res+relu" else rng.standard_normal(m).astype(np.float32)
    res = None if mode == "bias+relu" else rng.standard_normal((rows, m)).astype(np.float32)
    conv_out, want = _epilogue_oracle(np.zeros((rows, m), np.float32), bias, res, True)
    steps = (4, 32)
    if mode == "into":
        r = res.copy()
        G.tiles(a, None, packed, None, steps, None, bias, r, None, True, True)
        np.testing.assert_array_equal(r, want)
    elif mode == "dst":
        y, d = np.full((rows, m), np.nan, np.float32), np.full((rows, m), np.nan, np.float32)
        G.tiles(a, None, packed, y, steps, None, bias, res, d, False, True)
        np.testing.assert_array_equal(y, conv_out)
        np.testing.assert_array_equal(d, want)
    else:
        y = np.full((rows, m), np.nan, np.float32)
        G.tiles(a, None, packed, y, steps, None, bias, res, None, False, True)
        np.testing.assert_array_equal(y, want)


def test_threads_draining_one_ticket_cover_every_tile_once():
    x, geometry, a, w2 = _conv_case(4, 32, 12, 12, 96, 3, 3, 1, 1, 1, seed=3)
    rows, m = a.shape[0], w2.shape[0]
    packed = conv_mod._pack_panels(w2)
    want = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, want, (rows, m), None, None, None, None, False, True)
    res = np.random.default_rng(0).standard_normal((rows, m)).astype(np.float32)
    r = res.copy()  # into: a tile run twice would add the residual twice
    ticket = np.zeros(1, np.int64)
    threads = [threading.Thread(target=G.tiles,
                                args=(x, geometry, packed, None, (17, 32), ticket, None, r, None,
                                      True, False)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plain = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, plain, (rows, m), None, None, None, None, False, False)
    np.testing.assert_array_equal(r, plain + res)
    assert ticket[0] >= -(-rows // 17) * -(-m // 32)


def test_bad_arguments_say_which():
    x, geometry, a, w2 = _conv_case(1, 8, 6, 6, 16, 3, 3, 1, 1, 1)
    packed = conv_mod._pack_panels(w2)
    out = np.empty((a.shape[0], 16), np.float32)
    with pytest.raises(ValueError, match="out"):
        G.tiles(x, geometry, packed, out[:-1], (8, 32), None, None, None, None, False, False)
    with pytest.raises(ValueError, match="K differs"):
        G.tiles(x, geometry, conv_mod._pack_panels(w2[:, :-1]), out, (8, 32), None, None, None, None, False,
                   False)
    with pytest.raises(ValueError, match="geometry"):
        G.tiles(x, (9, 9, 3, 3, 1, 1, 1, 1, 1, 1), packed, out, (8, 32), None, None, None, None,
                   False, False)
    with pytest.raises(ValueError, match="res"):
        G.tiles(x, geometry, packed, out, (8, 32), None, None, out[:, :8], None, False, False)
    with pytest.raises(ValueError, match="wider than the packed"):
        wide = np.zeros((a.shape[0], 64), np.float32)
        G.tiles(x, geometry, packed, None, (8, 32), None, None, wide, None, True, False)
    with pytest.raises(ValueError, match="float32"):
        G.gemm(a.astype(np.float64), packed, out)


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("threads", [2, 3])
def test_panel_tiles_on_the_threads_give_one_threads_bits(case, threads):
    """Panel tiles over all the rows on the module's threads (each tile packs the rows' im2col
    blocks itself), with the fused epilogue, and with the sum written into the residual:
    the same bits as one thread running the whole convolution."""
    x, geometry, a, w2 = _conv_case(*case, seed=8)
    rows, m = a.shape[0], w2.shape[0]
    packed = conv_mod._pack_panels(w2)
    rng = np.random.default_rng(9)
    bias, res = rng.standard_normal(m).astype(np.float32), rng.standard_normal((rows, m)).astype(np.float32)
    want = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, want, (rows, m), None, bias, None, None, False, True)
    got = np.full((rows, m), np.nan, np.float32)
    G.tiles(x, geometry, packed, got, (rows, 32), None, bias, None, None, False, True, threads)
    np.testing.assert_array_equal(got, want)
    want_sum = res.copy()
    G.tiles(x, geometry, packed, None, (rows, m), None, bias, want_sum, None, True, True)
    got_sum = res.copy()
    G.tiles(x, geometry, packed, None, (rows, 32), None, bias, got_sum, None, True, True, threads)
    np.testing.assert_array_equal(got_sum, want_sum)


def test_the_kernels_own_threads_give_the_same_bits_and_serve_one_caller_at_a_time():
    """threads > 1: the call and the module's worker threads draw the tiles (the same bits
    as one thread); Python threads calling at once each get their own result (one runs alone
    while the workers serve another)."""
    x, geometry, a, w2 = _conv_case(3, 32, 12, 12, 96, 3, 3, 1, 1, 1, seed=6)
    rows, m = a.shape[0], w2.shape[0]
    packed = conv_mod._pack_panels(w2)
    want = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, want, (rows, m), None, None, None, None, False, True)
    got = np.empty((rows, m), np.float32)
    G.tiles(x, geometry, packed, got, (13, 32), None, None, None, None, False, True, 3)
    np.testing.assert_array_equal(got, want)
    outs = [np.full((rows, m), np.nan, np.float32) for _ in range(4)]

    def calls(out):
        for _ in range(20):
            G.tiles(x, geometry, packed, out, (7, 32), None, None, None, None, False, True, 2)

    threads = [threading.Thread(target=calls, args=(o,)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, want)


def _child_tiles(x, geometry, packed):
    out = np.empty((x.shape[0] * geometry[0] * geometry[1], 64), np.float32)
    G.tiles(x, geometry, packed, out, (9, 32), None, None, None, None, False, False, 2)
    return out


def test_the_kernels_threads_work_in_a_forked_child():
    """A child forked after the workers started has none of them (pthread_atfork resets the
    pool's state, its lock included): its calls still give the parent's bits."""
    import multiprocessing

    x, geometry, a, w2 = _conv_case(2, 16, 10, 10, 64, 3, 3, 1, 1, 1, seed=7)
    packed = conv_mod._pack_panels(w2)
    want = _child_tiles(x, geometry, packed)  # starts the workers in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_child_tiles, (x, geometry, packed)).get(timeout=60)
    np.testing.assert_array_equal(got, want)
