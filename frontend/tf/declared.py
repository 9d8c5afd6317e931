"""A TensorFlow SavedModel directory or an HDF5 (Keras ``.h5``) file judged by the tensor
sizes it *declares*, before TensorFlow, Keras or h5py allocate any of them (issue 16).

A few kilobytes can declare gigabytes: a checkpoint index entry says ``float32[10^9]`` and
TF's restore allocates it before it finds the data file short; an HDF5 dataset declared
``[10^9]`` with no chunk written reads back as 4 GB of fill value; one ``float_val`` fills any
declared ``Const`` shape. Every declared tensor is held against ``fc.limits`` (one tensor and
the file's total), and an HDF5 dataset whose data lives in another file (external storage, a
virtual dataset) is refused: fc reads weights from the file it was given only.

The checkpoint index (``variables/variables.index``) is read here, not by TF's reader: it is a
LevelDB-style table (blocks of prefix-compressed key/value entries, an index block, a 48-byte
footer) whose values are ``BundleEntryProto``\\ s, and reading it in Python keeps a mutated
index a one-line error instead of whatever TF's C++ reader does with it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError, ImportError_
from fc.limits import Budget, check_bytes

__all__ = ["judge_saved_model", "judge_h5", "judge_npz", "member_file", "read_checkpoint_index",
           "write_checkpoint_index"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # a block's compression type byte and masked CRC32C


class _Bad(Exception):
    """The index is not a well-formed table (turned into one line naming the file)."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Bad("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _block(buf: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the table block at ``offset`` (``size`` bytes)."""
    if offset < 0 or size < 4 or offset + size + _TRAILER > len(buf):
        raise _Bad(f"block at {offset} of {size} bytes lies outside the file")
    if buf[offset + size] != 0:
        raise _Bad(f"block at {offset} is compressed (type {buf[offset + size]}); TensorFlow "
                   "writes checkpoint indexes uncompressed")
    end = offset + size
    restarts = int.from_bytes(buf[end - 4:end], "little")
    data_end = end - 4 - 4 * restarts
    if restarts == 0 or data_end < offset:
        raise _Bad(f"block at {offset} has {restarts} restart points")
    out: list[tuple[bytes, bytes]] = []
    pos, key = offset, b""
    while pos < data_end:
        shared, pos = _varint(buf, pos, data_end)
        unshared, pos = _varint(buf, pos, data_end)
        length, pos = _varint(buf, pos, data_end)
        if shared > len(key) or pos + unshared + length > data_end:
            raise _Bad(f"entry at {pos} runs past its block")
        key = key[:shared] + buf[pos:pos + unshared]
        pos += unshared
        out.append((key, buf[pos:pos + length]))
        pos += length
    return out


def read_checkpoint_index(path: Path) -> dict[str, Any]:
    """The entries of a TF checkpoint index: tensor key -> ``BundleEntryProto`` (the header,
    key ``""``, left out). Raises :class:`ImportError_` naming ``path`` if it is not one."""
    from tensorflow.core.protobuf import tensor_bundle_pb2

    buf = path.read_bytes()
    try:
        entries: dict[str, Any] = {}
        for key, value in _entries(buf):
            if not key:
                continue  # the BundleHeaderProto
            entry = tensor_bundle_pb2.BundleEntryProto()
            try:
                entry.ParseFromString(value)
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
                raise _Bad(f"entry {key!r} is not a BundleEntryProto ({type(e).__name__})"
                           ) from None
            entries[key.decode("utf-8", "backslashreplace")] = entry
    except _Bad as e:
        raise ImportError_(f"{path}: not a TensorFlow checkpoint index ({e})") from None
    return entries


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def write_checkpoint_index(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A checkpoint index holding ``entries`` (raw key, serialized proto; sorted by key, the
    header ``b""`` first), as TF's table writer lays it out: one data block, an empty
    meta-index block, an index block, the footer; each block checksummed (TF checks). The
    inverse of :func:`read_checkpoint_index`, for tests and the fuzz harness."""
    out = bytearray()

    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        start = len(out)
        body = bytearray()
        restarts = []
        for key, value in items:  # every entry a restart point: no shared prefixes
            restarts.append(len(body))
            body += _put_varint(0) + _put_varint(len(key)) + _put_varint(len(value))
            body += key + value
        for r in restarts or [0]:
            body += r.to_bytes(4, "little")
        body += len(restarts or [0]).to_bytes(4, "little")
        out.extend(body)
        out.extend(b"\0" + _masked_crc32c(bytes(body) + b"\0").to_bytes(4, "little"))
        return _put_varint(start) + _put_varint(len(body))

    data = block(sorted(entries))
    meta = block([])
    last = max(k for k, _ in entries) + b"\0" if entries else b""
    index = block([(last, data)])
    footer = (meta + index).ljust(_FOOTER - 8, b"\0") + _TABLE_MAGIC.to_bytes(8, "little")
    return bytes(out + footer)


def checkpoint_index_entries(path: Path) -> list[tuple[bytes, bytes]]:
    """The raw (key, value) entries of a checkpoint index, the header included."""
    buf = path.read_bytes()
    try:
        return _entries(buf)
    except _Bad as e:
        raise ImportError_(f"{path}: not a TensorFlow checkpoint index ({e})") from None


def _entries(buf: bytes) -> list[tuple[bytes, bytes]]:
    if len(buf) < _FOOTER or int.from_bytes(buf[-8:], "little") != _TABLE_MAGIC:
        raise _Bad("no table footer")
    pos = len(buf) - _FOOTER
    _, pos = _varint(buf, pos, len(buf) - 8)  # the meta-index block (unused by TF)
    _, pos = _varint(buf, pos, len(buf) - 8)
    index_offset, pos = _varint(buf, pos, len(buf) - 8)
    index_size, pos = _varint(buf, pos, len(buf) - 8)
    out = []
    for _, handle in _block(buf, index_offset, index_size):
        offset, p = _varint(handle, 0, len(handle))
        size, _ = _varint(handle, p, len(handle))
        out.extend(_block(buf, offset, size))
    return out


#: bytes TF holds per element of a type without a fixed numpy size (string, variant,
#: resource): a ``tstring`` is 24 bytes before its characters, the others are larger
_OBJECT_ITEMSIZE = 24


def _itemsize(tf: Any, dtype_enum: int) -> int | None:
    """Bytes per element of a TF element type (``None``: not a TF type at all, which TF
    refuses itself)."""
    try:
        dtype = tf.dtypes.as_dtype(dtype_enum)
        np_dtype = np.dtype(dtype.as_numpy_dtype)
    except (TypeError, ValueError, KeyError):
        return None
    return _OBJECT_ITEMSIZE if np_dtype.kind in "OSUV" else np_dtype.itemsize


def _dims(shape: Any) -> list[int] | None:
    """A ``TensorShapeProto``'s dims, ``None`` if the rank or a dim is unknown."""
    if shape.unknown_rank:
        return None
    dims = [int(d.size) for d in shape.dim]
    return None if any(d < 0 for d in dims) else dims


def _declared(tf: Any, dtype_enum: int, shape: Any) -> tuple[int, str] | None:
    """``(bytes, "float32[2, 3]")`` of a declared tensor, ``None`` if its shape or type is
    unknown (a string, variant or resource tensor counted at ``_OBJECT_ITEMSIZE`` bytes an
    element: TF allocates that much for each before anything else)."""
    dims = _dims(shape)
    size = _itemsize(tf, dtype_enum)
    if dims is None or size is None:
        return None
    return math.prod(dims) * size, f"{tf.dtypes.as_dtype(dtype_enum).name}{dims}"


_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable", "TemporaryVariable"})


def _judge_nodes(tf: Any, nodes: Any, where: str) -> None:
    """Every tensor-valued attribute (a ``Const``'s value) and every variable op's declared
    shape of ``nodes``, against the per-tensor limit."""
    for node in nodes:
        for key, attr in node.attr.items():
            tensors = [attr.tensor] if attr.HasField("tensor") else list(attr.list.tensor)
            for t in tensors:
                found = _declared(tf, t.dtype, t.tensor_shape)
                if found is not None:
                    check_bytes(found[0], f"{where}: node {node.name!r} ({node.op}): "
                                          f"attribute {key!r} ({found[1]})")
        if node.op in _VARIABLE_OPS and "shape" in node.attr and "dtype" in node.attr:
            found = _declared(tf, node.attr["dtype"].type, node.attr["shape"].shape)
            if found is not None:
                check_bytes(found[0], f"{where}: variable {node.name!r} ({found[1]})")


def _valid_tf_shape(dims: list[int]) -> bool:
    """What TF's ``TensorShape`` CHECKs as it adds dims one by one: at most 254 of them,
    none negative, and no running product above int64 ([2^31, 2^62, 0] aborts at the
    second dim although it holds no element)."""
    if len(dims) > 254:
        return False
    count = 1
    for d in dims:
        if d < 0:
            return False
        count *= d
        if count > 2**63 - 1:
            return False
    return True


def judge_saved_model(path: Path) -> None:
    """Refuse a SavedModel directory that declares a tensor above ``fc.limits`` (its graph's
    constants and variables, the object graph's variables, each checkpoint entry, and their
    total), before TensorFlow loads it; a ``saved_model.pb`` that is not a SavedModel, or an
    index that is not a checkpoint index, is one line."""
    from tensorflow.core.protobuf import saved_model_pb2

    from fc._tf import import_tf

    tf = import_tf()
    budget = Budget(str(path))
    pb = path / "saved_model.pb"
    budget.add(pb.stat().st_size, "saved_model.pb", one_tensor=False)
    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(pb.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, RecursionError, ...
        text = " ".join(str(e).split())[:160]
        raise ImportError_(f"{pb}: not a SavedModel ({type(e).__name__}: {text})") from None
    for meta in model.meta_graphs:
        graph = meta.graph_def
        _judge_nodes(tf, graph.node, str(pb))
        for fn in graph.library.function:
            _judge_nodes(tf, fn.node_def, f"{pb}: function {fn.signature.name!r}")
        for node in meta.object_graph_def.nodes:
            if node.WhichOneof("kind") == "variable":
                v = node.variable
                found = _declared(tf, v.dtype, v.shape)
                if found is not None:
                    check_bytes(found[0], f"{pb}: variable {v.name!r} ({found[1]})")
    index = path / "variables" / "variables.index"
    if not index.is_file():
        return  # a SavedModel without variables (TF says so if it needs them)
    for key, entry in read_checkpoint_index(index).items():
        what = f"{index}: tensor {key!r}"
        dims = [int(d.size) for d in entry.shape.dim]
        if entry.shape.unknown_rank or not _valid_tf_shape(dims):
            # TF's checkpoint reader aborts the process on these (found by fc.fuzz: CHECK
            # failures in TensorShape, no exception)
            shape = "an unknown rank" if entry.shape.unknown_rank else f"shape {dims}"
            raise ImportError_(f"{what} declares {shape}, which no tensor has")
        found = _declared(tf, entry.dtype, entry.shape)
        if found is not None:
            what += f" ({found[1]})"
        nbytes = max(found[0] if found is not None else 0, int(entry.size))
        budget.add(nbytes, what)


_GCOL = b"GCOL"


def _global_heap_fault(buf: Any, lo: int = 0, hi: int | None = None) -> str | None:
    """Where an HDF5 global heap collection (the storage of variable-length strings, such
    as Keras' ``model_config``) in ``buf[lo:hi]`` would send libhdf5 into an endless loop,
    else ``None``.

    libhdf5 walks a collection's objects by their sizes; a free-space object (index 0) of
    size 0, or a size whose sum wraps around, makes no progress and libhdf5 spins forever
    inside C, where no signal reaches it (found by the 10-minute tf-h5 run: fcc hung reading
    the file's ``model_config``). Collections are found by their signature (``buf`` is an
    mmap or bytes: no copy) and walked the way libhdf5 walks them (8-byte lengths)."""
    hi = len(buf) if hi is None else hi
    pos = lo
    while (i := buf.find(_GCOL, pos, hi)) >= 0:
        pos = i + 1
        fault = _walk_collection(buf, i, hi, i - lo)
        if fault is not None:
            return fault
    return None


def _walk_collection(buf: Any, at: int, hi: int, shown: int) -> str | None:
    if at + 16 > hi or buf[at + 4] != 1:  # version 1; else not a collection
        return None
    size = int.from_bytes(buf[at + 8:at + 16], "little")
    if size < 4096 or at + size > hi:
        return None  # libhdf5 refuses these itself
    p, mask = 16, (1 << 64) - 1
    while p + 16 <= size:
        idx = int.from_bytes(buf[at + p:at + p + 2], "little")
        length = int.from_bytes(buf[at + p + 8:at + p + 16], "little")
        need = (16 + ((length + 7) & ~7 & mask)) & mask if idx else length
        nxt = (p + need) & mask
        if nxt <= p:
            return (f"its global heap at byte {shown} holds object {idx} of size {length}, "
                    "on which libhdf5 loops forever")
        p = nxt
    return None


def _heap_fault_of(file: Any) -> str | None:
    """:func:`_global_heap_fault` of a path, a stored zip member's window or a file object."""
    import mmap

    raw = getattr(file, "raw", None)
    if isinstance(file, str | Path) or isinstance(raw, _Window):
        f = open(file, "rb") if isinstance(file, str | Path) else raw._f  # noqa: SIM115
        lo, hi = (0, None) if raw is None else (raw._start, raw._start + raw._size)
        try:
            if os.fstat(f.fileno()).st_size == 0:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return _global_heap_fault(m, lo, hi)
        finally:
            if raw is None:
                f.close()
    file.seek(0)
    data = file.read()
    file.seek(0)
    return _global_heap_fault(data)


def judge_h5(source: str, file: Any, budget: Budget | None = None) -> None:
    """Refuse an HDF5 file (a path or an open binary file object; ``source`` names it in
    messages) holding a dataset or attribute declared above ``fc.limits``, or a dataset whose
    data lives outside the file, before anything reads them. A file h5py cannot walk is one
    line too (Keras would read the same objects)."""
    import h5py

    budget = budget or Budget(source)
    # h5py mangles an exception raised inside its visitors: they only list, judged after
    declared: list[tuple[int, str]] = []  # (bytes, what)
    outside: list[str] = []

    def attributes(name: str, obj: Any) -> None:
        for key in obj.attrs:
            aid = obj.attrs.get_id(key)
            shape = aid.shape or ()
            declared.append((math.prod(shape) * aid.dtype.itemsize,
                             f"attribute {key!r} of {name or '/'!r} ({aid.dtype}{list(shape)})"))

    def visit(name: str, obj: Any) -> None:
        attributes(name, obj)
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external or obj.is_virtual:
            kind = "external storage" if obj.external else "a virtual dataset"
            outside.append(f"dataset {name!r} keeps its data outside the file ({kind})")
        shape = obj.shape or ()
        declared.append((math.prod(shape) * obj.dtype.itemsize,
                         f"dataset {name!r} ({obj.dtype}{list(shape)})"))

    def link(name: str, target: Any) -> None:
        if isinstance(target, h5py.ExternalLink):
            outside.append(f"{name!r} links to {target.path!r} in another file "
                           f"({target.filename!r})")

    try:
        fault = _heap_fault_of(file)
    except OSError as e:
        raise ImportError_(f"{source}: cannot read ({e})") from None
    if fault is not None:
        raise ImportError_(f"{source}: not a readable HDF5 file ({fault})")
    try:
        with h5py.File(file, "r") as f:
            attributes("", f)
            f.visititems_links(link)
            if not outside:
                f.visititems(visit)
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError, ...
        text = " ".join(str(e).split())[:160]
        raise ImportError_(f"{source}: not a readable HDF5 file ({type(e).__name__}: {text})"
                           ) from None
    if outside:
        raise ImportError_(f"{source}: {outside[0]}; fc reads weights from the file it is "
                           "given only")
    for nbytes, what in declared:
        budget.add(nbytes, f"{source}: {what}")


class _Window(io.RawIOBase):
    """``size`` bytes of a file from ``start``, seekable (a stored zip member read in place:
    ``ZipFile.open`` seeks backwards by reading again from the start, 2 s of h5py's walk of
    a ResNet-50 .keras)."""

    def __init__(self, path: Path, start: int, size: int):
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


@contextmanager
def member_file(path: Path, zf: Any, name: str) -> Iterator[Any]:
    """A seekable binary file of zip member ``name``: read in place when stored (Keras
    stores its weights file), else inflated into memory (its size judged already)."""
    import zipfile

    info = zf.getinfo(name)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) == 30 and header[:4] == b"PK\x03\x04":
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + \
                int.from_bytes(header[28:30], "little")
            window = io.BufferedReader(_Window(path, start, info.file_size))
            try:
                yield window
            finally:
                window.close()
            return
    with io.BytesIO(zf.read(name)) as f:
        yield f


def judge_npz(source: str, file: Any, budget: Budget | None = None) -> None:
    """Refuse an npz archive (a Keras ``model.weights.npz``) whose members' ``.npy`` headers
    declare an array above ``fc.limits`` or larger than the member holds (numpy allocates the
    declared array before reading a member it cannot seek in)."""
    import zipfile

    budget = budget or Budget(source)
    try:
        with zipfile.ZipFile(file) as zf:
            for info in zf.infolist():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                nbytes = math.prod(shape) * dtype.itemsize
                what = f"{source}: member {info.filename!r} ({dtype.name}{list(shape)})"
                budget.add(nbytes, what)
                if nbytes > info.file_size:
                    raise ImportError_(f"{what} declares {nbytes} bytes, the member holds "
                                       f"{info.file_size}")
    except FcError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt archive or header
        text = " ".join(str(e).split())[:160]
        raise ImportError_(f"{source}: not a readable npz archive ({type(e).__name__}: "
                           f"{text})") from None
