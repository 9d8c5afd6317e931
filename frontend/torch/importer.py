"""The ATen importer: a decomposed ``ExportedProgram`` -> a verified fc graph.

1. The placeholders are classified by the program's ``graph_signature``: parameters and
   buffers become weights named by their state-dict keys (``layer1.0.conv1.weight``), lifted
   constants likewise, user inputs become graph inputs (with the caller's shapes).
2. Every call is checked for a converter, and the converter's ``check`` run with what is
   known up front, so every refusal of the model is listed in one error.
3. Calls are converted in order. A call whose tensor arguments are all constants is
   evaluated by torch itself (the source framework is the best authority on its own op)
   and stays a constant; ``sym_size(x, 0)`` of a batch-first input is the batch marker.
4. The outputs are the program's user outputs (``output``, or ``output_<i>`` for several),
   and the graph is verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from fc.errors import FcError, ImportError_
from fc.frontend.registry import Refusals
from fc.frontend.torch.context import BATCH, AtenContext, module_path, op_name
from fc.frontend.torch.registry import CONVERTERS
from fc.ir.core import Graph, Value
from fc.ir.verify import verify

__all__ = ["import_program"]

#: calls that only compute shapes or pass a tensor through: no converter, handled here
_SYM_OPS = {"aten.sym_size.int"}


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        raise ImportError_("bfloat16 weights have no numpy dtype")
    return np.ascontiguousarray(t.cpu().numpy())


class _Importer:
    def __init__(self, program: ExportedProgram, input_shapes: Sequence[tuple[int, ...]],
                 source: str, name: str):
        self.program = program
        self.source = source
        self.graph = Graph(name)
        self.env: dict[str, Any] = {}
        self.consts: dict[Any, Value] = {}
        #: fx placeholder name -> state-dict / constant name (the IR weight name)
        self.weight_names: dict[str, str] = {}
        self.input_shapes = list(input_shapes)
        self.refusals = Refusals("PyTorch ATen", source)
        self.poisoned: set[str] = set()

    def _ctx(self, node: fx.Node, checking: bool = False) -> AtenContext:
        return AtenContext(node, graph=None if checking else self.graph, env=self.env,
                           consts=self.consts, weight_names=self.weight_names,
                           source=self.source, checking=checking)

    # -- inputs ---------------------------------------------------------------------------
    def _placeholders(self) -> None:
        sig = self.program.graph_signature
        kinds = {s.arg.name: s for s in sig.input_specs}
        state, constants = self.program.state_dict, self.program.constants
        user = [n for n in self.program.graph.nodes if n.op == "placeholder"
                and kinds[n.name].kind == InputKind.USER_INPUT]
        if len(user) != len(self.input_shapes):
            raise ImportError_(f"{self.source}: the model takes {len(user)} tensor inputs "
                               f"{[n.name for n in user]}, {len(self.input_shapes)} shapes given")
        shapes = dict(zip((n.name for n in user), self.input_shapes))
        for node in self.program.graph.nodes:
            if node.op != "placeholder":
                continue
            spec = kinds[node.name]
            if spec.kind == InputKind.USER_INPUT:
                val = node.meta.get("val")
                if not isinstance(val, torch.Tensor):
                    raise ImportError_(f"{self.source}: input {node.name!r} is not a tensor "
                                       f"({type(val).__name__}); fc imports tensor inputs only")
                dtype = str(val.dtype).removeprefix("torch.")
                self.env[node.name] = self.graph.add_input(node.name, shapes[node.name], dtype)
                continue
            target = spec.target
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                tensor = state[target] if target in state else constants[target]
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                tensor = constants[target]
            else:
                raise ImportError_(f"{self.source}: input {node.name!r} of kind {spec.kind.name} "
                                   "is not supported (tensors, parameters and buffers only)")
            if not isinstance(tensor, torch.Tensor):
                raise ImportError_(f"{self.source}: {target!r} is a {type(tensor).__name__}, "
                                   "not a tensor")
            self.env[node.name] = _numpy(tensor)
            self.weight_names[node.name] = target

    # -- the up-front check ---------------------------------------------------------------
    def _check_all(self) -> None:
        for node in self.program.graph.nodes:
            if node.op != "call_function":
                continue
            op = op_name(node)
            if op in _SYM_OPS or op == "getitem":
                continue
            conv = CONVERTERS.find(op)
            self.refusals.judge(self._label(node), op, conv, self._ctx(node, checking=True),
                                key=node.name)

    @staticmethod
    def _label(node: fx.Node) -> str:
        path = module_path(node)
        return f"{node.name} in {path}" if path else node.name

    # -- conversion -----------------------------------------------------------------------
    def _all_const(self, node: fx.Node) -> bool:
        tensors = [a for a in node.all_input_nodes]
        return bool(tensors) and all(isinstance(self.env.get(a.name), np.ndarray)
                                     for a in tensors)

    def _fold(self, node: fx.Node) -> None:
        """Evaluate an all-constant call with torch."""
        def real(a: Any) -> Any:
            if isinstance(a, fx.Node):
                return torch.from_numpy(np.array(self.env[a.name]))
            if isinstance(a, list | tuple):
                return type(a)(real(x) for x in a)
            return a

        try:
            out = node.target(*real(node.args), **real(node.kwargs))
        except Exception as e:
            raise ImportError_(f"{self.source}: node {node.name!r} ({op_name(node)}): constant "
                               f"folding failed: {type(e).__name__}: {e}") from None
        outs = out if isinstance(out, tuple | list) else None
        self.env[node.name] = ([_numpy(o) if isinstance(o, torch.Tensor) else o for o in outs]
                               if outs is not None else _numpy(out))
        sources = {self.weight_names[a.name] for a in node.all_input_nodes
                   if a.name in self.weight_names}
        if len(sources) == 1 and outs is None:  # a reshaped weight keeps its weight's name
            self.weight_names[node.name] = sources.pop()

    def _sym(self, node: fx.Node) -> None:
        x, dim = node.args
        entry = self.env.get(x.name)
        if dim == 0 and isinstance(entry, Value) and not entry.is_const:
            self.env[node.name] = BATCH
        else:
            shape = getattr(entry, "shape", None)
            if shape is None:
                raise ImportError_(f"{self.source}: node {node.name!r}: size of {x.name!r} unknown")
            self.env[node.name] = int(shape[dim])

    def _getitem(self, node: fx.Node) -> None:
        src, i = node.args
        items = self.env.get(src.name)
        if not isinstance(items, list):
            raise ImportError_(f"{self.source}: node {node.name!r}: {src.name!r} is not a tuple")
        item = items[i]
        if item is None:
            raise ImportError_(f"{self.source}: node {node.name!r}: output {i} of {src.name!r} "
                               f"({op_name(src)}) is used, but fc does not produce it")
        self.env[node.name] = item

    def _convert(self, node: fx.Node) -> None:
        op = op_name(node)
        if node.name in self.refusals or any(a.name in self.poisoned for a in node.all_input_nodes):
            if node.name not in self.refusals and op not in _SYM_OPS and op != "getitem":
                self.refusals.judge(self._label(node), op, CONVERTERS.find(op),
                                    self._ctx(node, checking=True), key=node.name)
            self.poisoned.add(node.name)
            return
        if op in _SYM_OPS:
            self._sym(node)
        elif op == "getitem":
            self._getitem(node)
        elif self._all_const(node):
            self._fold(node)
        else:
            ctx = self._ctx(node)
            conv = CONVERTERS.get(op)
            if self.refusals.judge(self._label(node), op, conv, ctx, key=node.name):
                self.poisoned.add(node.name)
                return
            results = ctx.run(conv)
            self.env[node.name] = results[0] if len(results) == 1 else results

    # -- outputs --------------------------------------------------------------------------
    def _outputs(self) -> None:
        sig = self.program.graph_signature
        out_node = next(n for n in self.program.graph.nodes if n.op == "output")
        args = out_node.args[0]
        user = [a for a, s in zip(args, sig.output_specs) if s.kind == OutputKind.USER_OUTPUT]
        if len(user) != len(sig.output_specs):
            kinds = sorted({s.kind.name for s in sig.output_specs} - {"USER_OUTPUT"})
            raise ImportError_(f"{self.source}: the program has {kinds} outputs (it mutates "
                               "buffers); fc imports inference programs")
        outputs: list[Value] = []
        names = ["output"] if len(user) == 1 else [f"output_{i}" for i in range(len(user))]
        for a, name in zip(user, names):
            entry = self.env.get(a.name) if isinstance(a, fx.Node) else None
            if isinstance(entry, np.ndarray):
                entry = self.graph.add_const(f"{name}_value", entry)
            if not isinstance(entry, Value):
                raise ImportError_(f"{self.source}: output {name!r} ({a!r}) is not a tensor")
            if entry.producer is None or entry.is_const or any(o is entry for o in outputs):
                out = Value(self.graph.reserve(name))
                entry = self.graph.add_node("Identity", [entry], name=f"{name}_identity",
                                            outputs=[out], provenance=[name]).output
            else:
                entry.name = name
            outputs.append(entry)
        self.graph.outputs = outputs
        self.graph.rename_index()

    def run(self) -> Graph:
        self._placeholders()
        self._check_all()
        for node in self.program.graph.nodes:
            if node.op == "call_function":
                self._convert(node)
        self.refusals.raise_if_any()
        self._outputs()
        self.graph.remove_unused_consts()
        try:
            verify(self.graph)
        except FcError as e:
            raise ImportError_(f"{self.source}: the imported graph is invalid: {e}") from e
        return self.graph


def import_program(program: ExportedProgram, input_shapes: Sequence[tuple[int, ...]], *,
                   source: str, name: str) -> Graph:
    """The fc graph of a decomposed ``program`` whose user inputs get ``input_shapes``."""
    return _Importer(program, input_shapes, source, name).run()

