"""The ONNX importer driver: ``import_onnx(model) -> fc.ir.Graph``.

Steps, in order:

1. load the model (a path, with external data beside it, or a ``ModelProto``) and require a
   default-domain opset >= 7 (older ones had per-op ``broadcast``/``spatial`` semantics that
   fc does not translate);
2. the real inputs are the graph inputs minus the initializers (IR v3 models list every
   weight as an input too); their shapes are resolved to static ones: ``input_shapes``
   overrides win, an unknown dim 0 (``'N'``, ``0`` or unset) defaults to batch 1 (logged),
   any other unknown dim needs an override;
3. every node is checked for a converter (or, for nodes that will fold, a folder) and its
   converter's check is run *before* anything is converted (``fc.frontend.registry``);
4. nodes are converted in order: a node whose inputs are all constant (and Shape/Size, whose
   input shape is static) is evaluated at import and becomes a constant, everything else goes
   through its converter (``registry.py``), which emits fc nodes. Each check runs again with
   the node's real input shapes; a refused node is not converted, and the nodes after it that
   depend on it are only checked. So an unsupported model reports every unsupported op and
   every refused attribute variant at once, in one ``UnsupportedOpsError``;
5. the graph outputs are the ONNX outputs (a constant output gets an Identity node), and the
   result is verified.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper

from fc.errors import FcError, ImportError_
from fc.frontend.onnx.context import (
    ConvertContext,
    Env,
    onnx_dtype_name,
    tensor_dtype,
    tensor_to_array,
)
from fc.frontend.onnx.registry import find_converter, find_folder
from fc.frontend.registry import Refusals
from fc.ir.core import Graph, Value
from fc.ir.verify import verify
from fc.limits import Budget, check_tensor, nbytes_of
from fc.spelling import input_shape_hint, named_shapes_hint, option

__all__ = ["import_onnx", "MIN_OPSET", "ALWAYS_FOLD"]

log = logging.getLogger(__name__)

#: the oldest default-domain opset fc imports
MIN_OPSET = 7
#: ops that fold whatever their inputs are (they only read static shapes or attributes)
ALWAYS_FOLD = frozenset({"Constant", "Shape", "Size"})
_DEFAULT_DOMAINS = ("", "ai.onnx")

InputShapes = Mapping[str, Sequence[int]] | Sequence[int] | None


def import_onnx(
    model: str | os.PathLike | onnx.ModelProto,
    *,
    input_shapes: InputShapes = None,
    name: str | None = None,
) -> Graph:
    """Translate an ONNX model into a verified fc graph with static shapes.

    ``input_shapes`` maps input names to shapes (a bare tuple for a one-input model); it is
    needed for unknown dims other than the batch dim 0, which defaults to 1. ``name`` names
    the graph (default: the ONNX graph name, else the file stem).
    """
    proto, source = _load(model)
    default_name = proto.graph.name or (Path(os.fspath(model)).stem
                                        if not isinstance(model, onnx.ModelProto) else "onnx")
    return _Importer(proto, source, input_shapes, name or default_name).run()


def _load(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, f"<ModelProto {model.graph.name or 'unnamed'!r}>"
    if not isinstance(model, str | os.PathLike):
        raise ImportError_(f"import_onnx: expected a path or onnx.ModelProto, got "
                           f"{type(model).__name__}")
    path = Path(os.fspath(model))
    if not path.is_file():
        raise ImportError_(f"{path}: no such ONNX file")
    try:
        Budget(str(path)).add(path.stat().st_size, "the file", one_tensor=False)  # read whole
        proto = onnx.load(str(path), load_external_data=False)
    except FcError:
        raise
    except Exception as e:  # protobuf DecodeError, ...
        raise ImportError_(f"{path}: cannot be read as an ONNX model ({_short(e)})") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise ImportError_(f"{path}: not an ONNX model (no graph or IR version in the file)")
    _check_text(proto, str(path))
    external = [t for t in proto.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        # the declared sizes are judged before any byte is read
        budget = Budget(f"{path}: external data")
        for t in external:
            where = f"{path}: initializer {t.name!r}"
            budget.add(nbytes_of([max(d, 0) for d in t.dims], tensor_dtype(t, where)), where)
        try:
            external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as e:  # a missing file, data out of its bounds, a path outside, ...
            raise ImportError_(f"{path}: cannot load its external data ({_short(e)})") from None
    return proto, str(path)


def _short(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _check_text(proto: onnx.ModelProto, source: str) -> None:
    """Every name and op type fc reads is UTF-8 text. (protobuf hands a string field holding
    other bytes back as ``bytes``, which would then break sorting, JSON and DOT.)"""
    g = proto.graph

    def bad(where: str, value: Any) -> ImportError_:
        return ImportError_(f"{source}: {where} {value!r} is not UTF-8 text")

    for what, items in (("input", g.input), ("output", g.output), ("value_info", g.value_info),
                        ("initializer", g.initializer)):
        for i, item in enumerate(items):
            if not isinstance(item.name, str):
                raise bad(f"{what} #{i} name", item.name)
    if not isinstance(g.name, str):
        raise bad("graph name", g.name)
    for i, node in enumerate(g.node):
        for field in ("op_type", "name", "domain"):
            if not isinstance(getattr(node, field), str):
                raise bad(f"node #{i} {field}", getattr(node, field))
        for field in ("input", "output"):
            for j, tensor in enumerate(getattr(node, field)):
                if not isinstance(tensor, str):
                    raise bad(f"node #{i} {field} {j}", tensor)
        for a in node.attribute:
            if not isinstance(a.name, str):
                raise bad(f"node #{i} attribute name", a.name)
    for op in proto.opset_import:
        if not isinstance(op.domain, str):
            raise bad("opset_import domain", op.domain)


def _default_opset(proto: onnx.ModelProto, source: str) -> int:
    versions = [op.version for op in proto.opset_import if op.domain in _DEFAULT_DOMAINS]
    if not versions:
        raise ImportError_(f"{source}: the model imports no default-domain (ai.onnx) opset")
    opset = int(versions[0])
    if opset < MIN_OPSET:
        raise ImportError_(f"{source}: ONNX opset {opset} is older than {MIN_OPSET}, the oldest "
                           "fc imports (upgrade it with onnx.version_converter)")
    return opset


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """The declared dims: ints, symbolic names, or ``None`` for unknown; ``None`` if no shape."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


