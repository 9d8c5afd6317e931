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
