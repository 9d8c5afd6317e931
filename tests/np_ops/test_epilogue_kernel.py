"""The C epilogue (np_ops/_epilogue.c) against numpy's: the same bits.

The oracle is fc's numpy ``conv._epilogue`` (``_C_EPILOGUE`` off), the kernel's definition,
which the tests of test_conv.py hold against torch; and numpy's own add and maximum on the
exact data. Every instruction set this machine runs is checked (``_epilogue.ISAS``), on
rows with NaN (in the GEMM output, the bias, the residual, in both), -0.0 and infinities,
on column slices, with and without the sum going into the residual.
"""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest

import fc.np_ops.conv as conv_mod

C = conv_mod._epilogue_c


def test_the_c_epilogue_is_built_where_a_compiler_is():
    """pip builds the extension wherever there is a C compiler (setup.py, optional=True): a
    build that broke silently would fall back to numpy's slower epilogue."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): fc's epilogue runs in numpy")
    assert C is not None and conv_mod._C_EPILOGUE
    assert conv_mod.epilogue_kernel() == f"C ({C.ISA})"
    import fc.np_ops.nn as nn

    assert hasattr(C, "max_pool") and nn._C_MAX_POOL, (
        "fc.np_ops._epilogue predates max_pool: rebuild it "
        "(pip install --no-deps --no-build-isolation -e .)")


@pytest.fixture(params=["avx512", "avx2", "generic"])
def isa(request):
    if C is None:
        pytest.skip("fc.np_ops._epilogue is not built")
    if request.param not in C.ISAS:
        pytest.skip(f"this CPU does not run {request.param} (it runs {', '.join(C.ISAS)})")
    previous = C.set_isa(request.param)
    yield request.param
    C.set_isa(previous)


def _data(m: int, seed: int):
    rng = np.random.default_rng(seed)
    y = (rng.standard_normal((41, m + 5)) * 2).astype(np.float32)[:, 2:2 + m]  # column slice
    b = rng.standard_normal(m).astype(np.float32)
    r = (rng.standard_normal((41, m + 3)) * 2).astype(np.float32)[:, :m]
    y[::3, ::2] = -0.0
    r[1::4, 1::3] = -0.0
    y[1::5, ::3] = np.nan
    r[2::7] = np.nan  # NaN + NaN on some rows: the second operand's payload (numpy's)
    r[3::7] = np.float32(np.uint32(0x7FC12345).view(np.float32))  # another payload
    r[4::9] = np.float32(np.uint32(0xFF812345).view(np.float32))  # signalling: quieted
    b[::5] = np.inf
    y[::11] = -np.inf  # -inf + inf: the default NaN
    return y, b, r


@pytest.mark.parametrize("m", [16, 17, 37, 64, 256])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("res", ["none", "add", "into", "dst"])
def test_c_epilogue_is_numpys_bit_for_bit(isa, monkeypatch, m, relu, bias, res):
    """dst: the sum into a third array, y keeping y + bias (conv_residual's keep_conv)."""
    y, b, r = _data(m, m)
    b = b if bias else None
    act = "relu" if relu else ""
    outs, kept = [], []
    for c in (False, True):
        monkeypatch.setattr(conv_mod, "_C_EPILOGUE", c)
        yc = np.empty((y.shape[0], m + 5), np.float32)[:, 2:2 + m]  # a column slice again
        yc[...] = y
        rr = np.empty((r.shape[0], m + 3), np.float32)[:, :m]
        rr[...] = r
        dd = np.full((r.shape[0], m + 7), 7, np.float32)[:, 3:3 + m] if res == "dst" else None
        with np.errstate(all="ignore"):
            conv_mod._epilogue(yc, b, act, 0.0, 0.0, None if res == "none" else rr,
                               into=res == "into", dst=dd)
        outs.append({"into": rr, "dst": dd}.get(res, yc).copy())
        kept.append(yc.copy())
    assert outs[0].tobytes() == outs[1].tobytes()
    if res == "dst":  # y + bias kept, the residual untouched
        with np.errstate(all="ignore"):
            conv_y = y + b if b is not None else y
        assert kept[0].tobytes() == kept[1].tobytes() == np.ascontiguousarray(conv_y).tobytes()
        assert rr.tobytes() == np.ascontiguousarray(r).tobytes()
    # and numpy's ufuncs directly
    with np.errstate(all="ignore"):
        ref = y.copy()
        if b is not None:
            ref += b
        if res != "none":
            ref = np.add(ref, r)
        if relu:
            ref = np.maximum(ref, np.float32(0))
    assert outs[1].tobytes() == np.ascontiguousarray(ref).tobytes()


def test_c_epilogue_calls_post_and_falls_back(monkeypatch):
    """``post`` runs on the block after the C epilogue; other activations, dtypes and
    short rows take numpy's path (the same results as with the kernel off)."""
    if C is None:
        pytest.skip("fc.np_ops._epilogue is not built")
    y, b, r = _data(32, 5)
    seen = []
    yc = y.copy()
    conv_mod._epilogue(yc, b, "relu", 0.0, 0.0, post=lambda blk: seen.append(blk.copy()))
    assert len(seen) == 1 and seen[0].tobytes() == yc.tobytes()
    calls = []
    monkeypatch.setattr(conv_mod, "_epilogue_c",
                        type("Spy", (), {"run": staticmethod(lambda *a: calls.append(a))}))
    for blk, act in ((np.ones((4, 32), np.float64), "relu"), (np.ones((4, 8), np.float32), ""),
                     (np.ones((4, 32), np.float32), "silu")):
        conv_mod._epilogue(blk, None, act, 0.0, 0.0)
    assert calls == []


def test_c_epilogue_rejects_bad_buffers():
    if C is None:
        pytest.skip("fc.np_ops._epilogue is not built")
    y = np.zeros((4, 16), np.float32)
    with pytest.raises(ValueError, match="y must be a 2-D float32 buffer"):
        C.run(np.zeros((4, 16)), None, None, False, True)
    with pytest.raises(ValueError, match="res must have y's shape"):
        C.run(y, None, np.zeros((4, 8), np.float32), False, True)
    with pytest.raises(ValueError, match="bias must be"):
        C.run(y, np.zeros(8, np.float32), None, False, True)
    with pytest.raises(ValueError, match="into needs res"):
        C.run(y, None, None, True, True)
    with pytest.raises(ValueError, match="dst needs res and not into"):
        C.run(y, None, y.copy(), True, True, y.copy())
    with pytest.raises(ValueError, match="dst must have y's shape"):
        C.run(y, None, y.copy(), False, True, np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match="y must be"):
        C.run(y[:, ::2], None, None, False, True)


# -- max pooling (_epilogue.max_pool, fc.np_ops.nn's MaxPool on channels-last float32) -------

def _pool_cases(count: int, seed: int) -> list[tuple[tuple[int, ...], dict]]:
    """Seeded MaxPool configurations (kernels 1-4, strides 1-3, dilations 1-3, asymmetric
    pads, ceil_mode), channel counts around the vector widths."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        st = tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = tuple(int(v) for v in rng.integers(1, 4, 2))
        pads = tuple(int(rng.integers(0, k[j % 2])) for j in range(4))
        span = [dil[j] * (k[j] - 1) + 1 - pads[j] - pads[j + 2] for j in range(2)]
        hw = tuple(int(max(1, span[j]) + rng.integers(0, 7)) for j in range(2))
        c = (1, 3, 16, 17, 64)[i % 5]
        cases.append(((2, c) + hw, {"kernel_shape": k, "strides": st, "dilations": dil,
                                    "pads": pads, "ceil_mode": int(rng.integers(0, 2))}))
    return cases


def _pool_data(xs: tuple[int, ...], seed: int) -> np.ndarray:
    """Channels-last float32 with NaNs of several payloads, -0.0 beside +0.0, +inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((xs[0], xs[2], xs[3], xs[1])).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.random(flat.size) < 0.2] = 0.0
    flat[rng.random(flat.size) < 0.2] = -0.0
    flat[rng.random(flat.size) < 0.02] = np.inf
    for payload in (0x7FC00000, 0x7FC12345, 0xFFC54321):
        flat[rng.random(flat.size) < 0.01] = np.uint32(payload).view(np.float32)
    return x.transpose(0, 3, 1, 2)


