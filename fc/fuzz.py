"""fc's fuzz harness: every loader, fed mutated inputs, either succeeds or raises one ``FcError``
line — never another exception, a multi-line message or a hang.

One :class:`Format` per input format fc reads: a seed corpus built here (small valid files,
no downloads), a *target* (what ``fcc`` does with such a file: import, compile and save an
ONNX model; load and run an IR; ...) and two kinds of mutation, drawn by hypothesis:

* **byte-wise**: bit flips, byte overwrites, insertions, deletions, truncation, duplicated
  chunks, at random positions of a seed file;
* **structural**: edits that keep the file parseable but break its meaning — an ONNX
  attribute of another type or with an absurd value, dims and data types that do not fit the
  data, unknown ops, dangling inputs; a JSON value replaced, removed or duplicated anywhere
  in a symbol, graph or (YAML) quantization config file (MXNet attributes get
  plausible-looking strings); npz members with other names, headers and dtypes; ``.pt2``
  archive members truncated, emptied, renamed, duplicated or replaced.

Formats: ``onnx``, ``mxnet-symbol``, ``mxnet-params``, ``ir-json``, ``ir-npz``, ``torch-pt2``
(``fcc compile torch m.pt2``), ``quant-config`` (the quantization YAML), ``tf-pb`` (a frozen
GraphDef), ``tf-keras`` (``.keras``), ``tf-savedmodel`` (a SavedModel directory, carried as a
tar whose files the byte-wise edits reach one at a time), ``tf-h5`` (a legacy Keras ``.h5``),
``calibration-table``, ``image-list`` (``fcc quant accuracy``'s labelled list) and ``image``
(one calibration or evaluation image, loaded and preprocessed).

:func:`run_case` judges one input; :func:`fuzz` runs a format for a number of cases or
seconds and counts failures by kind (exception type and the fc source line it came from).
``tests/fuzz`` runs each format briefly in the default test run;
``benchmarks/fuzz_loaders.py`` runs them for as long as asked.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import signal
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError

__all__ = ["FORMATS", "Format", "Failure", "Report", "run_case", "judge", "fuzz", "mutation"]

#: seconds one case may take before it counts as a hang
CASE_TIMEOUT = 20.0
#: examples per hypothesis run (a timed run stops inside one: the rest are drawn, not run)
ROUND = 500


class Hang(Exception):
    """A case ran longer than :data:`CASE_TIMEOUT`."""


@dataclass(frozen=True)
class Failure:
    """A loader breaking the promise: ``kind`` is the exception type and where it came from."""

    format: str
    kind: str
    message: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Format:
    """An input format: seed files, the target run on (mutated) bytes, structural mutators."""

    name: str
    seeds: Callable[[], list[bytes]]
    target: Callable[[bytes, Path], None]
    structural: Callable[[Any, bytes], bytes] | None = None  # (hypothesis data, seed) -> bytes
    #: how byte-wise edits apply (default :func:`apply_bytes` to the whole seed; a directory
    #: format applies them inside one of its files)
    bytewise: Callable[[bytes, list], bytes] | None = None


# -- judging one case ---------------------------------------------------------------------------

@contextmanager
def _deadline(seconds: float):  # type: ignore[no-untyped-def]
    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds:.0f} s")

    if hasattr(signal, "setitimer") and _main_thread():
        old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    else:
        yield


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _origin(e: BaseException) -> str:
    """``file:line`` of the innermost frame in fc's own code (where a fix would go)."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename
            and not f.filename.startswith("<")]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    parts = Path(f.filename).parts
    short = "/".join(parts[-2:])
    return f"{short}:{f.lineno}"


def run_case(fmt: Format, data: bytes) -> Failure | None:
    """Run ``fmt``'s target on ``data``: ``None`` if it succeeds or raises one clean
    ``FcError`` line, else the :class:`Failure`. (:func:`judge` also says which.)"""
    return judge(fmt, data)[0]


def judge(fmt: Format, data: bytes) -> tuple[Failure | None, str]:
    """``(failure or None, outcome)``: outcome ``"accepted"``, ``"refused"`` (one FcError
    line) or ``"failure"``."""
    with tempfile.TemporaryDirectory(prefix="fc_fuzz_") as tmp:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"), _deadline(CASE_TIMEOUT):
                warnings.simplefilter("ignore")
                fmt.target(data, Path(tmp))
        except FcError as e:
            text = str(e)
            if "\n" in text or not text.strip():
                return Failure(fmt.name, f"multi-line {type(e).__name__} at {_origin(e)}",
                               text[:300], data), "failure"
            return None, "refused"
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - every other exception is the finding
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            return Failure(fmt.name, f"{type(e).__name__} at {_origin(e)}", first,
                           data), "failure"
    return None, "accepted"


# -- byte-wise mutation (any format) ------------------------------------------------------------

def mutation(st: Any) -> Any:
    """A hypothesis strategy of byte-wise edit lists: ``(op, position in [0, 1), value)``."""
    op = st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate", "zero"])
    return st.lists(st.tuples(op, st.floats(0, 1, exclude_max=True), st.integers(0, 255),
                              st.integers(1, 64)), min_size=1, max_size=6)


