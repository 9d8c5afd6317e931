"""Read and write MXNet ``.params`` files with numpy alone.

A ``.params`` file (``mx.nd.save``, gluon ``export``, ``mx.model.save_checkpoint``) is the
NDArray list of ``src/ndarray/ndarray.cc`` (``NDArray::Save``/``Load``), little-endian:

* file header: ``uint64 0x112``, ``uint64 reserved``;
* ``uint64`` array count, then each array:

  - V2 (``0xF993fac9``, legacy shape semantics) / V3 (``0xF993faca``, np shape semantics):
    ``uint32 magic``, ``int32 stype`` (0 dense; 1 row_sparse and 2 csr are refused), shape
    (``int32 ndim``, ``int64`` dims), context (``int32 dev_type``, ``int32 dev_id``),
    ``int32`` mshadow type flag, raw C-order data;
  - V1 (``0xF993fac8``): as V2 without the storage type;
  - legacy (before V1): the first ``uint32`` is ndim, then ``uint32`` dims, context, type
    flag, data;

* ``uint64`` name count (0 for a list saved without names), each ``uint64`` length + utf-8.

mxnet 1.9.1 writes V2, or V3 for every array when np shape semantics are on (the only way
to store a 0-d array, since V2 ndim 0 means "unknown shape"; V3 files load in mxnet only
under ``np_shape(True)``).

Reading never runs code (no pickle) and reports any malformed file as one ``ImportError_``
line naming the file, the byte offset and what was expected there.
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Mapping

import numpy as np

from fc.errors import FcError, ImportError_
from fc.limits import Budget, check_bytes

__all__ = ["load_params", "save_params", "split_arg_aux"]

_LIST_MAGIC = 0x112
_V1_MAGIC = 0xF993FAC8
_V2_MAGIC = 0xF993FAC9
_V3_MAGIC = 0xF993FACA
_MAX_NDIM = 64  # mxnet has no hard limit; anything larger is a corrupt header
_CPU = 1  # mxnet Context::kCPU

_STYPES = {-1: "undefined", 0: "default", 1: "row_sparse", 2: "csr"}

# mshadow type flags (mshadow/base.h) -> little-endian numpy dtype.
_FLAG_TO_DTYPE: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
    8: np.dtype("<i2"),
    9: np.dtype("<u2"),
    10: np.dtype("<u4"),
    11: np.dtype("<u8"),
}
_BFLOAT16 = 12  # numpy has no bfloat16: read as its raw uint16 bits, widened to float32
_DTYPE_TO_FLAG = {dt.newbyteorder("="): flag for flag, dt in _FLAG_TO_DTYPE.items()}


class _Reader:
    """Bounds-checked little-endian cursor over the file bytes; every failure names the offset."""

    def __init__(self, buf: bytes, source: str):
        self.buf = buf
        self.source = source
        self.pos = 0

    def fail(self, msg: str, at: int | None = None) -> ImportError_:
        return ImportError_(f"{self.source}: byte {self.pos if at is None else at}: {msg}")

    def need(self, n: int, what: str) -> int:
        """Return the current offset after checking ``n`` bytes of ``what`` remain."""
        left = len(self.buf) - self.pos
        if n > left:
            raise self.fail(f"truncated, need {n} bytes of {what}, {left} left")
        return self.pos

    def unpack(self, fmt: str, what: str) -> tuple:
        st = struct.Struct("<" + fmt)
        pos = self.need(st.size, what)
        self.pos += st.size
        return st.unpack_from(self.buf, pos)

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("i", what)[0]

    def u64(self, what: str) -> int:
        return self.unpack("Q", what)[0]

    def array(self, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
        count = 1
        for d in shape:
            count *= d
        pos = self.need(count * dtype.itemsize, what)
        check_bytes(count * dtype.itemsize, f"{self.source}: {what}")
        self.pos += count * dtype.itemsize
        if count == 0:
            try:
                return np.empty(shape, dtype=dtype)
            except ValueError:  # e.g. (0, 2**62): no data, yet too big for numpy to describe
                raise self.fail(f"bad shape {shape} for {what}, too large", pos) from None
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=pos).reshape(shape).copy()


def _read_shape(r: _Reader, idx: int, legacy_ndim: int | None = None) -> tuple[int, ...] | None:
    """Read a TShape; ``None`` means mxnet's "unknown shape" (an uninitialized NDArray)."""
    at = r.pos
    if legacy_ndim is not None:  # pre-V1: the magic word was ndim, dims are uint32
        dims = r.unpack(f"{legacy_ndim}I", f"array #{idx} legacy uint32 dims")
        return tuple(dims) if legacy_ndim > 0 else None
    ndim = r.i32(f"array #{idx} ndim")
    if ndim == -1:
        return None
    if not 0 <= ndim <= _MAX_NDIM:
        raise r.fail(f"array #{idx}: bad ndim {ndim}, expected 0..{_MAX_NDIM}", at)
    at = r.pos
    dims = r.unpack(f"{ndim}q", f"array #{idx} int64 dims")
    if any(d == -1 for d in dims):
        return None
    if any(d < 0 for d in dims):
        raise r.fail(f"array #{idx}: bad shape {dims}, expected non-negative dims", at)
    return tuple(dims)


