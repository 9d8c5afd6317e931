"""What an ATen converter sees: one ``call_function`` node of the exported graph.

Arguments are addressed by their position in the op's schema
(``aten::convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, ...)``):
tensor arguments through ``ctx.value(i)`` / ``ctx.const(i)`` / ``ctx.shape(i)`` (the base
class), literal arguments through ``ctx.attrs.ints(3)`` or by name, ``ctx.attrs.ints("stride")``
(``fc.frontend.attrs.LiteralAttrs``; an absent argument reads as its schema default).

The batch: in a program exported with a symbolic batch, ``sym_size(x, 0)`` is a
:data:`BATCH` marker in the environment, and shape arguments that contain it come back from
:meth:`AtenContext.sizes` with ``BATCH`` in that place.

Names: a node's name (and provenance) is the module path it came from (``layer2.1.conv2``,
from ``nn_module_stack``), else the fx node's name; its output values take the fx node's
name, which is unique in the program.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from fc.frontend._context import ConvertContextBase
from fc.frontend.attrs import LiteralAttrs
from fc.ir.core import Graph, Value

__all__ = ["AtenContext", "BATCH", "Batch", "module_path", "op_name"]


class Batch:
    """The symbolic batch size (``sym_size(x, 0)`` of a batch-first input)."""

    def __repr__(self) -> str:
        return "BATCH"


BATCH = Batch()


def op_name(node: fx.Node) -> str:
    """``aten.convolution.default`` for an ATen call, ``getitem`` for tuple indexing."""
    t = node.target
    return getattr(t, "__name__", str(t)) if not isinstance(t, torch._ops.OpOverload) else str(t)


def module_path(node: fx.Node) -> str:
    """The innermost module path of ``nn_module_stack`` (``""`` at the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in reversed(list(stack.values())):
        if path and not path.startswith("_empty_nn_module_stack"):
            return str(path)
    return ""


def _schema_args(node: fx.Node) -> tuple[list[str], list[Any]]:
    """Argument names and values (schema defaults for absent ones), in schema order."""
    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        return [f"arg{i}" for i in range(len(node.args))], list(node.args)
    names, values = [], []
    for i, a in enumerate(target._schema.arguments):
        names.append(a.name)
        if i < len(node.args):
            values.append(node.args[i])
        elif a.name in node.kwargs:
            values.append(node.kwargs[a.name])
        elif a.has_default_value():
            values.append(a.default_value)
        else:
            values.append(None)
    return names, values


def _is_tensor_arg(v: Any) -> bool:
    return isinstance(v, fx.Node)


Env = dict[str, Any]


class AtenContext(ConvertContextBase):
    """One ATen call being converted into ``graph``."""

    CONST_KIND = "a constant (a parameter, buffer or foldable expression)"

    def __init__(self, node: fx.Node, *, graph: Graph | None, env: Env,
                 consts: dict[Hashable, Value], weight_names: dict[str, str], source: str,
                 checking: bool = False):
        path = module_path(node)
        super().__init__(name=path or node.name, op=op_name(node), graph=graph, consts=consts,
                         source=source, checking=checking)
        self.node = node
        self._env = env
        self._weight_names = weight_names
        self.arg_names, self.args = _schema_args(node)
        literal = {n: v for n, v in zip(self.arg_names, self.args)
                   if not _is_tensor_arg(v) and not _has_nodes(v)}
        self.attrs = LiteralAttrs(literal, self.where, positional=self.arg_names)

    @property
    def op_type(self) -> str:
        return self.op

    @property
    def where(self) -> str:
        at = f" in {self.name}" if self.name != self.node.name else ""
        return f"{self._source}: node {self.node.name!r} ({self.op}){at}"

    # -- inputs ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.args)

    def has_input(self, i: int) -> bool:
        return i < len(self.args) and _is_tensor_arg(self.args[i])

    def input_name(self, i: int) -> str:
        a = self.args[i]
        return a.name if isinstance(a, fx.Node) else repr(a)

    def _lookup(self, i: int) -> Value | np.ndarray | None:
        entry = self._env.get(self.args[i].name)
        if entry is not None and not isinstance(entry, Value | np.ndarray):
            raise self.error(f"argument {i} {self.arg_names[i]!r} is {entry!r}, not a tensor")
        return entry

    def _weight_key(self, i: int) -> tuple[str, str]:
        name = self.args[i].name
        return name, self._weight_names.get(name, name)

    def value_list(self, i: int) -> list[Value]:
        """A ``Tensor[]`` argument (``cat``'s tensors) as fc values."""
        items = self.args[i]
        if not isinstance(items, list | tuple):
            raise self.error(f"argument {i} {self.arg_names[i]!r} is not a tensor list")
        out = []
        for a in items:
            entry = self._env.get(a.name) if isinstance(a, fx.Node) else None
            if isinstance(entry, np.ndarray):
                self._emitting()
                v = self._consts.get(a.name)
                if v is None:
                    v = self.graph.add_const(self._weight_names.get(a.name, a.name), entry)
                    self._consts[a.name] = v
                entry = v
            if not isinstance(entry, Value):
                raise self.error(f"argument {i} {self.arg_names[i]!r}: {a!r} is not a tensor")
            out.append(entry)
        return out

    def list_shapes(self, i: int) -> list[tuple[int, ...] | None]:
        """Shapes of a ``Tensor[]`` argument's items, ``None`` where not known yet."""
        out = []
        for a in self.args[i]:
            entry = self._env.get(a.name) if isinstance(a, fx.Node) else None
            out.append(None if entry is None or getattr(entry, "shape", None) is None
                       else tuple(entry.shape))
        return out

    def sizes(self, i: int) -> tuple[int | Batch, ...]:
        """An ``int[]``/``SymInt[]`` argument; a symbolic batch size is :data:`BATCH`."""
        items = self.args[i]
        if not isinstance(items, list | tuple):
            items = [items]
        out: list[int | Batch] = []
        for item in items:
            if isinstance(item, fx.Node):
                entry = self._env.get(item.name)
                if isinstance(entry, Batch) or (isinstance(entry, int) and not
                                                isinstance(entry, bool)):
                    out.append(entry)
                    continue
                raise self.error(f"argument {i} {self.arg_names[i]!r}: size {item.name!r} is "
                                 "computed from the batch; fc's IR keeps the batch in dim 0 alone")
            if not isinstance(item, int) or isinstance(item, bool):
                raise self.error(f"argument {i} {self.arg_names[i]!r} must be a list of integers, "
                                 f"got {items!r}")
            out.append(int(item))
        return tuple(out)

    def sizes_known(self, i: int) -> bool:
        """Whether every symbolic size in argument ``i`` is known yet (up-front checks)."""
        items = self.args[i] if isinstance(self.args[i], list | tuple) else [self.args[i]]
        return all(not isinstance(x, fx.Node) or x.name in self._env for x in items)

    def scalar(self, i: int) -> float | int | None:
        """A ``Scalar`` argument (int or float), ``None`` if absent."""
        v = self.args[i] if i < len(self.args) else None
        if v is None or isinstance(v, int | float) and not isinstance(v, bool):
            return v
        raise self.error(f"argument {i} {self.arg_names[i]!r} must be a number, got {v!r}")

    # -- outputs --------------------------------------------------------------------------
    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        base = self.node.name
        return [base] if num_outputs == 1 else [f"{base}_{i}" for i in range(num_outputs)]

    def _helper_name(self, suffix: str) -> str:
        return f"{self.name}_{suffix}" if suffix else self.name

    def helper(self, op_type: str, inputs: list[Value | None], attrs: dict | None = None,
               suffix: str = "") -> Value:
        """A non-final node of a multi-node translation (output named ``<fx name>_<suffix>``)."""
        node = self.add_node(op_type, inputs, attrs, suffix=suffix or op_type.lower(),
                             final=False)
        return node.output

    def emit(self, op_type: str, inputs: list[Value | None], attrs: dict | None = None) -> Value:
        """The final node: its output takes the fx node's name."""
        return self.add_node(op_type, inputs, attrs).output


def _has_nodes(v: Any) -> bool:
    return isinstance(v, list | tuple) and any(isinstance(x, fx.Node) for x in v)