def apply_bytes(data: bytes, edits: list[tuple[str, float, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value, length in edits:
        if not buf:
            buf.extend(bytes([value]))
            continue
        i = int(where * len(buf))
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value
        elif op == "insert":
            buf[i:i] = bytes([value]) * length
        elif op == "delete":
            del buf[i:i + length]
        elif op == "truncate":
            del buf[i:]
        elif op == "duplicate":
            buf[i:i] = buf[i:i + length]
        elif op == "zero":
            buf[i:i + length] = bytes(len(buf[i:i + length]))
    return bytes(buf)


# -- values an attacker would pick ------------------------------------------------------------

def _ints(st: Any) -> Any:
    return st.one_of(st.integers(-3, 8), st.sampled_from([0, -1, 2**31 - 1, 2**31, -2**31,
                                                          2**62, 10**9, 3 * 10**8]))


def _json_value(st: Any) -> Any:
    scalar = st.one_of(st.none(), st.booleans(), _ints(st), st.floats(allow_nan=False),
                       st.text(max_size=8), st.sampled_from(["", "None", "(3, 3)", "[1,2]",
                                                             "True", "-1", "1e400", "nan"]))
    return st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
        max_leaves=8)


def _json_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_json_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_json_paths(v, (*prefix, i)))
    return out


def _json_edit(data: Any, seed: bytes, string_values: Any = None) -> bytes:
    """Replace, remove or duplicate JSON values at random paths (``string_values``: a
    strategy for leaf strings, such as MXNet's attribute spellings)."""
    import hypothesis.strategies as st

    doc = json.loads(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _json_paths(doc)
        path = data.draw(st.sampled_from(paths))
        if not path:
            continue
        *parent_path, key = path
        parent = doc
        for k in parent_path:
            parent = parent[k]
        op = data.draw(st.sampled_from(["replace", "replace", "remove", "duplicate", "string"]))
        if op == "remove":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        elif op == "string" and string_values is not None:
            parent[key] = data.draw(string_values)
        else:
            parent[key] = data.draw(_json_value(st))
    return json.dumps(doc).encode()


# -- ONNX -------------------------------------------------------------------------------------

def _onnx_seeds() -> list[bytes]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def model(nodes, inits, x, opset=13):  # type: ignore[no-untyped-def]
        g = helper.make_graph(nodes, "seed", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, x)], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                        None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        return m.SerializeToString()

    n = helper.make_node
    cnn = model([
        n("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
        n("BatchNormalization", ["c", "g", "be", "m", "v"], ["bn"], name="bn"),
        n("Relu", ["bn"], ["r"], name="relu"),
        n("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p"], ["f"], name="flat"),
        n("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)],
        [w("w", 4, 3, 3, 3), w("b", 4), numpy_helper.from_array(np.ones(4, np.float32), "g"),
         w("be", 4), w("m", 4), numpy_helper.from_array(np.ones(4, np.float32), "v"),
         w("fw", 5, 64), w("fb", 5)], [1, 3, 8, 8])
    shapes = model([
        n("Shape", ["x"], ["s"]), n("Gather", ["s", "zero"], ["n0"], axis=0),
        n("Unsqueeze", ["n0", "axes"], ["n1"]), n("Concat", ["n1", "m1"], ["t"], axis=0),
        n("Reshape", ["x", "t"], ["r"]),
        n("ConstantOfShape", ["cs"], ["ones"],
          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        n("Mul", ["r", "ones"], ["y"])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"),
         numpy_helper.from_array(np.array([0], np.int64), "axes"),
         numpy_helper.from_array(np.array([-1], np.int64), "m1"),
         numpy_helper.from_array(np.array([1, 48], np.int64), "cs")], ["N", 3, 4, 4])
    tensor = model([
        n("Resize", ["x", "", "sc"], ["rz"], mode="nearest"),
        n("Split", ["rz", "sp"], ["a", "b"], axis=1),
        n("Concat", ["b", "a"], ["c"], axis=1),
        n("Pad", ["c", "pads"], ["pd"], mode="reflect"),
        n("Slice", ["pd", "st", "en", "ax"], ["sl"]),
        n("Transpose", ["sl"], ["tr"], perm=[0, 1, 3, 2]),
        n("Softmax", ["tr"], ["y"], axis=-1)],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc"),
         numpy_helper.from_array(np.array([1, 3], np.int64), "sp"),
         numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
         numpy_helper.from_array(np.array([1], np.int64), "st"),
         numpy_helper.from_array(np.array([5], np.int64), "en"),
         numpy_helper.from_array(np.array([2], np.int64), "ax")], [1, 4, 3, 3])
    legacy = model([
        n("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", group=3),
        n("AveragePool", ["c"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Clip", ["p"], ["cl"], min=0.0, max=6.0),
        n("Softmax", ["cl"], ["y"], axis=1)], [w("w", 3, 1, 3, 3)], [1, 3, 5, 5], opset=10)
    return [cnn, shapes, tensor, legacy]


_ONNX_OPS = ["Conv", "Relu", "Add", "Reshape", "Hardmax", "Softmax", "Resize", "Pad", "Slice",
             "Gather", "Cast", "Split", "ConstantOfShape", "Expand", "Tile", "Range", "Where",
             "MaxPool", "Gemm", "BatchNormalization", "Unsqueeze", "", "Constant", "Shape"]


def _onnx_structural(data: Any, seed: bytes) -> bytes:
    import hypothesis.strategies as st
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.ParseFromString(seed)
    g = m.graph
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["attr_type", "attr_value", "init_dims", "init_type",
                                        "init_data", "op_type", "input", "opset", "input_dims",
                                        "drop_node", "const_value"]))
        node = data.draw(st.sampled_from(list(g.node))) if len(g.node) else None
        if op == "attr_type" and node is not None and len(node.attribute):
            a = data.draw(st.sampled_from(list(node.attribute)))
            value = data.draw(st.one_of(_ints(st), st.lists(_ints(st), max_size=5),
                                        st.floats(allow_nan=True), st.binary(max_size=6),
                                        st.lists(st.binary(max_size=3), max_size=3)))
            new = helper.make_attribute(a.name, value) if value != [] else \
                helper.make_attribute(a.name, [], attr_type=onnx.AttributeProto.INTS)
            a.CopyFrom(new)
        elif op == "attr_value" and node is not None:
            name = data.draw(st.sampled_from(["axis", "kernel_shape", "pads", "strides", "perm",
                                              "group", "mode", "to", "auto_pad", "dilations",
                                              "transB", "epsilon", "split", "value"]))
            value = data.draw(st.one_of(_ints(st), st.lists(_ints(st), max_size=6),
                                        st.sampled_from([b"NOTSET", b"SAME_LOWER", b"edge",
                                                         b"cubic", b"x"])))
            attrs = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend([*attrs, helper.make_attribute(name, value)])
        elif op in ("init_dims", "init_type", "init_data") and len(g.initializer):
            t = data.draw(st.sampled_from(list(g.initializer)))
            if op == "init_dims":
                del t.dims[:]
                t.dims.extend(data.draw(st.lists(_ints(st), max_size=5)))
            elif op == "init_type":
                t.data_type = data.draw(st.integers(0, 30))
            else:
                t.raw_data = t.raw_data[: data.draw(st.integers(0, len(t.raw_data)))]
        elif op == "op_type" and node is not None:
            node.op_type = data.draw(st.sampled_from(_ONNX_OPS))
        elif op == "input" and node is not None:
            names = [i for n in g.node for i in n.output] + ["", "nope", "x"]
            node.input.append(data.draw(st.sampled_from(names))) if data.draw(st.booleans()) \
                else (node.input.pop() if len(node.input) else None)
        elif op == "opset":
            m.opset_import[0].version = data.draw(st.integers(1, 25))
        elif op == "input_dims":
            dims = g.input[0].type.tensor_type.shape.dim
            if len(dims):
                d = data.draw(st.integers(0, len(dims) - 1))
                dims[d].dim_value = data.draw(st.integers(0, 4096))
        elif op == "drop_node" and len(g.node) > 1:
            del g.node[data.draw(st.integers(0, len(g.node) - 1))]
        elif op == "const_value" and node is not None:
            arr = np.asarray(data.draw(st.lists(_ints(st), min_size=1, max_size=4)), np.int64)
            node.op_type, node.domain = "Constant", ""
            del node.input[:], node.attribute[:]
            node.attribute.append(helper.make_attribute(
                "value", onnx.numpy_helper.from_array(arr)))
    return m.SerializeToString()


def _onnx_target(data: bytes, tmp: Path) -> None:
    from fc.frontend.onnx import import_onnx

    path = tmp / "m.onnx"
    path.write_bytes(data)
    _compile_and_save(import_onnx(path), tmp)


def _compile_and_save(graph: Any, tmp: Path) -> None:
    """What ``fcc compile`` does after importing: the passes, then both IRs written."""
    from fc.ir import save
    from fc.passes.pipeline import compile_graph

    fused, _ = compile_graph(graph)
    save(graph, tmp / "IR_for_reconstruct")
    save(fused, tmp / "IR_fused_for_CModel")


# -- MXNet --------------------------------------------------------------------------------------

def _mx_symbol() -> dict:
    def var(name: str) -> dict:
        return {"op": "null", "name": name, "inputs": []}

    nodes = [var("data"), var("c_w"), var("c_b"),
             {"op": "Convolution", "name": "conv", "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]],
              "attrs": {"kernel": "(3, 3)", "num_filter": "4", "pad": "(1, 1)"}},
             var("g"), var("be"), var("mm"), var("mv"),
             {"op": "BatchNorm", "name": "bn", "inputs": [[3, 0, 0], [4, 0, 0], [5, 0, 0],
                                                         [6, 0, 1], [7, 0, 1]],
              "attrs": {"fix_gamma": "False", "eps": "1e-05"}},
             {"op": "Activation", "name": "relu", "inputs": [[8, 0, 0]],
              "attrs": {"act_type": "relu"}},
             {"op": "Pooling", "name": "pool", "inputs": [[9, 0, 0]],
              "attrs": {"kernel": "(2, 2)", "stride": "(2, 2)", "pool_type": "max",
                        "pooling_convention": "full"}},
             {"op": "Reshape", "name": "flat", "inputs": [[10, 0, 0]],
              "attrs": {"shape": "(0, -1)"}},
             var("f_w"), var("f_b"),
             {"op": "FullyConnected", "name": "fc", "inputs": [[11, 0, 0], [12, 0, 0],
                                                              [13, 0, 0]],
              "attrs": {"num_hidden": "5"}},
             var("softmax_label"),
             {"op": "SoftmaxOutput", "name": "softmax", "inputs": [[14, 0, 0], [15, 0, 0]]}]
    return {"nodes": nodes, "arg_nodes": [0, 1, 2, 4, 5, 6, 7, 12, 13, 15],
            "heads": [[16, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}


def _mx_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {"arg:c_w": r(4, 3, 3, 3), "arg:c_b": r(4), "arg:g": r(4), "arg:be": r(4),
            "aux:mm": r(4), "aux:mv": np.abs(r(4)) + 0.5, "arg:f_w": r(5, 64), "arg:f_b": r(5)}


def _params_bytes(params: dict[str, np.ndarray]) -> bytes:
    from fc.frontend.mxnet.params import save_params

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.params"
        save_params(path, params)
        return path.read_bytes()


def _mx_json_seeds() -> list[bytes]:
    return [json.dumps(_mx_symbol()).encode()]


_MX_STRINGS = ["(3, 3)", "(2,)", "(0, -1)", "(-1, -2, -3, -4)", "(-4, 2, -1)", "None", "True",
               "false", "1e-05", "-1", "0", "(1, 1, 1)", "max", "avg", "sum", "lp", "full",
               "relu", "softrelu", "NHWC", "(2147483648, 2)", "(a, b)", "", "[]", "(1L, 2L)",
               "(None, 2)", "1000000000", "nan", "inf"]


def _mx_json_structural(data: Any, seed: bytes) -> bytes:
    import hypothesis.strategies as st

    return _json_edit(data, seed, st.sampled_from(_MX_STRINGS))


def _mx_json_target(data: bytes, tmp: Path) -> None:
    from fc.frontend.mxnet import import_files

    (tmp / "m-symbol.json").write_bytes(data)
    (tmp / "m-0000.params").write_bytes(_mx_params_seed())
    graph, _ = import_files(tmp / "m-symbol.json", tmp / "m-0000.params",
                            input_shapes={"data": (1, 3, 8, 8)})
    _compile_and_save(graph, tmp)


_CACHE: dict[str, Any] = {}


def _mx_params_seed() -> bytes:
    if "params" not in _CACHE:
        _CACHE["params"] = _params_bytes(_mx_params())
    return _CACHE["params"]


def _mx_params_seeds() -> list[bytes]:
    zero_d = {"arg:s": np.array(1.5, np.float32), "arg:i": np.arange(6, dtype=np.int32)}
    return [_mx_params_seed(), _params_bytes(zero_d)]


def _mx_params_target(data: bytes, tmp: Path) -> None:
    from fc.frontend.mxnet.params import load_params

    (tmp / "p.params").write_bytes(data)
    load_params(tmp / "p.params")


# -- fc's IR --------------------------------------------------------------------------------------

def _ir_files() -> tuple[bytes, bytes]:
    if "ir" not in _CACHE:
        from fc.ir import Graph, save

        rng = np.random.default_rng(0)
        g = Graph("seed")
        x = g.add_input("x", (1, 3, 8, 8))
        w = g.add_const("conv.w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
        y = g.add_node("Conv", [x, w], {"pads": (1, 1, 1, 1)}, name="conv").output
        y = g.add_node("Relu", [y], name="relu").output
        y = g.add_node("MaxPool", [y], {"kernel_shape": (2, 2), "strides": (2, 2)},
                       name="pool").output
        y = g.add_node("Reshape", [y], {"shape": (0, -1)}, name="flat").output
        fw = g.add_const("fc/w", rng.standard_normal((5, 64)).astype(np.float32))
        y = g.add_node("Gemm", [y, fw], {"transB": 1}, name="fc").output
        g.outputs.append(y)
        with tempfile.TemporaryDirectory() as tmp:
            gpath, ppath = save(g, Path(tmp) / "seed")
            _CACHE["ir"] = (gpath.read_bytes(), ppath.read_bytes())
    return _CACHE["ir"]


def _ir_target(graph_json: bytes, params_npz: bytes, tmp: Path) -> None:
    """What ``fcc run`` does: load (and verify) the IR, then run it on zeros."""
    from fc.ir import load
    from fc.np_ops import run

    (tmp / "g_graph.json").write_bytes(graph_json)
    (tmp / "g_params.npz").write_bytes(params_npz)
    from fc.limits import check_graph

    graph = load(tmp / "g_graph.json", tmp / "g_params.npz")
    feeds = {v.name: np.zeros(v.shape, v.dtype) for v in graph.inputs}
    check_graph(graph, feeds, "ir")  # as fcc run does before running
    run(graph, feeds)


def _ir_json_structural(data: Any, seed: bytes) -> bytes:
    import hypothesis.strategies as st

    return _json_edit(data, seed, st.sampled_from(["float32", "int64", "complex64", "object",
                                                   "ints", "Conv", "", "x", "../x"]))


def _npz_structural(data: Any, seed: bytes) -> bytes:
    """Members renamed, re-headed (other dtype or shape, object dtype), duplicated, added."""
    import hypothesis.strategies as st

    src = zipfile.ZipFile(io.BytesIO(seed))
    members = [(i.filename, src.read(i)) for i in src.infolist()]
    out = []
    for name, raw in members:
        op = data.draw(st.sampled_from(["keep", "keep", "rename", "header", "truncate",
                                        "duplicate"]))
        if op == "rename":
            name = data.draw(st.sampled_from(["../x.npy", "/abs.npy", "ghost.npy", "x",
                                              "conv.w.npy", "fc%2Fw.npy", "fc/w.npy"]))
        elif op == "header":
            arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
            shape = tuple(data.draw(st.lists(_ints(st).filter(lambda d: d >= 0), max_size=4)))
            dtype = data.draw(st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|b1", "|O",
                                               "<c8", "|V4"]))
            buf = io.BytesIO()
            header = {"descr": dtype, "fortran_order": data.draw(st.booleans()),
                      "shape": shape}
            np.lib.format.write_array_header_1_0(buf, header)
            raw = buf.getvalue() + arr.tobytes()[: data.draw(st.integers(0, arr.nbytes))]
        elif op == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        out.append((name, raw))
        if op == "duplicate":
            out.append((name, raw))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, raw in out:
            zf.writestr(name, raw)
    return buf.getvalue()


# -- torch .pt2 ------------------------------------------------------------------------------------

def _pt2_seeds() -> list[bytes]:
    if "pt2" not in _CACHE:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
                self.bn = torch.nn.BatchNorm2d(4)
                self.fc = torch.nn.Linear(4, 5)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = torch.relu(self.bn(self.conv(x)))
                return self.fc(torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

        torch.manual_seed(0)
        buf = io.BytesIO()
        program = torch.export.export(Net().eval(), (torch.zeros(1, 3, 8, 8),))
        torch.export.save(program, buf)
        _CACHE["pt2"] = [buf.getvalue()]
    return _CACHE["pt2"]


def _zip_structural(data: Any, seed: bytes) -> bytes:
    """A zip archive (``.pt2``) with members truncated, emptied, renamed, duplicated or
    replaced by plausible JSON."""
    import hypothesis.strategies as st

    src = zipfile.ZipFile(io.BytesIO(seed))
    out = []
    for info in src.infolist():
        name, raw = info.filename, src.read(info)
        op = data.draw(st.sampled_from(["keep"] * 6 + ["truncate", "empty", "rename", "dup",
                                                       "json"]))
        if op == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        elif op == "empty":
            raw = b""
        elif op == "rename":
            name = data.draw(st.sampled_from(["../x", "/abs", name + ".bak", "a/" + name]))
        elif op == "json":
            raw = json.dumps(data.draw(_json_value(st))).encode()
        out.append((name, raw))
        if op == "dup":
            out.append((name, raw))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, raw in out:
            zf.writestr(name, raw)
    return buf.getvalue()


def _pt2_target(data: bytes, tmp: Path) -> None:
    from fc.api import import_model

    path = tmp / "m.pt2"
    path.write_bytes(data)
    _compile_and_save(import_model("torch", path).graph, tmp)


# -- quantization config (YAML) ---------------------------------------------------------------

_QUANT_CONFIG = """MODEL:
    graph: 'g_graph.json'
QUAN:
    strategy: symmetry_max
    qconfig:
        image_path: 'imgs'
        method: percentile
        percentile: 99.9
        bits: 8
        layers: {fc: {bits: 12}}
PREPROCESS:
    resize: [8, 8]
    mean: [0.5, 0.5, 0.5]
    channel_order: BGR
EVALUATION:
    input_node: 'x:0'
    batch_size: 4
"""


def _quant_target(data: bytes, tmp: Path) -> None:
    from fc.quant.config import load_config

    graph_json, params = _ir_files()
    (tmp / "g_graph.json").write_bytes(graph_json)
    (tmp / "g_params.npz").write_bytes(params)
    (tmp / "imgs").mkdir()
    (tmp / "q.yml").write_bytes(data)
    load_config(tmp / "q.yml")


def _alias_bomb(levels: int) -> str:
    parts = ['&l0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


#: YAML a hand-edited or hostile config holds, which JSON cannot say: aliases (a 9^9-value
#: bomb in 500 bytes), deep nesting, unquoted scalars that resolve to dates or huge integers
#: and fail to construct, tags (python/object must never construct), merge keys
_YAML_SNIPPETS = [_alias_bomb(9), _alias_bomb(3), "*nowhere", "&a 1", "{<<: *a}",
                  "[" * 3000 + "]" * 3000, "{a: " * 200 + "1" + "}" * 200, "9" * 5000,
                  "0x" + "f" * 5000, "-0b" + "1" * 100, "2001-13-40", "2001-02-03",
                  "2001-02-03 04:05:06.7", "190:20:30", "1_000", ".inf", ".nan", "~", "''",
                  "!!float x", "!!int 1.5", "!!binary ===", "!!timestamp x", "!!str", "!!set {a}",
                  "!!omap [a: 1]", "!!python/object/apply:os.system [echo]", "!!python/name:os",
                  "!custom x", "? [a, b]\n  : 1", "\t1", "'unterminated", "|\n  block\n  text",
                  "[1, 2", "{a: 1, a: 2}", "@x", "`x`", "%TAG"]


def _yaml_structural(data: Any, seed: bytes) -> bytes:
    """JSON edits of the config as data (``_json_edit``), or a value's YAML text replaced by
    a snippet only YAML can say (:data:`_YAML_SNIPPETS`)."""
    import hypothesis.strategies as st
    import yaml

    if data.draw(st.booleans()):
        as_json = json.dumps(yaml.safe_load(seed)).encode()  # JSON is YAML
        return _json_edit(data, as_json)
    lines = seed.decode().splitlines()
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(lines) - 1))
        key, sep, _ = lines[i].partition(":")
        lines[i] = f"{key}: {data.draw(st.sampled_from(_YAML_SNIPPETS))}" if sep else \
            data.draw(st.sampled_from(_YAML_SNIPPETS))
    return "\n".join(lines).encode()


# -- TensorFlow frozen GraphDef (.pb) -------------------------------------------------------------

def _tf_pb_seeds() -> list[bytes]:
    """A frozen conv net (Conv2D, BiasAdd, FusedBatchNorm, ReLU, MaxPool, Reshape, MatMul)
    built as a TF1 graph: every weight a Const node, as ``convert_variables_to_constants``
    leaves them."""
    if "pb" not in _CACHE:
        from fc._tf import import_tf

        tf = import_tf()
        rng = np.random.default_rng(0)

        def const(shape: tuple[int, ...], name: str) -> Any:
            return tf.constant(rng.standard_normal(shape).astype(np.float32), name=name)

        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
            y = tf.nn.conv2d(x, const((3, 3, 3, 4), "conv/w"), 1, "SAME", name="conv")
            y = tf.nn.bias_add(y, const((4,), "conv/b"), name="bias")
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                y, const((4,), "bn/g"), const((4,), "bn/b"), tf.zeros([4], name="bn/m"),
                tf.ones([4], name="bn/v"), is_training=False, name="bn")
            y = tf.nn.relu(y, name="relu")
            y = tf.nn.max_pool2d(y, 2, 2, "VALID", name="pool")
            y = tf.reshape(y, [-1, 64], name="flat")
            y = tf.matmul(y, const((64, 5), "fc/w"), name="fc")
            tf.identity(y, name="out")
        _CACHE["pb"] = [g.as_graph_def().SerializeToString()]
    return _CACHE["pb"]


def _tf_pb_structural(data: Any, seed: bytes) -> bytes:
    """A GraphDef with a node's op, inputs, attributes or constant edited as an attacker
    would: huge or negative declared dims, unknown dtypes, truncated content, attributes of
    the wrong kind, dangling, cyclic or duplicated nodes."""
    import hypothesis.strategies as st

    from fc._tf import import_tf

    tf = import_tf()
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(seed)
    nodes = list(gd.node)
    node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
    names = [n.name for n in nodes]
    op = data.draw(st.sampled_from(["dims", "dtype", "content", "attr_kind", "attr_value",
                                    "op", "input", "cycle", "dup", "drop"]))
    consts = [n for n in nodes if n.op == "Const"]
    if op in ("dims", "dtype", "content") and consts:
        t = consts[data.draw(st.integers(0, len(consts) - 1))].attr["value"].tensor
        if op == "dims":
            del t.tensor_shape.dim[:]
            for d in data.draw(st.lists(_ints(st), max_size=5)):
                t.tensor_shape.dim.add(size=max(min(d, 2**62), -2**62))
            if not t.tensor_content and data.draw(st.booleans()):
                t.float_val[:] = [1.0]  # one value filling the declared shape
        elif op == "dtype":
            t.dtype = data.draw(st.sampled_from([0, 7, 20, 21, 99, 1000, 101]))
        else:
            t.tensor_content = t.tensor_content[: data.draw(st.integers(0, 64))]
    elif op in ("attr_kind", "attr_value") and node.attr:
        key = data.draw(st.sampled_from(sorted(node.attr)))
        a = node.attr[key]
        kind = data.draw(st.sampled_from(["i", "f", "s", "b", "type", "list_i", "list_s",
                                          "shape"]))
        a.Clear()
        if kind == "i":
            a.i = max(min(data.draw(_ints(st)), 2**62), -2**62)
        elif kind == "f":
            a.f = data.draw(st.floats(allow_nan=True, allow_infinity=True, width=32))
        elif kind == "s":
            a.s = data.draw(st.binary(max_size=8))
        elif kind == "b":
            a.b = data.draw(st.booleans())
        elif kind == "type":
            a.type = data.draw(st.sampled_from([0, 1, 3, 7, 99]))
        elif kind == "list_i":
            a.list.i[:] = [max(min(v, 2**62), -2**62)
                           for v in data.draw(st.lists(_ints(st), max_size=5))]
        elif kind == "list_s":
            a.list.s[:] = data.draw(st.lists(st.binary(max_size=4), max_size=4))
        else:
            for d in data.draw(st.lists(st.integers(-2, 10**6), max_size=5)):
                a.shape.dim.add(size=d)
    elif op == "op":
        node.op = data.draw(st.sampled_from(["Conv2D", "MatMul", "Relu", "Fill", "Tile",
                                             "Reshape", "NoSuchOp", "While", "Const", ""]))
    elif op == "input":
        node.input.append(data.draw(st.sampled_from(names + ["missing:0", "x:7", "^x"])))
    elif op == "cycle" and node.input:
        node.input[0] = node.name
    elif op == "dup":
        gd.node.add().CopyFrom(node)
    elif op == "drop":
        gd.node.remove(node)
    return gd.SerializeToString()


def _tf_pb_target(data: bytes, tmp: Path) -> None:
    from fc.api import import_model

    path = tmp / "m.pb"
    path.write_bytes(data)
    _compile_and_save(import_model("tf", path).graph, tmp)


# -- Keras (.keras) ------------------------------------------------------------------------------

def _keras_seeds() -> list[bytes]:
    """A small Keras conv net saved as ``.keras`` (a zip: config.json, metadata.json,
    model.weights.h5)."""
    if "keras" not in _CACHE:
        from fc._tf import import_tf

        import_tf()
        import keras

        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu"),
            keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(5, name="fc")])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.keras"
            model.save(path)
            _CACHE["keras"] = [path.read_bytes()]
    return _CACHE["keras"]


def _keras_structural(data: Any, seed: bytes) -> bytes:
    """The archive's members edited (:func:`_zip_structural`), or its config.json edited as
    JSON: layer sizes, shapes, class names and dtypes an attacker would choose."""
    import hypothesis.strategies as st

    if data.draw(st.booleans()):
        return _zip_structural(data, seed)
    src = zipfile.ZipFile(io.BytesIO(seed))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == "config.json":
                raw = _json_edit(data, raw, st.sampled_from(
                    ["Lambda", "float64", "int8", "same", "valid", "channels_first", "relu",
                     "keras.layers", "__main__", "builtins", "eval"]))
            zf.writestr(info, raw)
    return buf.getvalue()


def _keras_target(data: bytes, tmp: Path) -> None:
    from fc.api import import_model

    path = tmp / "m.keras"
    path.write_bytes(data)
    _compile_and_save(import_model("tf", path).graph, tmp)


# -- TensorFlow SavedModel directory ---------------------------------------------------------------

def _tar(members: dict[str, bytes]) -> bytes:
    """A directory's files as one uncompressed tar (the fuzzer's form of a directory: tar has
    no checksum over contents, so a byte-wise edit reaches the files themselves)."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def _untar(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar with plain relative names (what survives a mutation; an
    unreadable tar is an empty directory)."""
    import tarfile
    from pathlib import PurePosixPath

    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                parts = PurePosixPath(info.name).parts
                if not info.isfile() or not parts or info.name.startswith("/") or \
                        any(p in ("..", ".") for p in parts) or "\x00" in info.name:
                    continue
                f = tar.extractfile(info)
                if f is not None:
                    out["/".join(parts)] = f.read()
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError):
        pass
    return out