def _windows_max(x: np.ndarray, attrs: dict, ho: int, wo: int) -> np.ndarray:
    """numpy on the exact data: -FLT_MAX padding (enough for ceil_mode), every window's
    np.max (NaN if the window holds one)."""
    (kh, kw), (sh, sw), (dh, dw), p = (attrs["kernel_shape"], attrs["strides"],
                                       attrs["dilations"], attrs["pads"])
    low = np.finfo(np.float32).min
    xp = np.pad(np.ascontiguousarray(x), ((0, 0), (0, 0), (p[0], p[2] + kh * dh + sh),
                                          (p[1], p[3] + kw * dw + sw)), constant_values=low)
    taps = [xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.max(np.stack(taps), axis=0)


def test_c_max_pool_against_numpy_and_the_numpy_path(isa, monkeypatch):
    """On channels-last float32 maps the C max pooling gives every window's maximum (numpy's
    np.max on the padded exact data: NaN wherever the window holds one, +inf, the zeros), and
    the very bits of fc's numpy path on whole images (the same taps in the same order: which
    of -0.0 and +0.0, which NaN payload a tie keeps), on 40 random configurations whose
    channel counts cover the vector loops and their tails."""
    import fc.np_ops.nn as nn

    if not nn._C_MAX_POOL:
        pytest.skip("fc.np_ops._epilogue has no max_pool")
    monkeypatch.setattr(nn, "_POOL_BAND_BYTES", 1 << 30)
    for i, (xs, attrs) in enumerate(_pool_cases(40, 11)):
        x = _pool_data(xs, i)
        with np.errstate(invalid="ignore"):
            y = nn.max_pool(x, **attrs)
            monkeypatch.setattr(nn, "_C_MAX_POOL", False)
            ref = nn.max_pool(x, **attrs)
            monkeypatch.setattr(nn, "_C_MAX_POOL", True)
            want = _windows_max(x, attrs, *y.shape[2:])
        assert y.shape == ref.shape == want.shape, (xs, attrs)
        assert conv_mod.is_channels_last(y)
        np.testing.assert_array_equal(y, want, err_msg=f"{xs} {attrs}")
        assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(ref).tobytes(), (xs, attrs)


def test_c_max_pool_runs_where_it_applies(monkeypatch):
    """Channels-last float32 takes the C kernel (a build that stopped exporting it would fall
    back silently); NCHW and float64 inputs keep the numpy path."""
    import fc.np_ops.nn as nn

    if not nn._C_MAX_POOL:
        pytest.skip("fc.np_ops._epilogue has no max_pool")
    numpy_path = nn._max_pool_unpadded
    calls = []
    monkeypatch.setattr(nn, "_max_pool_unpadded", lambda *a: calls.append(a) or numpy_path(*a))
    attrs = {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
             "dilations": (1, 1), "ceil_mode": 0}
    x = np.zeros((1, 4, 9, 9), np.float32)
    nn.max_pool(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), **attrs)
    assert calls == []
    nn.max_pool(x, **attrs)
    nn.max_pool(x.astype(np.float64).transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2), **attrs)
    assert len(calls) == 2


