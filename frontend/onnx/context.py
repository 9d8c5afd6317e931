"""What a converter sees of the import: one ONNX node, its opset, its inputs (fc ``Value``s or
constant arrays) and a way to emit fc nodes.

The importer keeps one environment, ONNX tensor name -> ``Value`` (a graph input or an fc node
output) or ``np.ndarray`` (an initializer or a folded constant). A constant becomes a graph
weight (``graph.add_const``, named after the ONNX tensor) only when a converter asks for it as
a ``Value``; constants consumed only by folding, or turned into attributes, never reach the
graph. Every node a converter emits carries the ONNX node name as its provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fc.errors import FcError, ImportError_
from fc.ir.core import Graph, Node, Value

__all__ = ["ConvertContext", "onnx_dtype_name", "Env"]

Env = dict[str, "Value | np.ndarray"]


def onnx_dtype_name(elem_type: int, where: str = "") -> str:
    """numpy dtype name of an ONNX ``TensorProto`` element type (``1`` -> ``"float32"``)."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise ImportError_(f"{where}: ONNX element type {name} has no numpy dtype") from None


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    if isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
        return [numpy_helper.to_array(v) for v in value]
    return value


class ConvertContext:
    """One ONNX node being converted (or folded) into ``graph``."""

    def __init__(
        self,
        node: onnx.NodeProto,
        *,
        name: str,
        opset: int,
        graph: Graph,
        env: Env,
        consts: dict[str, Value],
        used: set[str],
        source: str,
    ):
        self.node = node
        self.op_type = node.op_type
        #: the ONNX node name (generated as ``<OpType>_<index>`` for unnamed nodes): the
        #: provenance and (made unique) the fc name of the nodes emitted for it
        self.name = name
        self.opset = opset
        self.graph = graph
        self._env = env
        self._consts = consts
        self._used = used
        self._source = source
        self._attrs = {a.name: _attr_value(a) for a in node.attribute}

    # -- errors ---------------------------------------------------------------------------
    def error(self, msg: str) -> ImportError_:
        """An ``ImportError_`` whose one line names the file and this node."""
        return ImportError_(f"{self._source}: node {self.name!r} ({self.op_type}, opset "
                            f"{self.opset}): {msg}")

    # -- attributes -----------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        return self._attrs.get(name, default)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def ints(self, name: str, default: Sequence[int] | None = None) -> tuple[int, ...] | None:
        value = self._attrs.get(name)
        if value is None:
            return None if default is None else tuple(default)
        return tuple(int(v) for v in value)

    # -- inputs ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        """Whether optional input ``i`` is given (ONNX marks a skipped one with ``""``)."""
        return i < len(self.node.input) and self.node.input[i] != ""

    def input_name(self, i: int) -> str:
        return self.node.input[i]

    def _entry(self, i: int) -> Value | np.ndarray:
        if not self.has_input(i):
            raise self.error(f"input {i} is missing")
        name = self.node.input[i]
        try:
            return self._env[name]
        except KeyError:
            raise self.error(f"input {i} {name!r} is not produced by any earlier node, graph "
                             "input or initializer") from None

    def is_const(self, i: int) -> bool:
        return self.has_input(i) and (isinstance(self._entry(i), np.ndarray)
                                      or self._entry(i).is_const)

    def const(self, i: int, what: str = "") -> np.ndarray:
        """The array of constant input ``i``; a computed tensor there is an error, because fc
        needs the value at import (it becomes an attribute or a static shape)."""
        entry = self._entry(i)
        if isinstance(entry, np.ndarray):
            return entry
        if entry.is_const:
            return entry.const
        label = f" ({what})" if what else ""
        raise self.error(f"input {i}{label} {self.node.input[i]!r} must be a constant "
                         "(initializer or foldable subgraph), but it is computed at run time")

    def const_or_none(self, i: int, what: str = "") -> np.ndarray | None:
        """``const(i)``, or ``None`` when the optional input is absent."""
        return self.const(i, what) if self.has_input(i) else None

    def value(self, i: int) -> Value | None:
        """Input ``i`` as an fc ``Value`` (``None`` if absent); a constant becomes a weight."""
        if not self.has_input(i):
            return None
        entry = self._entry(i)
        if isinstance(entry, Value):
            return entry
        name = self.node.input[i]
        v = self._consts.get(name)
        if v is None:
            v = self.graph.add_const(name, entry)
            self._consts[name] = v
        return v

    def const_value(self, array: np.ndarray, name: str) -> Value:
        """A new weight made by a converter (e.g. a reshaped slope), named ``name``."""
        return self.graph.add_const(name, np.asarray(array))

    def shape(self, i: int) -> tuple[int, ...]:
        entry = self._entry(i)
        shape = entry.shape
        if shape is None:
            raise self.error(f"input {i} {self.node.input[i]!r} has no known shape")
        return tuple(shape)

    def dtype(self, i: int) -> str:
        entry = self._entry(i)
        return entry.dtype.name if isinstance(entry, np.ndarray) else str(entry.dtype)

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    # -- outputs --------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return len(self.node.output)

    def output_used(self, i: int) -> bool:
        """Whether ONNX output ``i`` is consumed by a later node or is a graph output."""
        return i < len(self.node.output) and self.node.output[i] != "" \
            and self.node.output[i] in self._used

    def require_unused_outputs(self, first: int, why: str) -> None:
        """Raise if any output from ``first`` on is used (fc has no equivalent for them)."""
        for i in range(first, len(self.node.output)):
            if self.output_used(i):
                raise self.error(f"output {i} {self.node.output[i]!r} is used, but {why}")

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        suffix: str = "",
        final: bool = True,
        num_outputs: int = 1,
    ) -> Node:
        """Emit an fc node for this ONNX node.

        ``final`` nodes produce the ONNX outputs, so their values take the ONNX tensor names;
        helper nodes of a multi-node translation (``final=False``) get ``<name>_<suffix>``.
        Schema errors come back as one line naming the file and the ONNX node.
        """
        node_name = f"{self.name}_{suffix}" if suffix else self.name
        outputs = None
        if final:
            names = [self.node.output[i] if i < len(self.node.output) and self.node.output[i]
                     else f"{node_name}_out{i}" for i in range(num_outputs)]
            outputs = [Value(self.graph.reserve(n)) for n in names]
        try:
            return self.graph.add_node(op_type, inputs, attrs, name=node_name,
                                       num_outputs=num_outputs, outputs=outputs,
                                       provenance=[self.name])
        except ImportError_:
            raise
        except FcError as e:  # the schema's message already names the node
            raise ImportError_(f"{self._source}: {e}") from None