def _tar_bytewise(seed: bytes, edits: list[tuple[str, float, int, int]]) -> bytes:
    """Byte-wise edits inside one file of a tarred directory (chosen by the first edit's
    position, so in proportion to the files' sizes), the tar rebuilt around it: edits of the
    tar itself would mostly cut its headers and leave an empty directory."""
    members = _untar(seed)
    names = sorted(members)
    sizes = np.cumsum([len(members[n]) for n in names])
    pick = int(np.searchsorted(sizes, edits[0][1] * sizes[-1], side="right"))
    name = names[min(pick, len(names) - 1)]
    members[name] = apply_bytes(members[name], edits)
    return _tar(members)


def _small_keras_model(filters: int = 4, units: int = 5) -> Any:
    from fc._tf import import_tf

    import_tf()
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([  # named: the same bytes whatever Keras built before
        keras.Input((8, 8, 3)), keras.layers.Conv2D(filters, 3, padding="same", name="conv"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu"),
        keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(units, name="fc")],
        name="seed")


def _saved_model_seeds() -> list[bytes]:
    """The small conv net exported as a SavedModel (saved_model.pb, the checkpoint index
    and data, fingerprint.pb), as a tar."""
    if "saved" not in _CACHE:
        model = _small_keras_model()
        with tempfile.TemporaryDirectory() as tmp:
            model.export(str(Path(tmp) / "m"), verbose=False)
            root = Path(tmp) / "m"
            _CACHE["saved"] = [_tar({str(p.relative_to(root)): p.read_bytes()
                                     for p in root.rglob("*") if p.is_file()})]
    return _CACHE["saved"]


_INDEX = "variables/variables.index"


def _saved_model_structural(data: Any, seed: bytes) -> bytes:
    """A file of the directory truncated, emptied or removed; a checkpoint entry's declared
    dtype, shape, offset, size or shard changed (the index rewritten with valid checksums,
    so TF reads it); saved_model.pb's variables, constants or signature edited."""
    import hypothesis.strategies as st

    members = _untar(seed)
    op = data.draw(st.sampled_from(["member", "index", "index", "pb", "pb"]))
    if op == "member":
        name = data.draw(st.sampled_from(sorted(members)))
        how = data.draw(st.sampled_from(["truncate", "empty", "remove"]))
        if how == "remove":
            del members[name]
        else:
            members[name] = b"" if how == "empty" else \
                members[name][: data.draw(st.integers(0, len(members[name])))]
    elif op == "index":
        members[_INDEX] = _index_edit(data, members[_INDEX])
    else:
        members["saved_model.pb"] = _saved_model_pb_edit(data, members["saved_model.pb"])
    return _tar(members)


def _index_edit(data: Any, raw: bytes) -> bytes:
    import hypothesis.strategies as st
    from tensorflow.core.protobuf import tensor_bundle_pb2

    from fc.frontend.tf.declared import _entries, write_checkpoint_index

    entries = _entries(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(entries) - 1))
        key, value = entries[i]
        if not key:  # the header: shard count, endianness, version
            h = tensor_bundle_pb2.BundleHeaderProto()
            h.ParseFromString(value)
            h.num_shards = data.draw(st.sampled_from([0, 1, 2, 1000, 2**31 - 1]))
            h.endianness = data.draw(st.sampled_from([0, 1]))
            entries[i] = (key, h.SerializeToString())
            continue
        e = tensor_bundle_pb2.BundleEntryProto()
        e.ParseFromString(value)
        field = data.draw(st.sampled_from(["shape", "shape", "dtype", "offset", "size", "shard",
                                           "key"]))
        if field == "shape":
            del e.shape.dim[:]
            for d in data.draw(st.lists(_ints(st), max_size=5)):
                e.shape.dim.add(size=max(min(d, 2**62), -2**62))
        elif field == "dtype":
            e.dtype = data.draw(st.sampled_from([0, 2, 3, 7, 9, 19, 20, 21, 99]))
        elif field == "offset":
            e.offset = data.draw(st.sampled_from([0, 1, 3, 2**31, 2**63 - 1]))
        elif field == "size":
            e.size = data.draw(st.sampled_from([0, 1, 16, 2**31, 2**63 - 1]))
        elif field == "shard":
            e.shard_id = data.draw(st.sampled_from([1, 5, 2**31 - 1]))
        else:
            key = data.draw(st.sampled_from([b"x", b"\xff", b"../x", key + b"/y", b"\x00"]))
        entries[i] = (key, e.SerializeToString())
    seen: dict[bytes, bytes] = {}
    for key, value in entries:
        seen.setdefault(key, value)
    return write_checkpoint_index(sorted(seen.items()))


