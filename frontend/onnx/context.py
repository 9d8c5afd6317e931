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

from fc.errors import ImportError_
from fc.frontend._context import ConvertContextBase
from fc.ir.core import Graph, Value

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


class ConvertContext(ConvertContextBase):
    """One ONNX node being converted (or folded) into ``graph``."""

    CONST_KIND = "a constant (initializer or foldable subgraph)"

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
        # ``name``: the ONNX node name, generated as ``<OpType>_<index>`` for unnamed nodes
        super().__init__(name=name, graph=graph, consts=consts, source=source)
        self.node = node
        self.op_type = node.op_type
        self.opset = opset
        self._env = env
        self._used = used
        self._attrs = {a.name: _attr_value(a) for a in node.attribute}

    @property
    def where(self) -> str:
        return f"{self._source}: node {self.name!r} ({self.op_type}, opset {self.opset})"

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

    def _lookup(self, i: int) -> Value | np.ndarray:
        name = self.node.input[i]
        try:
            return self._env[name]
        except KeyError:
            raise self.error(f"input {i} {name!r} is not produced by any earlier node, graph "
                             "input or initializer") from None

    def _weight_key(self, i: int) -> tuple[str, str]:
        return self.node.input[i], self.node.input[i]

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

    def _helper_name(self, suffix: str) -> str:
        return f"{self.name}_{suffix}" if suffix else self.name

    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        """The ONNX output tensor names (a generated one where ONNX leaves it empty)."""
        return [self.node.output[i] if i < len(self.node.output) and self.node.output[i]
                else f"{node_name}_out{i}" for i in range(num_outputs)]
