"""The ``.params`` reader/writer against mxnet itself as the oracle, and on corrupt files."""

from __future__ import annotations

import contextlib
import os
import struct
import zipfile

import numpy as np
import pytest

from fc.errors import FcError, ImportError_
from fc.frontend.mxnet.params import load_params, save_params, split_arg_aux


def _mxnet_or_none():
    """mxnet is an optional extra: its tests skip, the format-only tests still run."""
    try:
        from fc.frontend.mxnet._mx import import_mxnet

        return import_mxnet()
    except ImportError_:
        return None


mx = _mxnet_or_none()
needs_mx = pytest.mark.skipif(mx is None, reason="mxnet is not installed")

V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
RNG = np.random.default_rng(0)


def _values(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return RNG.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        arr = RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        if arr.size >= 2:
            arr.flat[0], arr.flat[1] = info.min, info.max
        return arr
    return (RNG.standard_normal(shape) * 100).astype(dtype)


# (dtype, shape, np_shape semantics): mxnet can make 0-d and zero-size arrays only under
# np shape semantics, where it writes V3.
CASES = {
    "float32-4d": ("float32", (2, 3, 4, 5), False),
    "float16-1d": ("float16", (7,), False),
    "float64-2d": ("float64", (3, 2), False),
    "int32-3d": ("int32", (2, 2, 3), False),
    "int64-1d": ("int64", (5,), False),
    "uint8-2d": ("uint8", (4, 4), False),
    "int8-1d": ("int8", (9,), False),
    "bool-2d": ("bool", (3, 3), False),
    "float32-scalar": ("float32", (), True),
    "int64-scalar": ("int64", (), True),
    "float32-zero-size": ("float32", (2, 0, 3), True),
}
CASE_IDS = list(CASES)


def _np_shape(on: bool):
    return mx.util.np_shape(True) if on else contextlib.nullcontext()


def _nd_magic(path) -> int:
    """The magic of the first array record, right after the 24-byte list header."""
    with open(path, "rb") as f:
        return struct.unpack("<I", f.read(28)[24:28])[0]


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@needs_mx
@pytest.mark.parametrize("case", CASE_IDS)
def test_reads_what_mxnet_saves(tmp_path, case):
    dtype, shape, np_sem = CASES[case]
    want = _values(dtype, shape)
    path = tmp_path / "m.params"
    with _np_shape(np_sem):
        nds = {"arg:x": mx.nd.array(want, dtype=dtype), "aux:one": mx.nd.ones((1,))}
        mx.nd.save(str(path), nds)
    assert _nd_magic(path) == (V3 if np_sem else V2)
    got = load_params(path)
    assert list(got) == ["arg:x", "aux:one"]
    _assert_same(got["arg:x"], want)
    _assert_same(got["aux:one"], np.ones((1,), np.float32))


@needs_mx
@pytest.mark.parametrize("case", CASE_IDS)
def test_mxnet_reads_what_we_save(tmp_path, case):
    dtype, shape, np_sem = CASES[case]
    params = {"arg:x": _values(dtype, shape), "aux:y": _values("float32", (2, 3))}
    ours, theirs = tmp_path / "ours.params", tmp_path / "theirs.params"
    save_params(ours, params)
    assert _nd_magic(ours) == (V3 if shape == () else V2)  # V3 only where V2 cannot say it
    with _np_shape(np_sem):  # mxnet makes zero-size arrays only here, but saves them as V2
        nds = {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()}
    with _np_shape(shape == ()):
        loaded = mx.nd.load(str(ours))
        mx.nd.save(str(theirs), nds)
    assert list(loaded) == list(params)
    for name, want in params.items():
        _assert_same(loaded[name].asnumpy(), want)
    assert ours.read_bytes() == theirs.read_bytes()  # byte-compatible, not merely readable
    assert set(os.listdir(tmp_path)) == {"ours.params", "theirs.params"}  # no temp file left


@needs_mx
def test_bfloat16_is_widened_to_float32(tmp_path):
    src = mx.nd.array([1.5, -2.25, 3e38, 1e-3], dtype="float32")
    bf16 = mx.nd.amp_cast(src, dtype="bfloat16")
    mx.nd.save(str(tmp_path / "b.params"), {"b": bf16})
    got = load_params(tmp_path / "b.params")["b"]
    _assert_same(got, mx.nd.amp_cast(bf16, dtype="float32").asnumpy())


@needs_mx
def test_unnamed_list_gets_index_keys(tmp_path):
    a, b = _values("float32", (2, 2)), _values("int32", (3,))
    mx.nd.save(str(tmp_path / "l.params"), [mx.nd.array(a), mx.nd.array(b, dtype="int32")])
    got = load_params(tmp_path / "l.params")
    assert list(got) == ["0", "1"]
    _assert_same(got["0"], a)
    _assert_same(got["1"], b)


@needs_mx
def test_gluon_export(tmp_path):
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(5, in_units=144))
    net.initialize()
    net.hybridize()
    net(mx.nd.ones((1, 3, 8, 8)))
    net.export(str(tmp_path / "net"))
    path = tmp_path / "net-0000.params"
    want = mx.nd.load(str(path))
    got = load_params(path)
    assert list(got) == list(want)
    for name in want:
        _assert_same(got[name], want[name].asnumpy())
    arg, aux = split_arg_aux(got)
    assert sorted(aux) == sorted(k[4:] for k in want if k.startswith("aux:"))
    assert sorted(arg) == sorted(k[4:] for k in want if k.startswith("arg:"))
    assert any(k.endswith("running_mean") for k in aux) and len(arg) == 6