def _saved_model_pb_edit(data: Any, raw: bytes) -> bytes:
    import hypothesis.strategies as st
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(raw)
    meta = sm.meta_graphs[0]
    op = data.draw(st.sampled_from(["variable", "const", "var_op", "signature", "node"]))
    if op == "variable":
        variables = [n.variable for n in meta.object_graph_def.nodes
                     if n.WhichOneof("kind") == "variable"]
        v = data.draw(st.sampled_from(variables))
        if data.draw(st.booleans()):
            del v.shape.dim[:]
            for d in data.draw(st.lists(_ints(st), max_size=4)):
                v.shape.dim.add(size=max(min(d, 2**62), -2**62))
        else:
            v.dtype = data.draw(st.sampled_from([0, 2, 3, 7, 20, 99]))
    elif op in ("const", "node"):
        nodes = [n for f in meta.graph_def.library.function for n in f.node_def]
        node = data.draw(st.sampled_from([n for n in nodes if n.op == "Const"] if op == "const"
                                         else nodes))
        if op == "const":
            t = node.attr["value"].tensor
            what = data.draw(st.sampled_from(["dims", "dtype", "content"]))
            if what == "dims":
                del t.tensor_shape.dim[:]
                for d in data.draw(st.lists(_ints(st), max_size=4)):
                    t.tensor_shape.dim.add(size=max(min(d, 2**62), -2**62))
            elif what == "dtype":
                t.dtype = data.draw(st.sampled_from([0, 1, 7, 20, 99]))
            else:
                t.tensor_content = t.tensor_content[: data.draw(st.integers(0, 16))]
        else:
            node.op = data.draw(st.sampled_from(["Conv2D", "NoSuchOp", "Fill", "While", "",
                                                 "Const", "ReadVariableOp"]))
    elif op == "var_op":
        handles = [n for n in meta.graph_def.node if n.op == "VarHandleOp"]
        n = data.draw(st.sampled_from(handles))
        dims = n.attr["shape"].shape.dim
        del dims[:]
        for d in data.draw(st.lists(_ints(st), max_size=4)):
            dims.add(size=max(min(d, 2**62), -2**62))
    else:
        sig = meta.signature_def["serving_default"]
        spec = data.draw(st.sampled_from(list(sig.inputs.values()) + list(sig.outputs.values())))
        if data.draw(st.booleans()):
            spec.dtype = data.draw(st.sampled_from([0, 3, 7, 99]))
        else:
            del spec.tensor_shape.dim[:]
            for d in data.draw(st.lists(st.integers(-2, 10**6), max_size=5)):
                spec.tensor_shape.dim.add(size=d)
    return sm.SerializeToString()


