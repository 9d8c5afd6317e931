"""IR on disk: ``<prefix>_graph.json`` (structure, typed attributes, every tensor's shape and
dtype) plus ``<prefix>_params.npz`` (weights by tensor name).

Both files are deterministic: the same graph gives byte-identical files. The npz is the
format ``np.savez`` writes (a zip of ``.npy`` members, stored uncompressed), but written by
fc with a fixed member timestamp, because ``np.savez`` stamps the current time into the zip,
and with zip64 headers only on members that need them (their bytes vary with the Python
patch release).
Both files are written to temporary names beside their targets and renamed into place only
when both are complete, so a failed save leaves the previous pair intact and no temporary
files. They are read back with ``allow_pickle=False``. Any malformed file raises ``IRError``
naming the file and field (never a KeyError or a numpy error).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from fc.errors import FcError, IRError, SchemaError
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import (
    FLOAT,
    FLOATS,
    INT,
    INTS,
    STRING,
    STRINGS,
    Attr,
    coerce_attr,
    get_schema,
    has_schema,
)
from fc.limits import Budget, check_bytes

__all__ = ["FORMAT", "VERSION", "save", "load", "load_graph_json", "graph_to_json", "paths_for",
           "atomic_write", "write_directory", "write_npz", "read_npz", "npz_member"]

FORMAT = "fc-ir"
VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def paths_for(prefix: str | os.PathLike) -> tuple[Path, Path]:
    prefix = os.fspath(prefix)
    return Path(prefix + "_graph.json"), Path(prefix + "_params.npz")


def _cannot_write(path: Path, e: OSError) -> FcError:
    """The one-line error of a failed write (disk full, read-only, no permission)."""
    return FcError(f"{path}: cannot write ({e.strerror or type(e).__name__})")


def _open_temp(path: Path) -> tuple[Path, int]:
    """A new temporary file beside ``path``. Created with mode 0o666 minus the umask, like
    any file the user writes (``tempfile.mkstemp`` would make it 0o600, and the rename
    would hand a hardware team files they cannot read)."""
    if path.is_dir():
        raise FcError(f"{path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(path.parent, e) from None
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                                0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise _cannot_write(path, e) from None


def _write_temp(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Run ``write`` on a temporary file beside ``path``; return it, or remove it and raise."""
    tmp, fd = _open_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, e) from None


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    Text mode (``"w"``) is UTF-8 with ``\\n`` newlines on every platform."""
    path = Path(path)
    tmp, fd = _open_temp(path)
    try:
        text = "b" not in mode
        with os.fdopen(fd, mode, encoding="utf-8" if text else None,
                       newline="\n" if text else None) as f:
            yield f
        _replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_directory(out_dir: str | os.PathLike, fill: Callable[[Path], None]) -> list[Path]:
    """Write a set of files into ``out_dir`` all at once: ``fill(tmp)`` writes them into a
    temporary directory, then they move into ``out_dir`` (made if missing) and the sorted
    final paths are returned. A failure, or Ctrl-C (``fc.interrupt``), leaves ``out_dir`` as
    it was and no temporary directory behind.

    The temporary directory is made on ``out_dir``'s own file system — inside it when it
    exists (it may be a mount point, e.g. a Docker volume), else beside it, and then simply
    renamed to ``out_dir``. Everything that could stop the move half-way is checked before
    the first file moves (a directory in the way of an output file).
    """
    from fc import interrupt

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FcError(f"{out_dir}: exists and is not a directory; give a directory to write "
                      "into")
    exists = out_dir.is_dir()
    parent = out_dir if exists else out_dir.parent
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with interrupt.deferred():
            tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
        fill(tmp)
        names = sorted(p.name for p in tmp.iterdir())
        with interrupt.deferred():
            interrupt.check()
            if not exists:
                try:
                    os.rename(tmp, out_dir)
                    tmp = None
                except OSError:  # made meanwhile: move the files in below
                    exists = True
            if exists:
                in_the_way = [out_dir / n for n in names if (out_dir / n).is_dir()]
                if in_the_way:
                    raise FcError(f"{in_the_way[0]}: a directory is in the way of an output "
                                  "file; remove it or write elsewhere")
                for n in names:
                    os.replace(tmp / n, out_dir / n)
        return [out_dir / n for n in names]
    except OSError as e:
        raise _cannot_write(Path(e.filename) if e.filename else out_dir, e) from None
    finally:
        if tmp is not None:
            with interrupt.deferred():
                shutil.rmtree(tmp, ignore_errors=True)


# -- JSON ---------------------------------------------------------------------------------
def _tensor_entry(v: Value) -> dict[str, Any]:
    return {"name": v.name, "shape": None if v.shape is None else [int(d) for d in v.shape],
            "dtype": v.dtype}


def _attr_entry(node: Node, name: str, value: Any) -> dict[str, Any]:
    """``{"type", "value"}`` with the schema's type (a guess for ops without a schema), the
    value in canonical form so that JSON gets plain ints/floats/strings."""
    spec = get_schema(node.op_type).attrs.get(name) if has_schema(node.op_type) else None
    typ = spec.type if spec is not None else _guess_type(value)
    try:
        value = coerce_attr(node.op_type, name, Attr(typ), value)
    except SchemaError as e:
        raise IRError(f"node {node.name!r} ({node.op_type}): cannot serialize: {e}") from None
    return {"type": typ, "value": list(value) if isinstance(value, tuple) else value}


def _guess_type(value: Any) -> str:
    scalar = {INT: (int, np.integer), FLOAT: (float, np.floating), STRING: (str,)}
    if isinstance(value, np.ndarray | list | tuple):
        first = value[0] if len(value) else 0
        return {INT: INTS, FLOAT: FLOATS, STRING: STRINGS}[_guess_type(first)]
    for typ, types in scalar.items():
        if isinstance(value, types) and not isinstance(value, bool | np.bool_):
            return typ
    return INT  # coerce_attr then raises naming the attribute and its actual type


def graph_to_json(graph: Graph) -> str:
    """The graph as deterministic JSON text, in the graph's own (deterministic) order."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "inputs": [_tensor_entry(v) for v in graph.inputs],
        "outputs": [v.name for v in graph.outputs],
        # only when some boundary tensor is not channels-first, so other IRs stay as they were
        **({"layouts": dict(sorted(graph.layouts.items()))} if graph.layouts else {}),
        "params": [_tensor_entry(v) for v in graph.initializers.values()],
        "nodes": [
            {
                "name": n.name,
                "op": n.op_type,
                "inputs": ["" if v is None else v.name for v in n.inputs],
                "outputs": [_tensor_entry(v) for v in n.outputs],
                "attrs": {k: _attr_entry(n, k, a) for k, a in n.attrs.items()},
                "provenance": list(n.provenance),
            }
            for n in graph
        ],
    }
    return _dump(doc)


