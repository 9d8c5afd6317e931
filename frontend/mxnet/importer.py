"""The MXNet importer: symbol JSON + parameters -> a verified ``fc.ir.Graph``.

Every way in ends in the same JSON-to-IR code (:func:`convert_symbol`):

* ``load_mxnet("PREFIX-symbol.json")``: the files (params default to the highest-numbered
  ``PREFIX-NNNN.params`` beside the symbol), read with ``json`` and fc's own ``.params``
  reader; mxnet is *not* imported;
* ``load_mxnet("resnet50v1b")``: a zoo model (``fc.zoo.mxnet``) is built with
  seeded random weights, or real ones from ``params``, exported into a temporary directory,
  and *those files* are imported as above;
* ``import_gluon(block, shapes)`` / ``import_symbol(sym, arg, aux, shapes)``: live mxnet
  objects, exported (gluon) or serialized (``sym.tojson()``) first.

Steps of the conversion, in order:

1. parse and check the JSON structure (``nodes``, ``heads``; attributes under ``attrs``, or
   the legacy ``param``/``attr``), inputs referring only to earlier nodes;
2. check every operator has a converter and run the converters' checks (attribute variants)
   *before* converting, and again with the real shapes while converting (a refused node and
   the nodes depending on it are not converted), so an unsupported symbol reports all of its
   refusals at once (``UnsupportedOpsError``);
3. variables: found in the params -> weights; feeding only a training label
   (``SoftmaxOutput``'s second input) -> dropped; otherwise graph inputs, with shapes from
   ``input_shapes``, else the variable's ``__shape__``, else ``(1, 3, 224, 224)`` for an input
   named ``data`` (noted);
4. operators in order through the registry (``registry.py``); fc nodes are named after the
   MXNet node and carry it as provenance, and the value of a node's output is named after it;
5. the heads become the graph outputs, and the graph is verified.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError, ImportError_
from fc.frontend.mxnet.context import ConvertContext, Env, MxAttrs, MxNode
from fc.frontend.mxnet.params import load_params, split_arg_aux
from fc.frontend.mxnet.registry import find_converter
from fc.frontend.registry import Refusals
from fc.ir.core import Graph, Value
from fc.ir.verify import verify
from fc.spelling import input_shape_hint, named_shapes_hint, option

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "convert_symbol",
    "default_params_path",
    "import_files",
    "import_gluon",
    "import_symbol",
    "load_mxnet",
]

log = logging.getLogger(__name__)

#: the shape an input named ``data`` gets when nothing else gives one
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
_DEFAULT_INPUT = "data"

InputShapes = Mapping[str, Sequence[int]] | Sequence[int] | None

# mshadow type flags of a variable's ``__dtype__`` attribute
_MSHADOW_DTYPES = {0: "float32", 1: "float64", 2: "float16", 3: "uint8", 4: "int32", 5: "int8",
                   6: "int64", 7: "bool", 8: "int16"}


# -- entry points -----------------------------------------------------------------------------

def load_mxnet(model: str, *, params: str | os.PathLike | None = None, seed: int = 0,
               input_shapes: InputShapes = None) -> tuple[Graph, list[str]]:
    """Import ``model``: a ``PREFIX-symbol.json`` path or a zoo model name.

    Returns the verified graph and notes for the user (where the weights came from, defaulted
    input shapes). For a file, ``params`` defaults to the newest ``PREFIX-NNNN.params`` beside
    it. For a zoo name, without ``params`` the weights are seeded random (``seed``); with
    ``params`` they are loaded into the architecture and every name and shape is checked.
    """
    model = os.fspath(model)
    if _looks_like_file(model):
        return import_files(model, params, input_shapes=input_shapes)
    return _load_zoo(model, params=params, seed=seed, input_shapes=input_shapes)


def import_files(symbol_path: str | os.PathLike, params_path: str | os.PathLike | None = None, *,
                 input_shapes: InputShapes = None, name: str | None = None,
                 source: str | None = None) -> tuple[Graph, list[str]]:
    """Import ``PREFIX-symbol.json`` with its ``.params`` (no mxnet needed)."""
    path = Path(os.fspath(symbol_path))
    if not path.is_file():
        raise ImportError_(f"{path}: no such MXNet symbol file")
    params = Path(os.fspath(params_path)) if params_path is not None else default_params_path(path)
    symbol = _read_json(path)
    arg, aux = split_arg_aux(load_params(params))
    return convert_symbol(symbol, arg, aux, input_shapes=input_shapes,
                          name=name or _prefix_of(path).name, source=source or str(path))


def import_symbol(sym: Any, arg_params: Mapping[str, Any] | None = None,
                  aux_params: Mapping[str, Any] | None = None, input_shapes: InputShapes = None,
                  *, name: str | None = None) -> Graph:
    """Import a live ``mx.sym.Symbol`` (or its JSON text) with its parameters.

    ``arg_params``/``aux_params`` map variable names to ``mx.nd.NDArray`` or numpy arrays,
    as ``mx.model.load_checkpoint`` returns them.
    """
    text = sym if isinstance(sym, str) else sym.tojson()
    symbol = _parse_json(text, "<mxnet symbol>")
    arg = {k: _to_numpy(v) for k, v in (arg_params or {}).items()}
    aux = {k: _to_numpy(v) for k, v in (aux_params or {}).items()}
    graph, notes = convert_symbol(symbol, arg, aux, input_shapes=input_shapes,
                                  name=name or "mxnet_symbol", source="<mxnet symbol>")
    for note in notes:
        log.info("%s", note)
    return graph


def import_gluon(block: Any, input_shapes: Sequence[int] | Sequence[Sequence[int]], *,
                 name: str | None = None) -> Graph:
    """Import a gluon ``HybridBlock``: hybridize, run once on zeros, export, import the files.

    ``input_shapes``: one shape for a one-input block, else one shape per positional input.
    """
    from fc.frontend.mxnet._mx import import_mxnet

    mx = import_mxnet()
    if not isinstance(block, mx.gluon.HybridBlock):
        raise ImportError_(f"import_gluon: expected a gluon HybridBlock, got "
                           f"{type(block).__name__} (a plain Block cannot be exported)")
    shapes = _gluon_shapes(input_shapes)
    label = f"gluon block {block.name!r}"
    try:
        block.hybridize()
        block(*[mx.nd.zeros(s) for s in shapes])
        mx.nd.waitall()
    except (mx.base.MXNetError, RuntimeError, ValueError) as e:  # e.g. uninitialized parameters
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportError_(f"{label}: mxnet could not run it on zeros of {shapes}: {first}") \
            from None
    names = [_DEFAULT_INPUT] if len(shapes) == 1 else [f"data{i}" for i in range(len(shapes))]
    with tempfile.TemporaryDirectory(prefix="fc_gluon_") as tmp:
        prefix = os.path.join(tmp, "model")
        block.export(prefix, epoch=0)
        graph, notes = import_files(f"{prefix}-symbol.json", f"{prefix}-0000.params",
                                    input_shapes=dict(zip(names, shapes)),
                                    name=name or block.name, source=label)
    for note in notes:
        log.info("%s", note)
    return graph


# -- files ------------------------------------------------------------------------------------

def _looks_like_file(model: str) -> bool:
    return (os.path.isfile(model) or model.endswith(".json") or "/" in model
            or os.sep in model)


def _prefix_of(symbol_path: Path) -> Path:
    """``dir/resnet-symbol.json`` -> ``dir/resnet`` (a bare ``dir/x.json`` -> ``dir/x``)."""
    name = symbol_path.name
    for suffix in ("-symbol.json", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return symbol_path.with_name(name[: -len(suffix)])
    return symbol_path


def default_params_path(symbol_path: str | os.PathLike) -> Path:
    """The highest-numbered ``PREFIX-NNNN.params`` beside ``PREFIX-symbol.json``."""
    path = Path(os.fspath(symbol_path))
    prefix = _prefix_of(path)
    directory = prefix.parent
    pattern = re.compile(re.escape(prefix.name) + r"-(\d{4,})\.params$")
    found = []
    if directory.is_dir():
        for f in directory.iterdir():
            m = pattern.fullmatch(f.name)
            if m and f.is_file():
                found.append((int(m.group(1)), f))
    if not found:
        raise ImportError_(f"{path}: no {prefix.name}-NNNN.params file in directory "
                           f"'{directory}'; pass the weights with {option('params', 'FILE')}")
    return max(found)[1]


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImportError_(f"{path}: cannot read the symbol file: {e}") from None
    return _parse_json(text, str(path))


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportError_(f"{source}: not valid symbol JSON: {e.msg} at line {e.lineno} "
                           f"column {e.colno}") from None
    except RecursionError:  # the decoder recurses once per nesting level
        raise ImportError_(f"{source}: not a symbol file (JSON nested too deeply)") from None


def _to_numpy(v: Any) -> np.ndarray:
    return np.asarray(v.asnumpy() if hasattr(v, "asnumpy") else v)


def _gluon_shapes(input_shapes: Any) -> list[tuple[int, ...]]:
    try:
        if input_shapes and all(isinstance(d, int | np.integer) for d in input_shapes):
            return [tuple(int(d) for d in input_shapes)]
        return [tuple(int(d) for d in s) for s in input_shapes]
    except TypeError:
        raise ImportError_(f"import_gluon: input_shapes {input_shapes!r} must be a shape or a "
                           "list of shapes (one per input)") from None


# -- zoo --------------------------------------------------------------------------------------

def _load_zoo(model: str, *, params: str | os.PathLike | None, seed: int,
              input_shapes: InputShapes) -> tuple[Graph, list[str]]:
    import fc.zoo.mxnet as zoo

    canonical = zoo.canonical_name(model)
    shapes = input_shapes if input_shapes is not None else zoo.input_shape(canonical)
    label = f"mxnet zoo model {canonical!r}"
    with tempfile.TemporaryDirectory(prefix="fc_mxnet_zoo_") as tmp:
        prefix = os.path.join(tmp, canonical)
        if params is None:
            sym_path, params_path = zoo.export_model(canonical, prefix, seed=seed)
            note = (f"weights: seeded random (seed {seed}) — no pretrained weights; "
                    f"pass {option('params', 'FILE')} for real ones")
        else:
            sym_path, params_path = _export_with_params(canonical, prefix, params, seed)
            note = f"weights: {os.fspath(params)}"
        graph, notes = import_files(sym_path, params_path, input_shapes=shapes, name=canonical,
                                    source=label)
    return graph, [note, *notes]


def _compare(what: str, given: Mapping[str, tuple[int, ...]],
             expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """A one-line report of missing/unexpected/mismatched names, or ``None`` if all match."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [f"{k} {list(given[k])} (expected {list(expected[k])})" for k in expected
                  if k in given and tuple(given[k]) != tuple(expected[k])]
    if not (missing or unexpected or mismatched):
        return None

    def few(items: list[str]) -> str:
        more = f", ... (+{len(items) - 5})" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    parts = [f"{len(v)} {k} ({few(v)})" for k, v in
             (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched)) if v]
    return f"{what}: " + "; ".join(parts)