def _saved_model_target(data: bytes, tmp: Path) -> None:
    """What ``fcc compile tf DIR`` does with a SavedModel directory (the tar's files)."""
    from fc.api import import_model

    root = tmp / "m"
    root.mkdir()
    for name, raw in _untar(data).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(raw)
    _compile_and_save(import_model("tf", root).graph, tmp)


# -- Keras HDF5 (.h5) ----------------------------------------------------------------------------

def _h5_seeds() -> list[bytes]:
    """The small conv net saved as a legacy Keras .h5 (model_config attribute, one group of
    datasets per layer)."""
    if "h5" not in _CACHE:
        # weights of 10 KB beside 20 KB of HDF5 structure: byte-wise edits reach both
        model = _small_keras_model(16, 128)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' notice that .h5 is legacy
            model.save(Path(tmp) / "m.h5")
            _CACHE["h5"] = [(Path(tmp) / "m.h5").read_bytes()]
    return _CACHE["h5"]


def _h5_structural(data: Any, seed: bytes) -> bytes:
    """A dataset re-created with another declared shape (data unwritten: it reads back as
    fill value) or dtype, removed, moved to external storage or replaced by a link (to
    another file, or a soft link to anywhere); the ``model_config`` JSON edited."""
    import h5py
    import hypothesis.strategies as st

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.h5"
        path.write_bytes(seed)
        with h5py.File(path, "r+") as f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for _ in range(data.draw(st.integers(1, 3))):
                op = data.draw(st.sampled_from(["shape", "shape", "dtype", "remove", "external",
                                                "link", "config", "config"]))
                if op == "config":
                    raw = f.attrs["model_config"]
                    raw = raw.encode() if isinstance(raw, str) else bytes(raw)
                    f.attrs["model_config"] = _json_edit(data, raw, st.sampled_from(
                        ["Lambda", "float64", "int8", "same", "valid", "channels_first",
                         "relu", "keras.layers", "__main__", "eval"])).decode()
                    continue
                name = data.draw(st.sampled_from(names))
                if name not in f:
                    continue
                old = f[name]
                shape, dtype = old.shape, old.dtype
                del f[name]
                if op == "shape":
                    dims = [max(0, min(d, 2**40)) for d in
                            data.draw(st.lists(_ints(st), max_size=4))]
                    f.create_dataset(name, shape=tuple(dims), dtype=dtype)
                elif op == "dtype":
                    f.create_dataset(name, shape=shape, dtype=data.draw(st.sampled_from(
                        ["f8", "f2", "i8", "u1", "S4", "b1", "c8"])))
                elif op == "external":
                    f.create_dataset(name, shape=shape, dtype=dtype,
                                     external=[(str(Path(tmp) / "elsewhere.bin"), 0, 1 << 20)])
                elif op == "link":
                    f[name] = h5py.ExternalLink("/etc/hostname", "/x") if data.draw(
                        st.booleans()) else h5py.SoftLink(data.draw(st.sampled_from(
                            ["/", "/model_weights", "/nope", f"/{name}"])))
        return path.read_bytes()