def test_c_max_pool_rejects_bad_buffers():
    if C is None or not hasattr(C, "max_pool"):
        pytest.skip("fc.np_ops._epilogue has no max_pool")
    x = np.zeros((1, 4, 4, 2), np.float32)
    y = np.zeros((1, 2, 2, 2), np.float32)
    tab = np.array([[0, 1], [2, 3]], np.int64)
    C.max_pool(x, y, tab, tab, -1.0, 0, 2)
    with pytest.raises(ValueError, match="x must be a C-contiguous 4-D float32"):
        C.max_pool(x.astype(np.float64), y, tab, tab, -1.0, 0, 2)
    with pytest.raises(ValueError, match="htab must be a C-contiguous 2-D int64"):
        C.max_pool(x, y, tab.astype(np.int32), tab, -1.0, 0, 2)
    with pytest.raises(ValueError, match="htab reads outside x"):
        C.max_pool(x, y, tab + 1, tab, -1.0, 0, 2)
    with pytest.raises(ValueError, match="rows out of range"):
        C.max_pool(x, y, tab, tab, -1.0, 0, 3)
    with pytest.raises(ValueError, match="y must be"):
        C.max_pool(x, np.zeros((1, 2, 2, 3), np.float32), tab, tab, -1.0, 0, 2)


