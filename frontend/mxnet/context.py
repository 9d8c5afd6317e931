"""What a converter sees of the import: one MXNet symbol node, its typed attributes, its inputs
(fc ``Value``s or parameter arrays) and a way to emit fc nodes.

MXNet stores every operator attribute as a string (``"(3, 3)"``, ``"True"``, ``"None"``,
``"1e-05"``); :class:`MxAttrs` parses them on request, with the default the converter states
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

import numpy as np

from fc.errors import ImportError_
from fc.frontend._context import ConvertContextBase
from fc.frontend.attrs import AttrReader, WrongType, show
from fc.ir.core import Graph, Value

__all__ = ["MxAttrs", "ConvertContext", "MxNode", "Env", "parse_bool", "parse_tuple"]

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


class MxAttrs(AttrReader):
    """Typed, defaulted access to one MXNet node's string attributes (``fc.frontend.attrs``):
    each getter parses the string on request."""

    def __init__(self, raw: Mapping[str, str], where: str):
        super().__init__(where)
        self.raw = {str(k): str(v) for k, v in raw.items()}

    def _present(self, name: str) -> bool:
        """Present and not ``"None"`` (MXNet writes unset optional fields as ``None``)."""
        return name in self.raw and self.raw[name].strip() != "None"

    def names(self) -> list[str]:
        return [k for k in self.raw if self._present(k)]

    def _wrong(self, name: str) -> WrongType:
        return WrongType(show(self.raw[name]))

    def _as_str(self, name: str) -> str:
        return self.raw[name].strip()

    def _as_int(self, name: str) -> int:
        try:
            return _as_int(_number(self.raw[name]), self.raw[name])
        except ValueError:
            raise self._wrong(name) from None

    def _as_float(self, name: str) -> float:
        try:
            return float(self.raw[name].strip())
        except ValueError:
            raise self._wrong(name) from None

    def _as_bool(self, name: str) -> bool:
        try:
            return parse_bool(self.raw[name])
        except ValueError:
            raise self._wrong(name) from None

    def _as_opt_ints(self, name: str) -> tuple[int | None, ...]:
        """A tuple whose items may be ``None`` (``slice``'s ``begin=(None, 2)``)."""
        text = self.raw[name]
        try:
            return tuple(None if v is None else _as_int(v, text) for v in parse_tuple(text))
        except ValueError:
            raise self._wrong(name) from None

    def _as_floats(self, name: str) -> tuple[float, ...]:
        text = self.raw[name]
        try:
            values = parse_tuple(text)
        except ValueError:
            raise self._wrong(name) from None
        if any(v is None for v in values):
            raise self._wrong(name)
        return tuple(float(v) for v in values)  # type: ignore[arg-type]

    def _as_strs(self, name: str) -> tuple[str, ...]:
        t = self.raw[name].strip()
        if t[:1] in "([" and t[-1:] in ")]":
            t = t[1:-1]
        return tuple(s.strip().strip("'\"") for s in t.split(",") if s.strip())

    def _as_tensor(self, name: str) -> np.ndarray:
        raise WrongType(f"text {show(self.raw[name])} (MXNet attributes hold no tensors)")


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


class ConvertContext(ConvertContextBase):
    """One MXNet node being converted into ``graph``."""

    CONST_KIND = "a parameter from the params file"

    def __init__(self, node: MxNode, *, nodes: Sequence[MxNode], graph: Graph | None, env: Env,
                 consts: dict[int, Value], source: str, checking: bool = False):
        super().__init__(name=node.name, op=node.op, graph=graph, consts=consts, source=source,
                         checking=checking)
        self.node = node
        self._nodes = nodes
        self._env = env
        self.attrs = MxAttrs(node.attrs, self.where)

    @property
    def where(self) -> str:
        return f"{self._source}: node {self.name!r} ({self.op})"

    # -- inputs ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.node.inputs)

    def input_name(self, i: int) -> str:
        """The name of the node (or variable) feeding input ``i``."""
        nid, idx = self.node.inputs[i]
        producer = self._nodes[nid]
        return producer.name if idx == 0 else f"{producer.name}_output{idx}"

    def _lookup(self, i: int) -> Value | np.ndarray | None:
        return self._env.get(self.node.inputs[i])

    def _missing(self, i: int) -> ImportError_:
        nid, idx = self.node.inputs[i]
        producer = self._nodes[nid]
        return self.error(f"input {i} is output {idx} of node {producer.name!r} "
                          f"({producer.op}), which fc does not produce")

    def _weight_key(self, i: int) -> tuple[int, str]:
        """Parameters are cached per variable node and named after it."""
        nid, _ = self.node.inputs[i]
        return nid, self._nodes[nid].name

    def value(self, i: int) -> Value:
        """Input ``i`` as an fc ``Value`` (MXNet inputs are never optional)."""
        v = super().value(i)
        if v is None:
            raise self.error(f"input {i} is missing (the node has {self.num_inputs} inputs)")
        return v

    # -- new constants --------------------------------------------------------------------
    def scalar(self, value: float, dtype: str, suffix: str = "scalar") -> Value:
        """A 0-d constant of ``dtype`` (MXNet casts scalar operands to the tensor's dtype)."""
        return self.const_value(np.asarray(value, dtype=dtype), f"{self.name}_{suffix}")

    # -- outputs --------------------------------------------------------------------------
    def _helper_name(self, suffix: str) -> str:
        return f"{self.name}_{suffix or 'pre'}"

    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        """The MXNet node name for one output, ``<name>_output<i>`` for several."""
        return [self.name] if num_outputs == 1 else [f"{self.name}_output{i}"
                                                     for i in range(num_outputs)]
