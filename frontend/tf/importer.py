"""The TensorFlow importer: ``import_tf(model) -> fc.ir.Graph``.

1. The source (Keras model or file, SavedModel, frozen .pb) becomes one frozen GraphDef
   (``load.py``); only the nodes the outputs need are kept, in topological order. Control
   flow (Switch/Merge, While, If, function calls) is refused up front: fc's graphs are static.
2. Every node is judged before anything is converted: a node with no converter, or whose
   converter's check refuses it, is listed in one ``UnsupportedOpsError``. Nodes whose inputs
   are all constant fold instead (``fold.py``) and need no converter.
3. Inputs: a 4-D input (an image, NHWC in TF) becomes an NCHW graph input whose source layout
   ``NHWC`` is recorded (``graph.layouts``), followed by a Transpose to the TF tensor; other
   inputs keep their shape. Outputs go back the same way.
4. Nodes convert in order (``ops_*.py``); afterwards dead nodes are dropped and the layout
   pass (``fc.passes.layout``) pushes the Transposes together until they cancel, so the IR
   for reconstruct of a plain CNN has none; reductions over the spatial axes become global
   pools.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from fc._tf import import_tf as _import_tensorflow
from fc.errors import FcError, ImportError_
from fc.frontend.registry import Refusals
from fc.frontend.tf.context import (
    NCHW_TO_NHWC,
    NHWC_TO_NCHW,
    GraphView,
    TFContext,
    const_array,
    decode_attrs,
)
from fc.frontend.tf.fold import fold_node
from fc.frontend.tf.load import FrozenModel, InputShapes, load_source, tensor_name
from fc.frontend.tf.registry import CONVERTERS
from fc.ir.core import Graph, Value
from fc.ir.layout import NHWC
from fc.ir.verify import verify
from fc.limits import Budget

__all__ = ["import_tf", "import_frozen", "CONTROL_FLOW"]

log = logging.getLogger(__name__)

#: ops of dynamic graphs (TF1 control flow, functional control flow, function calls)
CONTROL_FLOW = frozenset({
    "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "RefSwitch", "RefMerge",
    "While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase",
    "PartitionedCall", "StatefulPartitionedCall",
})
# ops that produce no data an output needs, or read variables the freezing replaced
_SKIP = frozenset({"NoOp"})
_SHAPE_OPS = ("Shape", "Size", "Rank")


def import_tf(model: Any, *, input_shapes: InputShapes = None,
              outputs: Sequence[str] | None = None, name: str | None = None) -> Graph:
    """Translate a TensorFlow model into a verified fc graph.

    ``model``: a Keras model, a ``.keras``/``.h5`` file, a SavedModel directory or a frozen
    GraphDef ``.pb``. ``input_shapes`` (in the model's own layout, NHWC for images) fixes
    unknown dims; an unknown batch dim is 1. ``outputs`` names a .pb's output tensors
    (default: the tensors no node reads).
    """
    return import_frozen(load_source(model, input_shapes=input_shapes, outputs=outputs),
                         name=name)


def import_frozen(frozen: FrozenModel, *, name: str | None = None) -> Graph:
    """The fc graph of an already frozen model (``load.py``)."""
    return _Importer(frozen, name or frozen.name).run()


class _Importer:
    def __init__(self, frozen: FrozenModel, name: str):
        self.tf = _import_tensorflow()
        self.frozen = frozen
        self.source = frozen.source
        self.graph = Graph(name)
        self.env: dict[str, Value | np.ndarray] = {}
        self.consts: dict[Any, Value] = {}
        self.decoded: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        self.nodes = {n.name: n for n in frozen.graph_def.node}
        self.order = self._needed_in_order()
        readers: dict[str, list[str]] = {}
        read = set(frozen.outputs)
        #: node name -> its data inputs as tensor names (read three times per node)
        self.inputs_of = {n.name: GraphView.data_inputs(n) for n in self.order}
        for n in self.order:
            for i in self.inputs_of[n.name]:
                readers.setdefault(i.split(":")[0], []).append(n.name)
                read.add(i)
        for t in frozen.outputs:  # a graph output counts as a reader
            readers.setdefault(t.split(":")[0], []).append("<output>")
        self.view = GraphView(self.nodes, readers, self.env, read, frozen.weight_names)
        self.refusals = Refusals("TensorFlow", self.source)
        self.budget = Budget(self.source)
        self.seconds = 0.0

    # -- graph structure ----------------------------------------------------------------------
    def _needed_in_order(self) -> list[Any]:
        """The nodes the outputs depend on (data and control inputs), inputs first."""
        missing = [t for t in self.frozen.outputs if t.split(":")[0] not in self.nodes]
        if missing:
            raise ImportError_(f"{self.source}: output(s) {missing} are not nodes of the graph")
        order: list[Any] = []
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        for out in self.frozen.outputs:
            stack = [(out.split(":")[0], False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(self.nodes[name])
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise ImportError_(f"{self.source}: the graph has a cycle through node "
                                       f"{name!r} (a TF1 while loop?)")
                node = self.nodes.get(name)
                if node is None:
                    raise ImportError_(f"{self.source}: node {name!r} is read but not defined")
                state[name] = 1
                stack.append((name, True))
                for i in reversed(node.input):
                    src = i.lstrip("^").split(":")[0]
                    if state.get(src) != 2:
                        stack.append((src, False))
        flow = [n for n in order if n.op in CONTROL_FLOW]
        if flow:
            shown = ", ".join(f"{n.op} {n.name!r}" for n in flow[:3])
            more = f" and {len(flow) - 3} more" if len(flow) > 3 else ""
            raise ImportError_(f"{self.source}: the graph has control flow or function calls "
                               f"({shown}{more}); fc imports static graphs only")
        return order

    # -- driver -------------------------------------------------------------------------------
    def run(self) -> Graph:
        start = time.perf_counter()
        self._add_inputs()
        consts = self._predict_consts()
        self._check_supported(consts)
        try:
            for node in self.order:
                self._convert(node)
        except FcError as e:
            if self.refusals:
                raise self.refusals.error() from e
            raise
        self.refusals.raise_if_any()
        self._add_outputs()
        self._clean_up()
        try:
            verify(self.graph)
        except FcError as e:
            raise ImportError_(f"{self.source}: the imported graph is invalid: {e}") from e
        self.seconds = time.perf_counter() - start
        return self.graph

    def _add_inputs(self) -> None:
        for pname, value in self.frozen.captured.items():
            self.env[tensor_name(pname)] = value
        for pname, (name, shape, dtype) in self.frozen.inputs.items():
            node = self.nodes.get(pname)
            if node is None or node.op != "Placeholder":
                raise ImportError_(f"{self.source}: input {pname!r} is not a Placeholder")
            if len(shape) == 4:  # an image: NCHW in the IR, fed as NHWC
                x = self.graph.add_input(name, [shape[i] for i in NHWC_TO_NCHW], dtype)
                self.graph.layouts[x.name] = NHWC
                t = self.graph.add_node("Transpose", [x], {"perm": NCHW_TO_NHWC},
                                        name=f"{name}_nhwc", provenance=[pname])
                self.env[tensor_name(pname)] = t.output
            else:
                self.env[tensor_name(pname)] = self.graph.add_input(name, shape, dtype)

    def _predict_consts(self) -> set[str]:
        """Names of the nodes that will fold: every data input constant (a shape query of a
        computed tensor counts: the IR's shapes are static)."""
        consts: set[str] = set(self.frozen.captured)
        for node in self.order:
            if node.op in ("Const", *_SHAPE_OPS):
                consts.add(node.name)
            elif node.op not in ("Placeholder", *_SKIP) and all(
                    i.split(":")[0] in consts for i in self.inputs_of[node.name]):
                consts.add(node.name)
        return consts

    def _check_supported(self, consts: set[str]) -> None:
        for node in self.order:
            if (node.name in consts and node.op not in _SHAPE_OPS) or \
                    node.op in ("Placeholder", *_SKIP):
                continue
            conv = CONVERTERS.find(node.op)
            self.refusals.judge(node.name, node.op, conv, self._ctx(node, checking=True))

    def _ctx(self, node: Any, *, checking: bool = False) -> TFContext:
        decoded = self.decoded.get(node.name)
        if decoded is None:  # the check and the conversion of a node read its attributes once
            decoded = self.decoded[node.name] = decode_attrs(self.tf, node)
        return TFContext(node, tf=self.tf, graph=None if checking else self.graph, view=self.view,
                         consts=self.consts, source=self.source, checking=checking,
                         decoded=decoded)

    def _convert(self, node: Any) -> None:
        if node.op in _SKIP or node.op == "Placeholder":
            return
        inputs = self.inputs_of[node.name]
        if node.op == "Const":
            where = f"{self.source}: node {node.name!r} (Const)"
            arr = const_array(self.tf, node.attr["value"].tensor, where)
            self.budget.add(arr.nbytes, where)
            self.env[f"{node.name}:0"] = arr
            return
        if any(i not in self.env for i in inputs):  # downstream of a refused node
            return
        if all(isinstance(self.env[i], np.ndarray) for i in inputs) and node.op not in _SHAPE_OPS:
            where = f"{self.source}: node {node.name!r} ({node.op})"
            arrays = [self.env[i] for i in inputs]
            for k, arr in enumerate(fold_node(self.tf, node, arrays, where)):
                self.env[f"{node.name}:{k}"] = arr
            return
        conv = CONVERTERS.find(node.op)
        ctx = self._ctx(node)
        if self.refusals.judge(node.name, node.op, conv, ctx):
            return
        for k, r in enumerate(ctx.run(conv)):
            if r is not None:
                self.env[f"{node.name}:{k}"] = r

    def _add_outputs(self) -> None:
        g = self.graph
        for tensor, name in self.frozen.outputs.items():
            entry = self.env.get(tensor)
            if entry is None:
                raise ImportError_(f"{self.source}: output {tensor!r} is not produced")
            if isinstance(entry, np.ndarray):
                entry = g.add_const(f"{name}_value", entry)
            out = Value(g.reserve(name))
            if entry.shape is not None and len(entry.shape) == 4:
                g.add_node("Transpose", [entry], {"perm": NHWC_TO_NCHW}, name=f"{name}_nchw",
                           outputs=[out], provenance=[tensor.split(":")[0]])
                g.layouts[out.name] = NHWC
            else:
                g.add_node("Identity", [entry], name=f"{name}_output", outputs=[out],
                           provenance=[tensor.split(":")[0]])
            g.outputs.append(out)

    def _clean_up(self) -> None:
        from fc.passes.dce import EliminateDeadCode
        from fc.passes.eliminate_noop import EliminateNoOps
        from fc.passes.global_pool import ReduceToGlobalPool
        from fc.passes.infra import PassManager
        from fc.passes.layout import OptimizeLayout
        from fc.passes.shape_inference import InferShapes

        passes = [EliminateDeadCode(), OptimizeLayout(), ReduceToGlobalPool(), EliminateNoOps(),
                  EliminateDeadCode(), InferShapes()]
        PassManager(passes)(self.graph)