def _h5_bytewise(seed: bytes, edits: list[tuple[str, float, int, int]]) -> bytes:
    """Byte-wise edits of an HDF5 file, those that would shift its bytes mostly turned into
    overwrites of the same length: HDF5 addresses are absolute, so after a shift h5py only
    ever reports the end-of-file mismatch, and nothing deeper is tried."""
    kept = [(("set" if op in ("insert", "delete", "duplicate") and value % 4 else op),
             where, value, length) for op, where, value, length in edits]
    return apply_bytes(seed, kept)


def _h5_target(data: bytes, tmp: Path) -> None:
    from fc.api import import_model

    path = tmp / "m.h5"
    path.write_bytes(data)
    _compile_and_save(import_model("tf", path).graph, tmp)


# -- labelled image list (accuracy) -------------------------------------------------------------

_IMAGE_LIST = """# relative/path label
cls_a/0.png 0
cls_a/1.png n01440764
cls_b/2.png n01443537
cls_b/3.png 1
"""
_LABELS = "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"


def _image_list_target(data: bytes, tmp: Path) -> None:
    """What ``fcc quant accuracy`` does with a list: read it (label file beside it), then
    load and preprocess every image it names (four 4x4 PNGs under ``root``)."""
    from fc.quant.accuracy import read_dataset
    from fc.quant.images import Preprocess, batches

    root = tmp / "images"
    png = _CACHE.get("png")
    if png is None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(buf, format="PNG")
        png = _CACHE["png"] = buf.getvalue()
    for rel in ("cls_a/0.png", "cls_a/1.png", "cls_b/2.png", "cls_b/3.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(png)
    (tmp / "labels.txt").write_text(_LABELS)
    (tmp / "val.txt").write_bytes(data)
    dataset = read_dataset(tmp / "val.txt", root, tmp / "labels.txt")
    dataset.fingerprint_parts()
    for _ in batches(list(dataset.files), Preprocess(4, 4, 3), 2, progress=False):
        pass


def _image_list_structural(data: Any, seed: bytes) -> bytes:
    """Lines replaced by what a hand-edited list holds: paths out of the root, absolute,
    with NUL or backslashes, labels that are names, huge, negative or non-ASCII digits."""
    import hypothesis.strategies as st

    lines = seed.decode().splitlines()
    path = st.sampled_from(["cls_a/0.png", "../val.txt", "/etc/hostname", "cls_a", "a\x00b",
                            "cls_a\\0.png", "nope.png", "", "labels.txt", "../labels.txt"])
    label = st.one_of(st.sampled_from(["0", "1", "-1", "2", "--1", "\u00b2", "\u0661", "1e3",
                                       "9" * 5000, "tench", "n01443537", "n0", "#"]),
                      st.integers(-2**70, 2**70).map(str), st.text(max_size=4))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines)))
        sep = data.draw(st.sampled_from([" ", "\t", "  ", ""]))
        line = data.draw(path) + sep + data.draw(label)
        lines.insert(i, line) if data.draw(st.booleans()) else lines.__setitem__(
            min(i, len(lines) - 1), line)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