def _legacy_file(magic_v1: bool) -> tuple[bytes, np.ndarray]:
    """A pre-V2 file, which mxnet 1.9.1 no longer writes but still reads."""
    arr = _values("float32", (2, 3))
    if magic_v1:  # V1: magic, then int32 ndim and int64 dims, no storage type
        shape = struct.pack("<Iiqq", V1, 2, 2, 3)
    else:  # before V1: the first word is ndim, dims are uint32
        shape = struct.pack("<III", 2, 2, 3)
    body = shape + struct.pack("<iii", 1, 0, 0) + arr.tobytes()
    names = struct.pack("<QQ", 1, 1) + b"w"
    return struct.pack("<QQQ", 0x112, 0, 1) + body + names, arr


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "pre-v1"])
def test_legacy_versions(tmp_path, v1):
    data, arr = _legacy_file(v1)
    path = tmp_path / "old.params"
    path.write_bytes(data)
    _assert_same(load_params(path)["w"], arr)
    if mx is not None:
        _assert_same(mx.nd.load(str(path))["w"].asnumpy(), arr)


def test_save_load_round_trip_without_mxnet(tmp_path):
    params = {f"p{i}": _values(dt, (3, i + 1)) for i, dt in enumerate(["float32", "int8", "bool"])}
    params["s"] = np.float64(2.5)
    params["big_endian"] = np.arange(4, dtype=">i4")
    params["strided"] = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    save_params(tmp_path / "r.params", params)
    got = load_params(tmp_path / "r.params")
    assert list(got) == list(params)
    for name, want in params.items():
        want = np.asarray(want)
        np.testing.assert_array_equal(got[name], want)
        assert got[name].dtype == want.dtype.newbyteorder("=") and got[name].shape == want.shape
    assert os.listdir(tmp_path) == ["r.params"]