def _export_with_params(canonical: str, prefix: str, params: str | os.PathLike, seed: int
                        ) -> tuple[str, str]:
    """Write the symbol of zoo model ``canonical`` and the params file to import with it.

    ``params`` may be an export (``arg:``/``aux:`` names, as in ``PREFIX-0000.params``; bare
    symbol names are accepted too) or a gluon ``save_parameters`` file (structural names such
    as ``layer1.0.conv1.weight``), which gluon's ``load_parameters`` maps onto the block.
    Every name and shape is checked against the architecture first.
    """
    import fc.zoo.mxnet as zoo

    path = os.fspath(params)
    stored = load_params(path)
    shapes = {k: tuple(v.shape) for k, v in stored.items()}
    g_arg, g_aux = split_arg_aux(shapes)
    given_symbol = {**g_arg, **g_aux}
    net = zoo.get_model(canonical, seed=seed)
    structural = {k: tuple(p.shape) for k, p in net._collect_params_with_prefix().items()}
    symbol_names = {p.name for p in net.collect_params().values()}
    sym_path, params_path = f"{prefix}-symbol.json", f"{prefix}-0000.params"
    if len(set(shapes) & set(structural)) > len(set(given_symbol) & symbol_names):
        problem = _compare(f"{path}: parameters do not fit model {canonical!r} "
                           "(gluon save_parameters names)", shapes, structural)
        if problem:
            raise ImportError_(problem)
        from fc.frontend.mxnet._mx import import_mxnet

        mx = import_mxnet()
        try:
            net.load_parameters(path, ctx=mx.cpu())
        except (mx.base.MXNetError, AssertionError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ImportError_(f"{path}: gluon could not load it into {canonical!r}: {first}") \
                from None
        net.export(prefix, epoch=0)
        return sym_path, params_path
    net.export(prefix, epoch=0)
    arg, aux = split_arg_aux(load_params(params_path))
    expected = {k: tuple(v.shape) for k, v in {**arg, **aux}.items()}
    problem = _compare(f"{path}: parameters do not fit model {canonical!r} (exported symbol "
                       "names)", given_symbol, expected)
    if problem:
        raise ImportError_(problem)
    return sym_path, path


# -- JSON -> IR -------------------------------------------------------------------------------

def convert_symbol(symbol: Any, arg_params: Mapping[str, np.ndarray],
                   aux_params: Mapping[str, np.ndarray], *, input_shapes: InputShapes = None,
                   name: str = "mxnet", source: str = "<mxnet symbol>"
                   ) -> tuple[Graph, list[str]]:
    """Translate parsed symbol JSON and its parameters into a verified fc graph (+ notes)."""
    return _Importer(symbol, {**arg_params, **aux_params}, input_shapes, name, source).run()


def _entry(value: Any, n_nodes: int, where: str, source: str) -> tuple[int, int]:
    """A node entry ``[node, output(, version)]`` of ``inputs``/``heads``."""
    if (not isinstance(value, list) or len(value) not in (2, 3)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ImportError_(f"{source}: {where}: bad node entry {value!r}, expected "
                           "[node, output, version]")
    nid, idx = value[0], value[1]
    if not 0 <= nid < n_nodes or idx < 0:
        raise ImportError_(f"{source}: {where}: entry {value!r} refers to no node "
                           f"(the symbol has {n_nodes})")
    return nid, idx


def _parse_nodes(symbol: Any, source: str) -> tuple[list[MxNode], list[tuple[int, int]]]:
    if not isinstance(symbol, dict) or not isinstance(symbol.get("nodes"), list):
        raise ImportError_(f"{source}: not an MXNet symbol (no 'nodes' list at the top level)")
    raw_nodes = symbol["nodes"]
    nodes: list[MxNode] = []
    for i, raw in enumerate(raw_nodes):
        where = f"node #{i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) \
                or not isinstance(raw.get("name"), str):
            raise ImportError_(f"{source}: {where}: expected an object with string 'op' and "
                               f"'name', got {str(raw)[:80]}")
        where = f"node #{i} {raw['name']!r}"
        attrs: dict[str, str] = {}
        for key in ("param", "attr", "attrs"):  # legacy files: param (op) and attr (user)
            part = raw.get(key, {})
            if not isinstance(part, dict):
                raise ImportError_(f"{source}: {where}: '{key}' must be an object")
            attrs.update({str(k): str(v) for k, v in part.items()})
        ins = raw.get("inputs", [])
        if not isinstance(ins, list):
            raise ImportError_(f"{source}: {where}: 'inputs' must be a list")
        inputs = [_entry(e, len(raw_nodes), where, source) for e in ins]
        for nid, _ in inputs:
            if nid >= i:
                raise ImportError_(f"{source}: {where}: input node #{nid} does not come before "
                                   "it (the nodes are not in topological order)")
        if raw["op"] == "null" and inputs:
            raise ImportError_(f"{source}: {where}: a variable ('null' op) with inputs")
        nodes.append(MxNode(i, raw["op"], raw["name"], attrs, inputs))
    heads_raw = symbol.get("heads")
    if not isinstance(heads_raw, list) or not heads_raw:
        raise ImportError_(f"{source}: the symbol has no 'heads' (outputs)")
    heads = [_entry(e, len(nodes), "heads", source) for e in heads_raw]
    return nodes, heads


class _Importer:
    def __init__(self, symbol: Any, params: Mapping[str, np.ndarray], input_shapes: InputShapes,
                 name: str, source: str):
        self.source = source
        self.nodes, self.heads = _parse_nodes(symbol, source)
        self.params = {k: np.asarray(v) for k, v in params.items()}
        self.input_shapes = input_shapes
        self.graph = Graph(name)
        self.env: Env = {}
        self.consts: dict[int, Value] = {}
        self.notes: list[str] = []
        self.refusals = Refusals("mxnet", source)
        # indices of refused nodes and of the nodes depending on them: never converted
        self.poisoned: set[int] = set()

    def run(self) -> tuple[Graph, list[str]]:
        self._check_supported()
        try:
            self._add_variables()
            for node in self.nodes:
                if not node.is_variable:
                    self._convert(node)
        except FcError as e:
            if self.refusals:  # what fc refuses is the first thing to fix
                raise self.refusals.error() from e
            raise
        self.refusals.raise_if_any()
        self._add_outputs()
        try:
            verify(self.graph)
        except FcError as e:
            raise ImportError_(f"{self.source}: the imported graph is invalid: {e}") from e
        return self.graph, self.notes

    # -- support check --------------------------------------------------------------------
    def _check_supported(self) -> None:
        """Record every node without a converter or refused by its converter's check, with
        the parameters as the only known inputs."""
        known: Env = {(n.index, 0): self.params[n.name] for n in self.nodes
                      if n.is_variable and n.name in self.params}
        for node in self.nodes:
            if not node.is_variable:
                self.refusals.judge(node.name, node.op, find_converter(node.op),
                                    self._ctx(node, known, checking=True), key=node.index)

    def _ctx(self, node: MxNode, env: Env, checking: bool = False) -> ConvertContext:
        return ConvertContext(node, nodes=self.nodes, graph=None if checking else self.graph,
                              env=env, consts=self.consts, source=self.source,
                              checking=checking)

    def _where(self, node: MxNode) -> str:
        return f"{self.source}: node {node.name!r} ({node.op})"

    # -- variables ------------------------------------------------------------------------
    def _add_variables(self) -> None:
        data_uses: set[int] = {nid for nid, _ in self.heads}
        label_uses: set[int] = set()
        for node in self.nodes:
            if node.is_variable:
                continue
            conv = find_converter(node.op)
            labels = conv.meta["label_inputs"] if conv is not None else ()
            for pos, (nid, _) in enumerate(node.inputs):
                (label_uses if pos in labels else data_uses).add(nid)
        inputs: list[MxNode] = []
        for node in self.nodes:
            if not node.is_variable:
                continue
            if node.name in self.params:
                self.env[(node.index, 0)] = self._param(node)
            elif node.index in data_uses:
                inputs.append(node)
            elif node.index in label_uses:
                self.notes.append(f"dropped training label input {node.name!r} (not used at "
                                  "inference)")
        used = {n.name for n in self.nodes if n.is_variable}
        unused = [k for k in self.params if k not in used]
        if unused:
            more = f", ... (+{len(unused) - 3})" if len(unused) > 3 else ""
            self.notes.append(f"{len(unused)} parameter(s) in the params file are not used by "
                              f"the symbol: {', '.join(unused[:3])}{more}")
        shapes = self._input_shapes(inputs)
        for node in inputs:
            dtype = self._var_dtype(node)
            self.env[(node.index, 0)] = self.graph.add_input(node.name, shapes[node.name], dtype)

    def _param(self, node: MxNode) -> np.ndarray:
        array = self.params[node.name]
        declared = MxAttrs(node.attrs, self._where(node)).ints("__shape__") \
            if "__shape__" in node.attrs else ()
        known = declared and all(d > 0 for d in declared)
        if known and tuple(declared) != array.shape:
            raise ImportError_(f"{self.source}: parameter {node.name!r} has shape "
                               f"{list(array.shape)} in the params file, the symbol declares "
                               f"{list(declared)}")
        return array

    def _var_dtype(self, node: MxNode) -> str:
        flag = MxAttrs(node.attrs, self._where(node)).int("__dtype__", 0)
        if flag not in _MSHADOW_DTYPES:
            raise ImportError_(f"{self._where(node)}: unsupported __dtype__ {flag}")
        return _MSHADOW_DTYPES[flag]

    def _input_shapes(self, inputs: list[MxNode]) -> dict[str, tuple[int, ...]]:
        names = [n.name for n in inputs]
        given = self.input_shapes
        overrides: dict[str, Sequence[int]] = {}
        if given is not None and not isinstance(given, Mapping):
            if len(names) != 1:
                raise ImportError_(f"{self.source}: a bare input shape needs a one-input symbol; "
                                   f"its inputs are {names}: {named_shapes_hint()}")
            overrides = {names[0]: given}
        elif given is not None:
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ImportError_(f"{self.source}: {option('input_shapes')} names {unknown}, which "
                                   "are not "
                                   f"inputs of the symbol {names}")
            overrides = dict(given)
        shapes: dict[str, tuple[int, ...]] = {}
        missing = []
        for node in inputs:
            if node.name in overrides:
                try:
                    shape = tuple(int(d) for d in overrides[node.name])
                except (TypeError, ValueError):
                    raise ImportError_(f"{self.source}: {option('input_shapes')}[{node.name!r}]="
                                       f"{overrides[node.name]!r} is not a shape") from None
                if not shape or any(d <= 0 for d in shape):
                    raise ImportError_(f"{self.source}: input {node.name!r}: {option('input_shapes')} "
                                       f"{list(shape)} must be positive")
                shapes[node.name] = shape
                continue
            declared = MxAttrs(node.attrs, self._where(node)).ints("__shape__") \
                if "__shape__" in node.attrs else ()
            if declared and all(d > 0 for d in declared):
                shapes[node.name] = tuple(declared)
            elif node.name == _DEFAULT_INPUT:
                shapes[node.name] = DEFAULT_INPUT_SHAPE
                self.notes.append(f"input {node.name!r}: no shape given, assuming "
                                  f"{DEFAULT_INPUT_SHAPE} (pass {input_shape_hint(node.name)} for another)")
            else:
                missing.append(node.name)
        if missing:
            raise ImportError_(f"{self.source}: no shape for input(s) {missing}: they are not in "
                               f"the params file; pass {input_shape_hint(missing[0])}")
        return shapes

    # -- operators ------------------------------------------------------------------------
    def _convert(self, node: MxNode) -> None:
        if node.index in self.refusals or any(nid in self.poisoned for nid, _ in node.inputs):
            # refused up front, or after a refused node: judged with what is known only
            self.refusals.judge(node.name, node.op, find_converter(node.op),
                                self._ctx(node, self.env, checking=True), key=node.index)
            self.poisoned.add(node.index)
            return
        conv = find_converter(node.op)
        ctx = self._ctx(node, self.env)
        if self.refusals.judge(node.name, node.op, conv, ctx, key=node.index):
            self.poisoned.add(node.index)
            return
        assert conv is not None  # judged
        for k, r in enumerate(ctx.run(conv)):
            if r is not None:
                self.env[(node.index, k)] = r

    # -- outputs --------------------------------------------------------------------------
    def _add_outputs(self) -> None:
        outputs: list[Value] = []
        for nid, idx in self.heads:
            node = self.nodes[nid]
            entry = self.env.get((nid, idx))
            if entry is None:
                raise ImportError_(f"{self.source}: output {idx} of node {node.name!r} "
                                   f"({node.op}) is a graph output, but fc does not produce it")
            if isinstance(entry, np.ndarray):
                entry = self.consts.get(nid) or self.graph.add_const(node.name, entry)
                self.consts[nid] = entry
            if entry.producer is None or any(o is entry for o in outputs):
                # a weight, a graph input or a repeated output: an Identity gives it a node
                out = Value(self.graph.reserve(f"{node.name}_output"))
                entry = self.graph.add_node("Identity", [entry], name=f"{node.name}_output",
                                            outputs=[out], provenance=[node.name]).output
            outputs.append(entry)
        self.graph.outputs = outputs
