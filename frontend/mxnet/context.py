"""What a converter sees of the import: one MXNet symbol node, its typed attributes, its inputs
(fc ``Value``s or parameter arrays) and a way to emit fc nodes.

MXNet stores every operator attribute as a string (``"(3, 3)"``, ``"True"``, ``"None"``,
``"1e-05"``); :class:`Attrs` parses them on request, with the default the converter states
(MXNet's documented default for that operator), and reports a malformed value as one line
naming the file, the node and the attribute.

The importer keeps one environment, ``(node index, output index) -> Value | np.ndarray``. A
parameter (a variable found in the params file) stays an array until a converter asks for it
as a ``Value``; then it becomes a graph weight named after the variable. Converters that need
the numbers themselves (a PReLU slope to reshape, a matrix to transpose) read the array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fc.errors import FcError, ImportError_
from fc.ir.core import Graph, Node, Value

__all__ = ["Attrs", "ConvertContext", "MxNode", "Env", "parse_bool", "parse_tuple"]

Env = dict[tuple[int, int], "Value | np.ndarray"]

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def parse_bool(text: str) -> bool:
    """MXNet's bool spellings: ``True``/``False`` (Python), ``true``/``false``, ``1``/``0``."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"not a bool: {text!r}")


def _number(item: str) -> int | float | None:
    item = item.strip()
    if item == "None":
        return None
    if item.endswith(("L", "l")):  # Python 2 longs in symbols saved by old mxnet
        item = item[:-1]
    try:
        return int(item)
    except ValueError:
        return float(item)


def parse_tuple(text: str) -> tuple[int | float | None, ...]:
    """``"(3, 3)"``, ``"[1,2]"``, ``"(None, 2)"``, ``"()"`` or a bare ``"3"`` -> a tuple."""
    t = text.strip()
    if t[:1] in "([" and t[-1:] in ")]":
        t = t[1:-1]
    items = [s for s in t.split(",") if s.strip()]
    return tuple(_number(s) for s in items)


def _as_int(v: int | float | None, text: str) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise ValueError(f"not an integer: {text!r}")


class Attrs:
    """Typed, defaulted access to one node's string attributes."""

    def __init__(self, raw: Mapping[str, str], where: str):
        self.raw = {str(k): str(v) for k, v in raw.items()}
        self.where = where

    def _bad(self, name: str, kind: str) -> ImportError_:
        return ImportError_(f"{self.where}: attribute {name!r}={self.raw[name]!r} is not {kind}")

    def has(self, name: str) -> bool:
        """Present and not ``"None"`` (MXNet writes unset optional fields as ``None``)."""
        return name in self.raw and self.raw[name].strip() != "None"

    def str(self, name: str, default: str | None = None) -> str | None:
        return self.raw[name].strip() if self.has(name) else default

    def int(self, name: str, default: int | None = None) -> int | None:
        if not self.has(name):
            return default
        try:
            return _as_int(_number(self.raw[name]), self.raw[name])
        except ValueError:
            raise self._bad(name, "an integer") from None

    def float(self, name: str, default: float | None = None) -> float | None:
        if not self.has(name):
            return default
        try:
            return float(self.raw[name].strip())
        except ValueError:
            raise self._bad(name, "a number") from None

    def bool(self, name: str, default: bool | None = None) -> bool | None:
        if not self.has(name):
            return default
        try:
            return parse_bool(self.raw[name])
        except ValueError:
            raise self._bad(name, "a bool (True/False)") from None

    def opt_ints(self, name: str, default: Sequence[int | None] = ()) -> tuple[int | None, ...]:
        """A tuple whose items may be ``None`` (``slice``'s ``begin=(None, 2)``)."""
        if not self.has(name):
            return tuple(default)
        text = self.raw[name]
        try:
            return tuple(None if v is None else _as_int(v, text) for v in parse_tuple(text))
        except ValueError:
            raise self._bad(name, "a tuple of integers") from None

    def ints(self, name: str, default: Sequence[int] = ()) -> tuple[int, ...]:
        values = self.opt_ints(name, default)
        if any(v is None for v in values):
            raise self._bad(name, "a tuple of integers (without None)")
        return tuple(int(v) for v in values)  # type: ignore[arg-type]


@dataclass
class MxNode:
    """One entry of the symbol JSON's ``nodes`` list."""

    index: int
    op: str
    name: str
    attrs: dict[str, str]
    inputs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def is_variable(self) -> bool:
        return self.op == "null"