# -- images (calibration folders, labelled lists) -------------------------------------------------

def _image_seeds() -> list[bytes]:
    """A 12x16 gradient in each format Pillow writes here that fc reads: PNG, JPEG, BMP, TIFF,
    WebP (when Pillow has it), PPM."""
    if "images" not in _CACHE:
        from PIL import Image

        y, x = np.mgrid[0:12, 0:16]
        img = Image.fromarray(np.stack([x * 16, y * 20, (x + y) * 8], -1).astype(np.uint8))
        out = []
        for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM"):
            buf = io.BytesIO()
            try:
                img.save(buf, format=fmt)
            except (KeyError, OSError):  # a Pillow without that codec
                continue
            out.append(buf.getvalue())
        _CACHE["images"] = out
    return _CACHE["images"]


def _image_structural(data: Any, seed: bytes) -> bytes:
    """A PNG's declared size or bit depth and colour type changed (its CRC recomputed, so
    Pillow reads the header), or bytes of any format overwritten in place."""
    import struct
    import zlib

    import hypothesis.strategies as st

    if not seed.startswith(b"\x89PNG") or data.draw(st.booleans()):
        return _h5_bytewise(seed, data.draw(mutation(st)))  # in place: headers stay aligned
    width, height = (data.draw(st.sampled_from([0, 1, 7, 16, 12000, 30000, 2**31 - 1, 2**32 - 1]))
                     for _ in range(2))
    depth = data.draw(st.sampled_from([1, 2, 4, 8, 16, 3]))
    colour = data.draw(st.sampled_from([0, 2, 3, 4, 6, 5]))
    body = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    ihdr = struct.pack(">I", len(body)) + b"IHDR" + body + \
        struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF)
    return seed[:8] + ihdr + seed[8 + len(ihdr):]


def _image_target(data: bytes, tmp: Path) -> None:
    """What calibration and ``fcc quant accuracy`` do with each image: load it and
    preprocess it to the model's input (8x8 RGB resized; grey, shorter side and crop)."""
    from fc.quant.images import Preprocess

    path = tmp / "x.img"
    path.write_bytes(data)
    Preprocess(8, 8, 3)(path)
    Preprocess(8, 8, 1, resize=10, crop=8, channel_order="BGR")(path)


# -- calibration table (JSON) ------------------------------------------------------------------

def _calibration_seeds() -> list[bytes]:
    """The table of the IR seed graph, calibrated on a few random images (``max``)."""
    if "table" not in _CACHE:
        from fc.np_ops import run
        from fc.quant.calibration import Calibrator

        graph = _ir_graph()
        cal = Calibrator([v.name for n in graph for v in n.outputs] +
                         [v.name for v in graph.inputs], method="max")
        rng = np.random.default_rng(0)
        for _ in range(2):
            feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
            cal.observe_inputs(feeds)
            run(graph, feeds, observer=cal)
        _CACHE["table"] = [cal.table().to_json().encode()]
    return _CACHE["table"]


def _ir_graph() -> Any:
    from fc.ir import load

    graph_json, params = _ir_files()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "g_graph.json").write_bytes(graph_json)
        (Path(tmp) / "g_params.npz").write_bytes(params)
        return load(Path(tmp) / "g_graph.json", Path(tmp) / "g_params.npz")


def _calibration_target(data: bytes, tmp: Path) -> None:
    """What ``fcc quant quantize`` does with a table it finds: read it, compute every scale
    of the fused IR for a strategy, write the quantized IR and run it."""
    from fc.ir import save
    from fc.np_ops import run
    from fc.passes.pipeline import compile_graph
    from fc.quant.calibration import CalibrationTable
    from fc.quant.quantize import build_spec, quantized_graph
    from fc.quant.strategies import get_strategy

    (tmp / "table.json").write_bytes(data)
    table = CalibrationTable.read(tmp / "table.json")
    fused, _ = compile_graph(_ir_graph())
    for name in ("minmax", "symmetry_max"):
        qg = quantized_graph(fused, build_spec(fused, table, get_strategy(name)))
        save(qg, tmp / f"q_{name}")
        run(qg, {v.name: np.ones(v.shape, v.dtype) for v in qg.inputs})