def test_save_rejects_unsupported_dtype_and_keeps_old_file(tmp_path):
    path = tmp_path / "k.params"
    save_params(path, {"a": np.ones(2, np.float32)})
    before = path.read_bytes()
    with pytest.raises(FcError, match="complex128"):
        save_params(path, {"a": np.ones(2, np.float32), "c": np.ones(2, complex)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["k.params"]


def test_split_arg_aux():
    a, b, c, d = (np.zeros(1) for _ in range(4))
    arg, aux = split_arg_aux({"arg:w": a, "aux:m": b, "plain": c, "other:x": d})
    assert list(arg) == ["w", "plain", "other:x"] and list(aux) == ["m"]
    assert arg["w"] is a and aux["m"] is b


def _good_file(tmp_path) -> bytes:
    params = {"weight": np.arange(1024, dtype=np.float32), "b": np.ones(2)}
    save_params(tmp_path / "good.params", params)
    return (tmp_path / "good.params").read_bytes()


def _npz_bytes(tmp_path) -> bytes:
    np.savez(tmp_path / "x.npz", a=np.ones(3))
    return (tmp_path / "x.npz").read_bytes()


def _zip_bytes(tmp_path) -> bytes:
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
        z.writestr("model-symbol.json", "{}")
    return (tmp_path / "x.zip").read_bytes()


def _patched(good: bytes, offset: int, fmt: str, value) -> bytes:
    return good[:offset] + struct.pack(fmt, value) + good[offset + struct.calcsize(fmt) :]


# Layout of the good file: 24-byte header, array #0 record at 24 (magic, stype at 28, ndim at
# 32, dim at 36, context at 44, type flag at 52, data at 56..4152), array #1, then the
# 31-byte names list (count, then length + b"weight", length + b"b").
CORRUPT = {
    "empty": (lambda g, t: b"", "byte 0: truncated"),
    "wrong-file-magic": (lambda g, t: _patched(g, 0, "<Q", 0x113), "bad file magic 0x113"),
    "truncated-header": (lambda g, t: g[:20], "byte 16: truncated, need 8 bytes of array count"),
    "bad-array-magic": (
        lambda g, t: _patched(g, 24, "<I", 0x1234),
        "byte 24: bad NDArray magic 0x1234, expected 0xf993fac9",
    ),
    "sparse-storage": (lambda g, t: _patched(g, 28, "<i", 2), "byte 28: array #0: unsupported csr"),
    "bad-ndim": (lambda g, t: _patched(g, 32, "<i", 1000), "byte 32: array #0: bad ndim 1000"),
    "bad-type-flag": (
        lambda g, t: _patched(g, 52, "<i", 99),
        "byte 52: array #0: unsupported type flag 99",
    ),
    "absurd-zero-size-shape": (
        lambda g, t: struct.pack("<QQQIiiqqiiiQ", 0x112, 0, 1, V2, 0, 2, 0, 2**62, 1, 0, 0, 0),
        "byte 64: bad shape (0, 4611686018427387904) for array #0 float32 data, too large",
    ),
    "truncated-data": (
        lambda g, t: g[:1040],
        "byte 56: truncated, need 4096 bytes of array #0 float32 data, 984 left",
    ),
    "truncated-names": (lambda g, t: g[:-1], "truncated, need 1 bytes of name #1, 0 left"),
    "name-count-mismatch": (
        lambda g, t: g[:-31] + struct.pack("<Q", 3) + g[-23:],
        "bad name count 3, expected 2",
    ),
    "text-file": (lambda g, t: b"this is not a params file\n" * 4, "bad file magic"),
    "zip-file": (lambda g, t: _zip_bytes(t), "bad file magic"),
    "npz-file": (lambda g, t: _npz_bytes(t), "bad file magic"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_files_raise_one_line(tmp_path, case):
    make, expected = CORRUPT[case]
    path = tmp_path / f"model-{case}.params"
    path.write_bytes(make(_good_file(tmp_path), tmp_path))
    with pytest.raises(ImportError_) as info:
        load_params(path)
    msg = str(info.value)
    assert path.name in msg and "byte" in msg and "\n" not in msg
    assert expected in msg


def test_every_truncation_is_reported(tmp_path):
    good = _good_file(tmp_path)
    path = tmp_path / "cut.params"
    for n in sorted({*range(80), *range(len(good) - 40, len(good))}):
        path.write_bytes(good[:n])
        with pytest.raises(ImportError_, match=r"cut\.params: byte \d+: "):
            load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImportError_, match="nope.params: cannot read"):
        load_params(tmp_path / "nope.params")