# -- the quantized simulation's residual Add with its output's fake quantization ------------

@pytest.mark.parametrize("into_b", [False, True], ids=["into_a", "into_b"])
@pytest.mark.parametrize(("qmin", "qmax", "z", "relu"), [
    (-128, 127, 0, False), (-128, 127, 0, True), (0, 255, 41, True), (0, 255, 0, False)],
    ids=["int8", "int8_relu", "uint8_z_relu", "uint8_z0"])
def test_add_blocks_fake_quantized_in_c_is_numpys(isa, into_b, qmin, qmax, z, relu):
    """``add_blocks`` with a ``fake_quant_step`` post (its ``c_params``) into one of its
    inputs: the C rows (add, relu, the fake quantization in one pass) give numpy's blocked
    add then ``fake_quant`` of the sum (the unblocked definition), bit for bit apart from
    NaN payloads (NaN where numpy has NaN), on channels-last maps with NaN, -0.0, ties and
    values past both bounds; and the numpy path (a post without c_params) the same values."""
    from fc.np_ops.elementwise import add_blocks
    from fc.quant.qparams import QParams, fake_quant, fake_quant_step

    rng = np.random.default_rng(3)
    s = np.float32(0.5)
    shape = (3, 9, 10, 70)  # (N, H, W, C) buffers, seen as NCHW views
    a, b = (np.round(rng.standard_normal(shape) * 90).astype(np.float32) / 4 for _ in range(2))
    a[0, 1, ::3, ::5] = -0.0
    a[1, 2, 3, 4] = np.nan
    b[2, 5, 6, 7] = np.nan
    a, b = a.transpose(0, 3, 1, 2), b.transpose(0, 3, 1, 2)
    p = QParams(s, np.array(z), qmin, qmax)
    with np.errstate(all="ignore"):
        total = a + b
    if relu:
        total = np.maximum(total, np.float32(0))
    want = fake_quant(np.ascontiguousarray(total), p)
    v = total / s
    assert (v % 1 == 0.5).any() and (v > qmax - z + 1).any() and (relu or (v < qmin - z - 1).any())
    step = fake_quant_step(p, nonneg=relu)
    for post in (step, lambda blk: step(blk)):  # C rows; numpy's blocks
        x, y = a.copy(order="K"), b.copy(order="K")
        out = add_blocks(x, y, y if into_b else x, "relu" if relu else "", 0.0, 0.0, post)
        assert out is (y if into_b else x)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
        ok = ~np.isnan(want)
        if post is step:
            assert out[ok].tobytes() == want[ok].tobytes()
        else:  # numpy's step skips a clamp where a block needs none: a zero's sign may differ
            np.testing.assert_array_equal(out[ok], want[ok])
        np.testing.assert_array_equal(x if into_b else y, a if into_b else b)  # the other input
