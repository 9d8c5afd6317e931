"""fc's GEMM on packed weights (np_ops/_gemm.c, ``fc.np_ops._gemm.gemm``) against a float64
oracle, and against numpy's np.matmul where that is OpenBLAS with the SkylakeX kernels.

``gemm(a, packed, c, col0)`` computes ``c = a @ W2[col0 : col0 + mc].T`` in float32, ``W2``
the (M, K) weight matrix packed by ``conv._pack_panels`` into (ceil(M / 32), K, 32) panels.
The oracle is numpy in float64 on the exact float32 data; the tolerance is the rounding
error bound of a float32 sum of K products, ``K * 2**-24 * sum_k |a_ik| |w_jk|`` (each
product and partial sum rounded once), so any missed, doubled or misplaced term fails.
Shapes are odd on purpose: rows 1..50 (and past the kernel's 12-row groups and 192-row
blocks), M not a multiple of 32 (3, 33, 1000), K from 1 to 5000 (across the 448-wide K
blocks and the halved last blocks), column slices with ``col0``, row strides of the
operands. Every instruction set this machine runs is checked (``_gemm.ISAS``; the generic
loop on smaller shapes: it is slow), and each output must have the same bits whatever the
split into calls and whatever the instruction set.
"""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest

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


@pytest.fixture(params=["avx512", "generic"])
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


def _openblas_skylakex() -> bool:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return False
    return any(i.get("internal_api") == "openblas" and i.get("architecture") == "SkylakeX"
               for i in threadpool_info() if i.get("user_api") == "blas")


#: (rows, K, M) of ResNet-50's convolutions at batch 1 (rows = Ho*Wo), the stem included
RESNET50_SHAPES = [(12544, 147, 64), (3136, 64, 64), (3136, 576, 64), (3136, 64, 256),
                   (3136, 256, 64), (784, 256, 512), (3136, 256, 128), (784, 1152, 128),
                   (784, 128, 512), (784, 512, 128), (196, 512, 1024), (784, 512, 256),
                   (196, 2304, 256), (196, 256, 1024), (196, 1024, 256), (49, 1024, 2048),
                   (196, 1024, 512), (49, 4608, 512), (49, 512, 2048), (49, 2048, 512)]


@pytest.mark.skipif(not _openblas_skylakex(),
                    reason="numpy's BLAS is not OpenBLAS with the SkylakeX kernels")
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