def _dump(doc: dict[str, Any]) -> str:
    """Top-level fields one per line, list entries (tensors, nodes) one per line: compact,
    diff-friendly, and still plain JSON."""

    def one(obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))

    lines = ["{"]
    items = list(doc.items())
    for i, (key, val) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(val, list) and val:
            lines.append(f"{one(key)}: [")
            lines.extend("  " + one(e) + ("," if j < len(val) - 1 else "") for j, e in enumerate(val))
            lines.append("]" + comma)
        else:
            lines.append(f"{one(key)}: {one(val)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- npz ----------------------------------------------------------------------------------
def _npz_array(name: str, arr: Any) -> np.ndarray:
    """The array as it is stored: C order, native byte order, never an object array."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise IRError(f"weight {name!r} is an object array ({arr.dtype}); fc stores only "
                      "numeric arrays (object arrays would need pickle)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    return arr


def npz_member(name: str) -> str:
    """The zip member name of tensor ``name``: percent-encoded outside ``[A-Za-z0-9_.-~]``,
    so that no name (``../../etc/x``, ``/abs``, ``a\\b``) becomes a path for whoever
    extracts the archive. Plain names (``conv1.weight``) stay as they are, so ``np.load``
    still shows them; the real names are in the graph JSON and :func:`read_npz` decodes."""
    return urllib.parse.quote(name, safe="") + ".npy"


def _write_npz_to(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    """The members in order, each header written with a fixed time. A member's zip64 local
    header only where its size needs one: CPython's ``zipfile`` writes ``force_zip64``
    headers differently across patch releases (gh-103861, 3.11.4: the same arrays gave other
    params bytes under Debian 12's Python 3.11.2 than under 3.11.7), the plain ones alike."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            arr = _npz_array(name, arr)
            info = zipfile.ZipInfo(npz_member(name), date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            big = arr.nbytes + _NPY_HEADER_MAX >= zipfile.ZIP64_LIMIT
            with zf.open(info, "w", force_zip64=big) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez's format with fixed timestamps (byte-identical for identical arrays), written
    atomically."""
    path = Path(path)
    _replace(_write_temp(path, lambda f: _write_npz_to(f, arrays)), path)


#: a .npy header is at most this long (numpy pads it to 64 bytes; huge dtypes aside)
_NPY_HEADER_MAX = 1 << 16


def read_npz(path: str | os.PathLike, expected: Collection[str] | None = None
             ) -> dict[str, np.ndarray]:
    """Every array of an npz file, never unpickling; errors name the file and member.

    Everything is judged from the zip directory and each member's .npy header before any
    data is read: member names (only ``expected`` ones, when given), sizes against
    ``fc.limits``, a header that agrees with the member's size, no object dtype. So a small
    file cannot make fc decompress or allocate more than it declares and the limits allow.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise IRError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise IRError(f"{path}: is a directory, not an npz file") from None
    except Exception as e:  # any failure to parse a foreign file is that file's fault
        if _starts_with(path, b"\x93NUMPY"):
            raise IRError(f"{path}: not an npz archive (a single .npy array)") from None
        raise IRError(f"{path}: not a valid npz file ({_short(e)})") from None
    budget = Budget(str(path))
    with zf:
        members: list[tuple[str, zipfile.ZipInfo]] = []
        for info in zf.infolist():
            if not info.filename.endswith(".npy") or info.is_dir():
                raise IRError(f"{path}: member {info.filename!r} is not a .npy array")
            key = urllib.parse.unquote(info.filename[: -len(".npy")])
            if expected is not None and key not in expected:
                raise IRError(f"{path}: member {info.filename!r} is not a weight the graph "
                              "declares")
            if any(key == k for k, _ in members):
                raise IRError(f"{path}: member {key!r} appears twice")
            budget.add(max(info.file_size - _NPY_HEADER_MAX, 0), f"member {key!r}")
            members.append((key, info))
        out = {}
        for key, info in members:
            try:
                with zf.open(info) as f:
                    out[key] = _read_member(f, info, key, path)
            except FcError:
                raise
            except Exception as e:
                raise IRError(f"{path}: member {key!r} is corrupt ({_short(e)})") from None
    return out


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _read_member(f: IO[bytes], info: zipfile.ZipInfo, key: str, path: Path) -> np.ndarray:
    """One .npy member: header first (dtype, shape, sizes checked), then exactly its data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise IRError(f"{path}: member {key!r} is a pickled object array, which fc never "
                      "loads")
    nbytes = math.prod(shape) * dtype.itemsize
    check_bytes(nbytes, f"{path}: member {key!r} ({dtype.name}{list(shape)})")
    if nbytes > info.file_size:
        raise ValueError(f"its header declares {dtype.name}{list(shape)} ({nbytes} bytes), "
                         f"the member holds {info.file_size}")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{len(data)} of {nbytes} data bytes")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy(order="K")  # own, writable memory, in the stored order


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- save / load --------------------------------------------------------------------------
def save(graph: Graph, prefix: str | os.PathLike, *, check: bool = True) -> tuple[Path, Path]:
    """Write ``<prefix>_graph.json`` and ``<prefix>_params.npz``; return their paths.

    ``check`` verifies the graph first, so fc never writes a pair that ``load`` rejects.
    Both files are complete on disk before either replaces an old one.
    """
    if check:
        from fc.ir.verify import verify

        verify(graph)
    gpath, ppath = paths_for(prefix)
    data = graph_to_json(graph).encode("utf-8")
    arrays = {name: v.const for name, v in graph.initializers.items()}
    tmp_params = _write_temp(ppath, lambda f: _write_npz_to(f, arrays))
    tmp_graph: Path | None = None
    try:
        tmp_graph = _write_temp(gpath, lambda f: f.write(data))
        try:
            os.replace(tmp_params, ppath)
            os.replace(tmp_graph, gpath)
        except OSError as e:
            raise _cannot_write(gpath.parent, e) from None
    except BaseException:
        tmp_params.unlink(missing_ok=True)
        if tmp_graph is not None:
            tmp_graph.unlink(missing_ok=True)
        raise
    return gpath, ppath


def load(graph_json: str | os.PathLike, params_npz: str | os.PathLike | None = None, *,
         check: bool = True) -> Graph:
    """Read and verify an IR. ``params_npz`` defaults to the json's ``*_params.npz`` twin."""
    graph_json = Path(graph_json)
    if params_npz is None:
        stem = str(graph_json)
        if not stem.endswith("_graph.json"):
            raise IRError(f"{graph_json}: cannot find its params file; pass it explicitly")
        params_npz = stem[: -len("_graph.json")] + "_params.npz"
    raw = _read_json(graph_json)  # the graph file's own errors first
    weights = read_npz(params_npz, _declared_params(raw))
    graph = _build(raw, graph_json, weights, str(params_npz))
    if check:
        from fc.ir.verify import verify

        try:
            verify(graph)
        except FcError as e:
            raise IRError(f"{graph_json}: {e}") from None
    return graph


def _declared_params(raw: Any) -> set[str] | None:
    """The weight names the graph JSON declares (``None`` if it is too malformed to tell;
    ``_build`` then names what is wrong)."""
    params = raw.get("params") if isinstance(raw, dict) else None
    if not isinstance(params, list) or not all(isinstance(p, dict) and
                                               isinstance(p.get("name"), str) for p in params):
        return None
    return {p["name"] for p in params}


class _Doc:
    """Typed field access into parsed JSON, raising IRError with a path to the field."""

    def __init__(self, file: Path):
        self.file = file

    def fail(self, where: str, msg: str) -> IRError:
        return IRError(f"{self.file}: {where}: {msg}")

    def get(self, obj: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(where, f"expected an object, got {type(obj).__name__}")
        if key not in obj:
            raise self.fail(where, f"missing field {key!r}")
        val = obj[key]
        if not isinstance(val, typ) or (typ is not bool and isinstance(val, bool)
                                        and bool not in _as_tuple(typ)):
            names = "/".join(t.__name__ for t in _as_tuple(typ))
            raise self.fail(f"{where}.{key}", f"expected {names}, got {type(val).__name__} "
                                              f"{_clip(val)}")
        return val

    def shape(self, obj: Any, where: str) -> tuple[int, ...] | None:
        shape = self.get(obj, "shape", (list, type(None)), where)
        if shape is None:
            return None
        if not all(type(d) is int and d >= 0 for d in shape):  # (type: a bool is no dim)
            raise self.fail(f"{where}.shape", f"expected non-negative integers, got {shape}")
        return tuple(shape)

    def dtype(self, obj: Any, where: str) -> str:
        dtype = self.get(obj, "dtype", str, where)
        if dtype not in _GOOD_DTYPES:
            try:
                dt = np.dtype(dtype)
            except Exception:
                dt = None
            # Only canonical numeric names ("float32", not "f4" or "<f4"): names are
            # compared as strings everywhere else.
            if dt is None or dt.name != dtype or dt.kind not in "biuf":
                raise self.fail(f"{where}.dtype", f"unknown or non-numeric dtype {_clip(dtype)}")
            _GOOD_DTYPES.add(dtype)
        return dtype


_GOOD_DTYPES: set[str] = set()  # dtype names already checked (np.dtype(...).name is slow)


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _clip(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


_PY_TYPES = {INT: int, FLOAT: (int, float), STRING: str, INTS: list, FLOATS: list, STRINGS: list}


def load_graph_json(path: str | os.PathLike, weights: dict[str, np.ndarray], *,
                    params_file: str = "params") -> Graph:
    """Build a Graph from the JSON file and a name -> array dict (no verification)."""
    path = Path(path)
    return _build(_read_json(path), path, weights, params_file)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IRError(f"{path}: graph file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise IRError(f"{path}: cannot read graph file ({_short(e)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IRError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise IRError(f"{path}: invalid JSON: nested too deeply") from None


def _build(raw: Any, path: Path, weights: dict[str, np.ndarray], params_file: str) -> Graph:
    d = _Doc(path)
    if not isinstance(raw, dict):
        raise d.fail("top level", f"expected an object, got {type(raw).__name__}")
    fmt = d.get(raw, "format", str, "top level")
    if fmt != FORMAT:
        raise d.fail("format", f"expected {FORMAT!r}, got {_clip(fmt)}")
    version = d.get(raw, "version", int, "top level")
    if version != VERSION:
        raise d.fail("version", f"unsupported version {version} (this fc reads {VERSION})")

    graph = Graph(d.get(raw, "name", str, "top level"))
    values: dict[str, Value] = {}

    def define(v: Value, where: str) -> Value:
        if not v.name:
            raise d.fail(where, "empty tensor name")
        if v.name in values:
            raise d.fail(where, f"tensor {v.name!r} is defined more than once")
        values[v.name] = v
        graph.reserve(v.name)
        return v

    for i, e in enumerate(d.get(raw, "inputs", list, "top level")):
        where = f"inputs[{i}]"
        v = Value(d.get(e, "name", str, where), d.shape(e, where), d.dtype(e, where))
        if v.shape is None:
            raise d.fail(f"{where}.shape", "a graph input needs a shape")
        graph.inputs.append(define(v, where))

    seen_params = set()
    for i, e in enumerate(d.get(raw, "params", list, "top level")):
        where = f"params[{i}]"
        name = d.get(e, "name", str, where)
        shape, dtype = d.shape(e, where), d.dtype(e, where)
        if name not in weights:
            raise IRError(f"{params_file}: weight {name!r} (declared in {path.name} {where}) "
                          "is missing")
        arr = weights[name]
        if shape is None or tuple(arr.shape) != shape or arr.dtype.name != dtype:
            raise IRError(f"{params_file}: weight {name!r} is {arr.dtype.name}{list(arr.shape)}, "
                          f"but {path.name} {where} declares {dtype}"
                          f"{'[unknown]' if shape is None else list(shape)}")
        v = define(Value(name, shape, dtype, const=arr), where)
        graph.initializers[name] = v
        seen_params.add(name)
    extra = sorted(set(weights) - seen_params)
    if extra:
        raise IRError(f"{params_file}: weight(s) {extra[:5]} not declared in {path.name}")

    node_names: set[str] = set()
    for i, e in enumerate(d.get(raw, "nodes", list, "top level")):
        where = f"nodes[{i}]"
        name = d.get(e, "name", str, where)
        if not name:
            raise d.fail(f"{where}.name", "empty node name")
        where = f"node {name!r} (nodes[{i}])"
        op = d.get(e, "op", str, where)
        ins = []
        for j, iname in enumerate(d.get(e, "inputs", list, where)):
            if not isinstance(iname, str):
                raise d.fail(f"{where}.inputs[{j}]", f"expected a tensor name, got {_clip(iname)}")
            if iname == "":
                ins.append(None)
            elif iname not in values:
                raise d.fail(f"{where}.inputs[{j}]",
                             f"tensor {iname!r} is not defined before this node "
                             "(dangling input, or nodes out of topological order / a cycle)")
            else:
                ins.append(values[iname])
        outs = []
        for j, oe in enumerate(d.get(e, "outputs", list, where)):
            ow = f"{where}.outputs[{j}]"
            outs.append(define(Value(d.get(oe, "name", str, ow), d.shape(oe, ow), d.dtype(oe, ow)),
                               ow))
        attrs = _attrs(d, op, d.get(e, "attrs", dict, where), where)
        prov = d.get(e, "provenance", list, where)
        if not all(isinstance(p, str) for p in prov):
            raise d.fail(f"{where}.provenance", "expected a list of strings")
        if name in node_names:
            raise d.fail(where, f"node name {name!r} is used twice")
        node_names.add(name)
        try:
            graph.append(Node(op, ins, outs, attrs, name=name, provenance=prov))
        except FcError as err:
            raise d.fail(where, str(err)) from None

    for i, oname in enumerate(d.get(raw, "outputs", list, "top level")):
        if not isinstance(oname, str) or oname not in values:
            raise d.fail(f"outputs[{i}]", f"graph output {_clip(oname)} is not a defined tensor")
        graph.outputs.append(values[oname])
    layouts = raw.get("layouts", {})
    if not isinstance(layouts, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in layouts.items()):
        raise d.fail("layouts", f"expected an object of tensor name -> layout, got {_clip(layouts)}")
    graph.layouts = dict(layouts)
    return graph


def _attrs(d: _Doc, op: str, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Attributes in canonical Python types, checked against the declared and schema types."""
    schema_attrs = get_schema(op).attrs if has_schema(op) else {}
    attrs = {}
    for k, a in raw.items():
        aw = f"{where}.attrs.{k}"
        typ = d.get(a, "type", str, aw)
        if typ not in _PY_TYPES:
            raise d.fail(aw, f"unknown attribute type {_clip(typ)}")
        if k in schema_attrs and schema_attrs[k].type != typ:
            raise d.fail(aw, f"declared type {typ!r}, but {op} expects {schema_attrs[k].type!r}")
        val = d.get(a, "value", _PY_TYPES[typ], aw)
        try:
            attrs[k] = coerce_attr(op, k, Attr(typ), val)
        except SchemaError as e:
            raise d.fail(aw, str(e)) from None
    return attrs
