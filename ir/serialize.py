"""IR on disk: ``<prefix>_graph.json`` (structure, typed attributes, every tensor's shape and
dtype) plus ``<prefix>_params.npz`` (weights by tensor name).

Both files are deterministic: the same graph gives byte-identical files. The npz is the
format ``np.savez`` writes (a zip of ``.npy`` members, stored uncompressed), but written by
fc with a fixed member timestamp, because ``np.savez`` stamps the current time into the zip.
Both files are written to temporary names and renamed into place, and read back with
``allow_pickle=False``. Any malformed file raises ``IRError`` naming the file and field.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError, IRError
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import FLOAT, FLOATS, INT, INTS, STRING, STRINGS, get_schema, has_schema

__all__ = ["FORMAT", "VERSION", "save", "load", "load_graph_json", "graph_to_json", "paths_for",
           "atomic_write", "write_npz", "read_npz"]

FORMAT = "fc-ir"
VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def paths_for(prefix: str | os.PathLike) -> tuple[Path, Path]:
    prefix = str(prefix)
    return Path(prefix + "_graph.json"), Path(prefix + "_params.npz")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- JSON ---------------------------------------------------------------------------------
def _tensor_entry(v: Value) -> dict[str, Any]:
    return {"name": v.name, "shape": None if v.shape is None else list(v.shape), "dtype": v.dtype}


def _attr_entry(op: str, name: str, value: Any) -> dict[str, Any]:
    typ = get_schema(op).attrs[name].type if has_schema(op) else _guess_type(value)
    return {"type": typ, "value": list(value) if isinstance(value, tuple) else value}


def _guess_type(value: Any) -> str:
    if isinstance(value, bool | int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STRING
    first = value[0] if value else 0
    return {int: INTS, float: FLOATS, str: STRINGS}.get(type(first), INTS)


def graph_to_json(graph: Graph) -> str:
    """The graph as deterministic JSON text, in the graph's own (deterministic) order."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "inputs": [_tensor_entry(v) for v in graph.inputs],
        "outputs": [v.name for v in graph.outputs],
        "params": [_tensor_entry(v) for v in graph.initializers.values()],
        "nodes": [
            {
                "name": n.name,
                "op": n.op_type,
                "inputs": ["" if v is None else v.name for v in n.inputs],
                "outputs": [_tensor_entry(v) for v in n.outputs],
                "attrs": {k: _attr_entry(n.op_type, k, a) for k, a in n.attrs.items()},
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
def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez's format with fixed timestamps (byte-identical for identical arrays)."""
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED,
                                                     allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an npz file, never unpickling; errors name the file and member."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IRError(f"{path}: params file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise IRError(f"{path}: not a valid npz file ({_short(e)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise IRError(f"{path}: not an npz archive (a single .npy array)")
    out = {}
    with npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError as e:
                if "pickle" in str(e).lower():
                    raise IRError(f"{path}: member {key!r} is a pickled object array, "
                                  "which fc never loads") from None
                raise IRError(f"{path}: member {key!r}: {_short(e)}") from None
            except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
                raise IRError(f"{path}: member {key!r} is corrupt ({_short(e)})") from None
    return out


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


# -- save / load --------------------------------------------------------------------------
def save(graph: Graph, prefix: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<prefix>_graph.json`` and ``<prefix>_params.npz``; return their paths."""
    gpath, ppath = paths_for(prefix)
    text = graph_to_json(graph)
    write_npz(ppath, {name: v.const for name, v in graph.initializers.items()})
    with atomic_write(gpath, "w") as f:
        f.write(text)
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
    weights = read_npz(params_npz)
    graph = load_graph_json(graph_json, weights, params_file=str(params_npz))
    if check:
        from fc.ir.verify import verify

        try:
            verify(graph)
        except FcError as e:
            raise IRError(f"{graph_json}: {e}") from None
    return graph


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
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise self.fail(f"{where}.shape", f"expected non-negative integers, got {shape}")
        return tuple(shape)

    def dtype(self, obj: Any, where: str) -> str:
        dtype = self.get(obj, "dtype", str, where)
        try:
            np.dtype(dtype)
        except TypeError:
            raise self.fail(f"{where}.dtype", f"unknown dtype {dtype!r}") from None
        return dtype


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IRError(f"{path}: graph file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise IRError(f"{path}: cannot read graph file ({_short(e)})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise IRError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    d = _Doc(path)
    if not isinstance(raw, dict):
        raise d.fail("top level", f"expected an object, got {type(raw).__name__}")
    fmt = d.get(raw, "format", str, "top level")
    if fmt != FORMAT:
        raise d.fail("format", f"expected {FORMAT!r}, got {fmt!r}")
    version = d.get(raw, "version", int, "top level")
    if version != VERSION:
        raise d.fail("version", f"unsupported version {version} (this fc reads {VERSION})")

    graph = Graph(d.get(raw, "name", str, "top level"))
    values: dict[str, Value] = {}

    def define(v: Value, where: str) -> Value:
        if v.name in values:
            raise d.fail(where, f"tensor {v.name!r} is defined more than once")
        values[v.name] = v
        graph.reserve(v.name)
        return v

    for i, e in enumerate(d.get(raw, "inputs", list, "top level")):
        where = f"inputs[{i}]"
        v = Value(d.get(e, "name", str, where), d.shape(e, where), d.dtype(e, where))
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
        if tuple(arr.shape) != shape or arr.dtype.name != dtype:
            raise IRError(f"{params_file}: weight {name!r} is {arr.dtype.name}{list(arr.shape)}, "
                          f"but {path.name} {where} declares {dtype}{list(shape or ())}")
        v = define(Value(name, shape, dtype, const=arr), where)
        graph.initializers[name] = v
        seen_params.add(name)
    extra = sorted(set(weights) - seen_params)
    if extra:
        raise IRError(f"{params_file}: weight(s) {extra[:5]} not declared in {path.name}")

    for i, e in enumerate(d.get(raw, "nodes", list, "top level")):
        where = f"nodes[{i}]"
        name = d.get(e, "name", str, where)
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
                             "(dangling input or nodes out of topological order)")
            else:
                ins.append(values[iname])
        outs = []
        for j, oe in enumerate(d.get(e, "outputs", list, where)):
            ow = f"{where}.outputs[{j}]"
            outs.append(define(Value(d.get(oe, "name", str, ow), d.shape(oe, ow), d.dtype(oe, ow)),
                               ow))
        attrs = {}
        for k, a in d.get(e, "attrs", dict, where).items():
            aw = f"{where}.attrs.{k}"
            typ = d.get(a, "type", str, aw)
            if typ not in _PY_TYPES:
                raise d.fail(aw, f"unknown attribute type {typ!r}")
            val = d.get(a, "value", _PY_TYPES[typ], aw)
            attrs[k] = tuple(val) if isinstance(val, list) else val
            if has_schema(op) and k in get_schema(op).attrs and get_schema(op).attrs[k].type != typ:
                raise d.fail(aw, f"declared type {typ!r}, but {op} expects "
                                 f"{get_schema(op).attrs[k].type!r}")
        prov = d.get(e, "provenance", list, where)
        if not all(isinstance(p, str) for p in prov):
            raise d.fail(f"{where}.provenance", "expected a list of strings")
        try:
            node = Node(op, ins, outs, attrs, name=name, provenance=prov)
        except FcError as err:
            raise d.fail(where, str(err)) from None
        try:
            graph.append(node)
        except FcError as err:
            raise d.fail(where, str(err)) from None
        if node.name != name:
            raise d.fail(where, f"node name {name!r} is used twice")

    for i, oname in enumerate(d.get(raw, "outputs", list, "top level")):
        if not isinstance(oname, str) or oname not in values:
            raise d.fail(f"outputs[{i}]", f"graph output {_clip(oname)} is not a defined tensor")
        graph.outputs.append(values[oname])
    return graph