class _Importer:
    def __init__(self, proto: onnx.ModelProto, source: str, input_shapes: InputShapes, name: str):
        self.proto = proto
        self.source = source
        self.opset = _default_opset(proto, source)
        self.input_shapes = input_shapes
        self.graph = Graph(name)
        self.env: Env = {}
        # constants already added to the graph, by ONNX tensor name
        self.consts: dict[str, Value] = {}
        g = proto.graph
        # names of nodes: the ONNX name, or a deterministic <OpType>_<index>
        self.names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(g.node)]
        self.used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
        self.refusals = Refusals(f"ONNX (opset {self.opset})", source)
        # the bytes of the tensors the import reads and folds, against fc.limits
        self.budget = Budget(source)
        # outputs of refused nodes (and of the nodes depending on them): never produced
        self.poisoned: set[str] = set()
        self._index = 0  # of the node being converted

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.proto.graph
        if len(g.sparse_initializer):
            raise ImportError_(f"{self.source}: sparse initializers are not supported "
                               f"({g.sparse_initializer[0].values.name!r}, ...)")
        for t in g.initializer:
            self.env[t.name] = tensor_to_array(t, f"{self.source}: initializer", self.budget)
        self._add_inputs([vi for vi in g.input if vi.name not in self.env])
        self._check_supported()
        try:
            for index, (node, name) in enumerate(zip(g.node, self.names)):
                self._index = index
                self._convert(node, name)
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
        return self.graph

    def _add_inputs(self, real: list[onnx.ValueInfoProto]) -> None:
        overrides = self._overrides(real)
        for vi in real:
            where = f"{self.source}: input {vi.name!r}"
            if not vi.type.HasField("tensor_type"):
                raise ImportError_(f"{where} is not a tensor (type {vi.type.WhichOneof('value')})")
            dtype = onnx_dtype_name(vi.type.tensor_type.elem_type, where)
            if np.dtype(dtype).kind not in "biuf":
                raise ImportError_(f"{where} has element type {dtype}, which fc does not "
                                   "support (bool, integer or float)")
            dims = _dims(vi)
            if vi.name in overrides:
                shape = tuple(int(d) for d in overrides[vi.name])
                if dims is not None and len(dims) != len(shape):
                    raise ImportError_(f"{where}: {option('input_shapes')} gives rank {len(shape)} "
                                       f"{list(shape)}, the model declares rank {len(dims)} {dims}")
                if any(d <= 0 for d in shape):
                    raise ImportError_(f"{where}: {option('input_shapes')} {list(shape)} must be "
                                       "positive")
            else:
                shape = self._default_shape(vi.name, dims, where)
            self.env[vi.name] = self.graph.add_input(vi.name, shape, dtype)

    def _overrides(self, real: list[onnx.ValueInfoProto]) -> dict[str, Sequence[int]]:
        given = self.input_shapes
        if given is None:
            return {}
        names = [vi.name for vi in real]
        if not isinstance(given, Mapping):
            if len(names) != 1:
                raise ImportError_(f"{self.source}: a bare input shape needs a one-input model; "
                                   f"inputs are {names}: {named_shapes_hint()}")
            return {names[0]: tuple(given)}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ImportError_(f"{self.source}: {option('input_shapes')} names {unknown}, which "
                               f"are not model inputs {names}")
        return dict(given)

    def _default_shape(self, name: str, dims: list[Any] | None, where: str) -> tuple[int, ...]:
        if dims is None:
            raise ImportError_(f"{where} declares no shape; pass {input_shape_hint(name)}")
        unknown = [(i, d) for i, d in enumerate(dims) if not isinstance(d, int)]
        batch = dims[0] if dims and isinstance(dims[0], int) else 1  # an unknown one defaults to 1
        late = [(i, d) for i, d in unknown if i != 0]
        if late:
            shown = ", ".join(f"axis {i}={d if d is not None else '?'}" for i, d in late)
            raise ImportError_(f"{where} has unknown dim(s) {shown} in {dims}; pass "
                               f"{input_shape_hint(name, [batch, *dims[1:]])}")
        if unknown:
            log.warning("%s: batch dim %s set to 1 (pass %s to choose another)",
                        where, "?" if dims[0] is None else repr(dims[0]),
                        input_shape_hint(name, [batch, *dims[1:]]))
        return tuple(d if isinstance(d, int) else 1 for d in dims)

    # -- support check --------------------------------------------------------------------
    def _check_supported(self) -> None:
        """Record every node fc refuses, predicting which nodes fold, before converting: no
        converter (and no folder for a node that folds), or a converter check refusing what
        the attributes, constants and declared shapes already tell."""
        const = {k for k, v in self.env.items() if isinstance(v, np.ndarray)}
        for index, (node, name) in enumerate(zip(self.proto.graph.node, self.names)):
            if node.domain not in _DEFAULT_DOMAINS:
                self.refusals.add(name, f"{node.domain}.{node.op_type}", key=index)
                continue
            conv = find_converter(node.op_type, self.opset)
            fold = find_folder(node.op_type, self.opset)
            inputs_const = all(i == "" or i in const for i in node.input)
            if (node.op_type in ALWAYS_FOLD and fold) or (inputs_const and (fold or conv)):
                const.update(o for o in node.output if o)
                if fold:
                    continue
            self.refusals.judge(name, node.op_type, conv, self._check_ctx(node, name), key=index)

    def _check_ctx(self, node: onnx.NodeProto, name: str) -> ConvertContext:
        return ConvertContext(node, name=name, opset=self.opset, graph=None, env=self.env,
                              consts=self.consts, used=self.used, source=self.source,
                              checking=True)

    # -- nodes ----------------------------------------------------------------------------
    def _ctx(self, node: onnx.NodeProto, name: str, graph: Graph, consts: dict[str, Value]
             ) -> ConvertContext:
        return ConvertContext(node, name=name, opset=self.opset, graph=graph, env=self.env,
                              consts=consts, used=self.used, source=self.source)

    def _is_const(self, tensor: str) -> bool:
        entry = self.env.get(tensor)
        return isinstance(entry, np.ndarray) or (isinstance(entry, Value) and entry.is_const)

    def _convert(self, node: onnx.NodeProto, name: str) -> None:
        if self._index in self.refusals or any(i in self.poisoned for i in node.input if i):
            self._skip(node, name)
            return
        fold = find_folder(node.op_type, self.opset)
        inputs_const = all(i == "" or self._is_const(i) for i in node.input)
        results: list[Any] | None
        if (node.op_type in ALWAYS_FOLD and fold) or inputs_const:
            results = self._fold(node, name)
        else:
            results = self._call_converter(self._ctx(node, name, self.graph, self.consts))
        if results is None:  # refused by its converter's check
            self.poisoned.update(o for o in node.output if o)
            return
        for i, out in enumerate(node.output):
            if not out:
                continue
            r = results[i] if i < len(results) else None
            if r is None:
                if out in self.used:
                    raise ImportError_(f"{self.source}: node {name!r} ({node.op_type}): output "
                                       f"{i} {out!r} is used but fc does not produce it")
                continue
            self.env[out] = r

    def _skip(self, node: onnx.NodeProto, name: str) -> None:
        """A node after a refused one: judged with what is known, never converted."""
        if self._index not in self.refusals:
            conv = find_converter(node.op_type, self.opset)
            if conv is not None or find_folder(node.op_type, self.opset) is None:
                self.refusals.judge(name, node.op_type, conv, self._check_ctx(node, name),
                                    key=self._index)
        self.poisoned.update(o for o in node.output if o)

    def _call_converter(self, ctx: ConvertContext) -> list[Value | None] | None:
        """The converter's values for the node, or ``None`` when its check refuses it."""
        conv = find_converter(ctx.op_type, ctx.opset)
        if conv is None:  # only reachable when a folder declined a node it had to fold
            raise ctx.error("no converter, and the node could not be folded")
        if self.refusals.judge(ctx.name, ctx.op_type, conv, ctx, key=self._index):
            return None
        return ctx.run(conv)

    def _fold(self, node: onnx.NodeProto, name: str) -> list[np.ndarray] | None:
        """Evaluate an all-constant node with numpy: its folder, else its converter run on a
        scratch graph through fc's own kernels (so folding has exactly fc's semantics)."""
        fold = find_folder(node.op_type, self.opset)
        ctx = self._ctx(node, name, self.graph, self.consts)
        if fold is not None:
            try:
                result = fold(ctx)
            except FcError:
                raise
            except Exception as e:  # numpy refusing the constants: name the node
                raise ctx.error(f"constant folding failed: {_short(e)}") from e
            if result is not None:
                arrays = [None if r is None else np.asarray(r) for r in result]
                for a in arrays:
                    if a is not None:
                        self.budget.add(a.nbytes, f"{ctx.where}: its folded output")
                return arrays
        from fc.np_ops import run

        scratch = Graph(f"fold_{name}")
        values = self._call_converter(self._ctx(node, name, scratch, {}))
        if values is None:
            return None
        scratch.outputs = list(dict.fromkeys(v for v in values if v is not None and not v.is_const))
        for n in scratch:  # judged by their declared shapes before fc's kernels allocate them
            for v in n.outputs:
                if v.shape is not None and v.dtype is not None:
                    check_tensor(v.shape, v.dtype, f"{ctx.where}: its folded output")
        try:
            env = run(scratch, {}) if scratch.outputs else {}
        except FcError as e:
            raise ctx.error(f"constant folding failed: {e}") from None
        return [None if v is None else (v.const if v.is_const else np.asarray(env[v.name]))
                for v in values]

    # -- outputs --------------------------------------------------------------------------
    def _add_outputs(self) -> None:
        outputs: list[Value] = []
        for vi in self.proto.graph.output:
            entry = self.env.get(vi.name)
            if entry is None:
                raise ImportError_(f"{self.source}: graph output {vi.name!r} is not produced by "
                                   "any node")
            if isinstance(entry, np.ndarray):
                entry = self.graph.add_const(f"{vi.name}_value", entry)
            if entry.producer is None or any(o is entry for o in outputs):
                # a constant, a graph input or a repeated output: an Identity gives the output
                # a node and the ONNX name
                out = Value(self.graph.reserve(vi.name))
                entry = self.graph.add_node("Identity", [entry], name=f"{vi.name}_identity",
                                            outputs=[out], provenance=[vi.name]).output
            outputs.append(entry)
        self.graph.outputs = outputs