def _read_ndarray(r: _Reader, idx: int) -> np.ndarray:
    at = r.pos
    magic = r.u32(f"array #{idx} magic")
    legacy_ndim = None
    if magic in (_V2_MAGIC, _V3_MAGIC):
        stype_at = r.pos
        stype = r.i32(f"array #{idx} storage type")
        if stype not in (-1, 0):
            name = _STYPES.get(stype)
            what = f"unsupported {name} storage" if name else f"bad storage type {stype}"
            raise r.fail(f"array #{idx}: {what}, only dense (0) arrays are supported", stype_at)
    elif magic != _V1_MAGIC:
        if magic > _MAX_NDIM:
            raise r.fail(
                f"bad NDArray magic {magic:#x}, expected {_V2_MAGIC:#x}/{_V3_MAGIC:#x}/"
                f"{_V1_MAGIC:#x} (or a legacy ndim <= {_MAX_NDIM})",
                at,
            )
        legacy_ndim = magic
    shape_at = r.pos
    shape = _read_shape(r, idx, legacy_ndim)
    if shape is None or (magic != _V3_MAGIC and not shape):  # ndim 0 is "unknown" before V3
        raise r.fail(f"array #{idx}: uninitialized NDArray (unknown shape), no data", shape_at)
    r.unpack("ii", f"array #{idx} context")
    flag_at = r.pos
    flag = r.i32(f"array #{idx} type flag")
    if flag == _BFLOAT16:
        bits = r.array(np.dtype("<u2"), shape, f"array #{idx} bfloat16 data")
        return (bits.astype(np.uint32) << 16).view(np.float32)
    dtype = _FLAG_TO_DTYPE.get(flag)
    if dtype is None:
        raise r.fail(f"array #{idx}: unsupported type flag {flag}", flag_at)
    return r.array(dtype, shape, f"array #{idx} {dtype.name} data")


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.params`` file into ``{stored name: array}`` in file order.

    Names are kept as stored (``arg:conv0_weight``, ``aux:bn_running_mean``) so that callers
    can tell parameters from auxiliary states; a list saved without names gets the keys
    ``"0"``, ``"1"``, ... bfloat16 arrays are widened (exactly) to float32.
    """
    source = os.fspath(path)
    try:
        size = os.stat(source).st_size
        Budget(source).add(size, "the whole file", one_tensor=False)  # read whole: judge first
        with open(source, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise ImportError_(f"{source}: cannot read: {exc.strerror or exc}") from exc
    r = _Reader(buf, str(source))
    magic = r.u64("file magic")
    if magic != _LIST_MAGIC:
        raise r.fail(
            f"bad file magic {magic:#x}, expected {_LIST_MAGIC:#x} (not an MXNet .params file)", 0
        )
    r.u64("reserved header field")
    count_at = r.pos
    count = r.u64("array count")
    # The smallest array record (magic + stype + ndim) is 12 bytes: reject absurd counts early.
    left = len(buf) - r.pos
    if count * 12 > left:
        raise r.fail(f"bad array count {count}: needs >= {count * 12} bytes, {left} left", count_at)
    arrays = [_read_ndarray(r, i) for i in range(count)]
    names_at = r.pos
    n_names = r.u64("name count")
    if n_names not in (0, count):
        raise r.fail(f"bad name count {n_names}, expected {count} (one per array) or 0", names_at)
    if n_names == 0:
        return {str(i): a for i, a in enumerate(arrays)}
    out: dict[str, np.ndarray] = {}
    for i, arr in enumerate(arrays):
        length = r.u64(f"name #{i} length")
        at = r.need(length, f"name #{i}")
        r.pos += length
        try:
            name = buf[at : at + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise r.fail(f"name #{i} is not valid utf-8 ({exc.reason})", at) from None
        if name in out:
            raise r.fail(f"duplicate name {name!r}", at)
        out[name] = arr
    return out


def split_arg_aux(
    params: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split stored names into (arg_params, aux_params) with the ``arg:``/``aux:`` prefixes removed.

    Symbol graphs name their inputs without prefixes; names that carry none (gluon
    ``save_parameters`` files, bare ``mx.nd.save`` dicts) are taken as args.
    """
    arg: dict[str, np.ndarray] = {}
    aux: dict[str, np.ndarray] = {}
    for name, value in params.items():
        kind, sep, rest = name.partition(":")
        if sep and kind == "aux":
            aux[rest] = value
        elif sep and kind == "arg":
            arg[rest] = value
        else:
            arg[name] = value
    return arg, aux