def _calibration_structural(data: Any, seed: bytes) -> bytes:
    """JSON edits anywhere, or a tensor's range set to what a broken calibrator writes
    (NaN, infinities, min above max, zero, huge)."""
    import hypothesis.strategies as st

    if data.draw(st.booleans()):
        return _json_edit(data, seed)
    doc = json.loads(seed)
    names = sorted(doc["tensors"])
    for _ in range(data.draw(st.integers(1, 3))):
        entry = doc["tensors"][data.draw(st.sampled_from(names))]
        key = data.draw(st.sampled_from(["min", "max", "threshold"]))
        entry[key] = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                                0.0, -0.0, -1.0, 1e38, 3.5e38, 1e-45, -1e30,
                                                True, "1.5", None]))
    return json.dumps(doc).encode()  # NaN and Infinity as Python's json writes them


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("onnx", _onnx_seeds, _onnx_target, _onnx_structural),
    Format("mxnet-symbol", _mx_json_seeds, _mx_json_target, _mx_json_structural),
    Format("mxnet-params", _mx_params_seeds, _mx_params_target),
    Format("ir-json", lambda: [_ir_files()[0]],
           lambda d, tmp: _ir_target(d, _ir_files()[1], tmp), _ir_json_structural),
    Format("ir-npz", lambda: [_ir_files()[1]],
           lambda d, tmp: _ir_target(_ir_files()[0], d, tmp), _npz_structural),
    Format("torch-pt2", _pt2_seeds, _pt2_target, _zip_structural),
    Format("quant-config", lambda: [_QUANT_CONFIG.encode()], _quant_target, _yaml_structural),
    Format("tf-pb", _tf_pb_seeds, _tf_pb_target, _tf_pb_structural),
    Format("tf-keras", _keras_seeds, _keras_target, _keras_structural),
    Format("tf-savedmodel", _saved_model_seeds, _saved_model_target, _saved_model_structural,
           _tar_bytewise),
    Format("tf-h5", _h5_seeds, _h5_target, _h5_structural, _h5_bytewise),
    Format("calibration-table", _calibration_seeds, _calibration_target,
           _calibration_structural),
    Format("image-list", lambda: [_IMAGE_LIST.encode()], _image_list_target,
           _image_list_structural),
    Format("image", _image_seeds, _image_target, _image_structural),
]}


# -- running ------------------------------------------------------------------------------------

@dataclass
class Report:
    """What a run of one format found."""

    format: str
    cases: int = 0
    seconds: float = 0.0
    #: CPU seconds of this process while the format ran (wall seconds mean little under load)
    cpu_seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    examples: dict[str, Failure] = field(default_factory=dict)
    #: accepted / refused / failure counts (a fuzzer whose mutants are all refused at the
    #: first byte explores nothing: the accepted share says how deep the cases went)
    outcomes: Counter = field(default_factory=Counter)
    #: digests of the inputs tried: how many *different* inputs the cases were (hypothesis
    #: repeats itself, and a mutation that does not apply returns its seed)
    digests: set = field(default_factory=set, repr=False)

    @property
    def failures(self) -> int:
        return sum(self.kinds.values())

    @property
    def distinct(self) -> int:
        return len(self.digests)

    def add(self, failure: Failure | None, outcome: str = "", data: bytes | None = None
            ) -> None:
        self.cases += 1
        if data is not None:
            self.digests.add(hashlib.blake2b(data, digest_size=16).digest())
        self.outcomes[outcome or ("failure" if failure else "accepted")] += 1
        if failure is not None:
            self.kinds[failure.kind] += 1
            self.examples.setdefault(failure.kind, failure)


def fuzz(fmt: Format, *, cases: int | None = None, seconds: float | None = None,
         seed: int | None = None, on_failure: Callable[[Failure], None] | None = None,
         progress: Callable[[Report], None] | None = None,
         on_case: Callable[[bytes], None] | None = None) -> Report:
    """Feed ``fmt`` mutated inputs for ``cases`` cases or ``seconds`` seconds (whichever
    comes first); count failures without stopping (``on_failure`` sees each one;
    ``on_case`` each input before it runs, to keep one that kills the process)."""
    import hypothesis.strategies as st
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import HypothesisDeprecationWarning

    report = Report(fmt.name)
    seeds = fmt.seeds()
    start, cpu_start = time.monotonic(), time.process_time()
    end = start + seconds if seconds is not None else float("inf")
    limit = cases if cases is not None else 10**12

    def one(data: Any) -> None:
        base = data.draw(st.sampled_from(seeds))
        if fmt.structural is not None and data.draw(st.booleans()):
            try:
                blob = fmt.structural(data, base)
            except Exception:  # a mutation that does not apply to this seed
                blob = base
        else:
            blob = (fmt.bytewise or apply_bytes)(base, data.draw(mutation(st)))
        if time.monotonic() >= end or report.cases >= limit:
            return  # the time is up: the rest of the round is drawn (the same way, or
            # hypothesis calls the strategy flaky) but not run
        if on_case is not None:
            on_case(blob)
        failure, outcome = judge(fmt, blob)
        report.add(failure, outcome, blob)
        if failure is not None and on_failure is not None:
            on_failure(failure)
        if progress is not None:
            progress(report)

    rounds = 0
    while report.cases < limit and time.monotonic() < end:
        # hypothesis runs in rounds of examples (each round a fresh random seed, unless
        # ``seed`` is given); failures are recorded, never raised, so nothing shrinks. Long
        # rounds: hypothesis opens each with its simplest examples, so short ones repeat
        # those (rounds of 20 tried the same input again and again)
        chunk = int(min(ROUND, limit - report.cases))
        run = settings(max_examples=chunk, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(
            given(st.data())(one))
        if seed is not None:
            run = _seeded(run, seed + rounds)
        before = report.cases
        logging.disable(logging.WARNING)  # the importers' notes, thousands of times
        try:
            with warnings.catch_warnings():
                # hypothesis' notice about _json_value's recursion, printed per example in
                # the 10-minute quant-config run (12,000 lines of log)
                warnings.simplefilter("ignore", HypothesisDeprecationWarning)
                run()
        finally:
            logging.disable(logging.NOTSET)
        rounds += 1
        if report.cases == before:  # hypothesis had nothing left to try
            break
    report.seconds = time.monotonic() - start
    report.cpu_seconds = time.process_time() - cpu_start
    assert sum(report.outcomes.values()) == report.cases, (report.outcomes, report.cases)
    return report


def _seeded(test: Any, seed: int) -> Any:
    from hypothesis import seed as hypothesis_seed

    return hypothesis_seed(seed)(test)


def save_failure(failure: Failure, directory: Path, index: int) -> Path:
    """Write the input of a failure to reproduce it (``directory/<format>-<n>.bin``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{failure.format}-{index:04d}.bin"
    path.write_bytes(failure.data)
    return path