class ConvertContext:
    """One MXNet node being converted into ``graph``."""

    def __init__(self, node: MxNode, *, nodes: Sequence[MxNode], graph: Graph, env: Env,
                 consts: dict[int, Value], source: str):
        self.node = node
        self.op = node.op
        #: the MXNet node name: the provenance and (made unique) the fc node name
        self.name = node.name
        self.graph = graph
        self._nodes = nodes
        self._env = env
        self._consts = consts
        self._source = source
        self.attrs = Attrs(node.attrs, self.where)

    @property
    def where(self) -> str:
        return f"{self._source}: node {self.name!r} ({self.op})"

    def error(self, msg: str) -> ImportError_:
        """An ``ImportError_`` whose one line names the file and this node."""
        return ImportError_(f"{self.where}: {msg}")

    # -- inputs ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.node.inputs)

    def input_name(self, i: int) -> str:
        """The name of the node (or variable) feeding input ``i``."""
        nid, idx = self.node.inputs[i]
        producer = self._nodes[nid]
        return producer.name if idx == 0 else f"{producer.name}_output{idx}"

    def _entry(self, i: int) -> Value | np.ndarray:
        if i >= len(self.node.inputs):
            raise self.error(f"input {i} is missing (the node has {len(self.node.inputs)} inputs)")
        nid, idx = self.node.inputs[i]
        try:
            return self._env[(nid, idx)]
        except KeyError:
            producer = self._nodes[nid]
            raise self.error(f"input {i} is output {idx} of node {producer.name!r} "
                             f"({producer.op}), which fc does not produce") from None

    def is_const(self, i: int) -> bool:
        entry = self._entry(i)
        return isinstance(entry, np.ndarray) or entry.is_const

    def const(self, i: int, what: str = "") -> np.ndarray:
        """The array of parameter input ``i``; a computed tensor there is an error."""
        entry = self._entry(i)
        if isinstance(entry, np.ndarray):
            return entry
        if entry.is_const:
            return entry.const
        label = f" ({what})" if what else ""
        raise self.error(f"input {i}{label} {self.input_name(i)!r} must be a parameter from the "
                         "params file, but it is computed at run time")

    def value(self, i: int) -> Value:
        """Input ``i`` as an fc ``Value``; a parameter becomes a weight on first use."""
        entry = self._entry(i)
        if isinstance(entry, Value):
            return entry
        nid, _ = self.node.inputs[i]
        v = self._consts.get(nid)
        if v is None:
            v = self.graph.add_const(self._nodes[nid].name, entry)
            self._consts[nid] = v
        return v

    def shape(self, i: int) -> tuple[int, ...]:
        entry = self._entry(i)
        if entry.shape is None:
            raise self.error(f"input {i} {self.input_name(i)!r} has no known shape")
        return tuple(entry.shape)

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def dtype(self, i: int) -> str:
        entry = self._entry(i)
        return entry.dtype.name if isinstance(entry, np.ndarray) else str(entry.dtype)

    # -- new constants --------------------------------------------------------------------
    def const_value(self, array: Any, name: str) -> Value:
        """A new weight made by a converter (a reshaped slope, a transposed matrix)."""
        return self.graph.add_const(name, np.asarray(array))

    def scalar(self, value: float, dtype: str, suffix: str = "scalar") -> Value:
        """A 0-d constant of ``dtype`` (MXNet casts scalar operands to the tensor's dtype)."""
        return self.const_value(np.asarray(value, dtype=dtype), f"{self.name}_{suffix}")

    # -- outputs --------------------------------------------------------------------------
    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        suffix: str = "",
        final: bool = True,
        num_outputs: int = 1,
        output_names: Sequence[str] | None = None,
    ) -> Node:
        """Emit an fc node for this MXNet node.

        ``final`` nodes produce the MXNet outputs: their values take the MXNet node name
        (``<name>_output<i>`` for several outputs, or ``output_names``). Helper nodes of a
        multi-node translation (``final=False``) are named ``<name>_<suffix>``. Schema errors
        come back as one line naming the file and the MXNet node.
        """
        node_name = self.name if final and not suffix else f"{self.name}_{suffix or 'pre'}"
        outputs = None
        if final:
            names = list(output_names) if output_names is not None else (
                [self.name] if num_outputs == 1 else [f"{self.name}_output{i}"
                                                      for i in range(num_outputs)])
            outputs = [Value(self.graph.reserve(n)) for n in names]
        try:
            return self.graph.add_node(op_type, inputs, attrs, name=node_name,
                                       num_outputs=num_outputs, outputs=outputs,
                                       provenance=[self.name])
        except ImportError_:
            raise
        except FcError as e:
            raise self.error(str(e)) from None