def save_params(path: str | os.PathLike, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` as a ``.params`` file that ``mx.nd.load`` reads back exactly.

    Arrays are stored dense on cpu(0) with the V2 magic, like mxnet 1.9.1 does; if any array
    is 0-d (V2 reads ndim 0 as "unknown shape") the whole file uses V3, as mxnet does under
    np shape semantics, and mxnet then reads it only under ``np_shape(True)``. The file is
    replaced atomically, so a reader never sees half a file.
    """
    target = os.fspath(path)
    arrays: list[tuple[bytes, np.ndarray, int]] = []
    for name, value in params.items():
        if not isinstance(name, str):
            raise FcError(f"{target}: parameter name {name!r} is not a string")
        arr = np.asarray(value)
        flag = _DTYPE_TO_FLAG.get(arr.dtype.newbyteorder("="))
        if flag is None:
            raise FcError(
                f"{target}: parameter {name!r} has dtype {arr.dtype}, which MXNet cannot store"
            )
        arr = np.asarray(arr, dtype=_FLAG_TO_DTYPE[flag], order="C")  # keeps 0-d as 0-d
        arrays.append((name.encode("utf-8"), arr, flag))
    magic = _V3_MAGIC if any(a.ndim == 0 for _, a, _ in arrays) else _V2_MAGIC

    directory = os.path.dirname(target) or "."
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<QQQ", _LIST_MAGIC, 0, len(arrays)))
            for _, arr, flag in arrays:
                head = (magic, 0, arr.ndim, *arr.shape, _CPU, 0, flag)
                f.write(struct.pack(f"<Iii{arr.ndim}qiii", *head))
                f.write(memoryview(arr.reshape(-1)).cast("B"))
            f.write(struct.pack("<Q", len(arrays)))
            for name, _, _ in arrays:
                f.write(struct.pack("<Q", len(name)))
                f.write(name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
