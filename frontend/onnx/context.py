"""What a converter sees of the import: one ONNX node, its opset, its inputs (fc ``Value``s or
constant arrays), its attributes typed by their ONNX type (``ctx.attrs``) and a way to emit fc
nodes.

The importer keeps one environment, ONNX tensor name -> ``Value`` (a graph input or an fc node
output) or ``np.ndarray`` (an initializer or a folded constant). A constant becomes a graph
weight (``graph.add_const``, named after the ONNX tensor) only when a converter asks for it as
a ``Value``; constants consumed only by folding, or turned into attributes, never reach the
graph. Every node a converter emits carries the ONNX node name as its provenance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fc.errors import ImportError_
from fc.frontend._context import ConvertContextBase
from fc.frontend.attrs import LiteralAttrs
from fc.ir.core import Graph, Value
from fc.limits import Budget, check_bytes, nbytes_of

__all__ = ["ConvertContext", "OnnxAttrs", "onnx_dtype_name", "tensor_dtype", "tensor_to_array",
           "Env"]

Env = dict[str, "Value | np.ndarray"]


def onnx_dtype_name(elem_type: int, where: str = "") -> str:
    """numpy dtype name of an ONNX ``TensorProto`` element type (``1`` -> ``"float32"``)."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise ImportError_(f"{where}: ONNX element type {name} has no numpy dtype") from None


class OnnxAttrs(LiteralAttrs):
    """An ONNX node's attributes, typed by their ``AttributeProto`` type: ``ints`` wants
    INTS, ``int`` INT, ``float`` FLOAT (or INT), ``str`` STRING (UTF-8), ``tensor`` TENSOR
    (decoded on request, its data checked against its dims)."""

    def __init__(self, node: onnx.NodeProto, where: str):
        values: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for a in node.attribute:
            kinds[a.name] = _type_name(a.type)
            try:  # the proto's field of its declared type (STRING stays bytes until read)
                values[a.name] = helper.get_attribute_value(a)
            except Exception:  # an UNDEFINED or unknown type: present, but of no kind
                values[a.name] = _Undecodable()
        super().__init__(values, where, kinds=kinds)

    def _as_tensor(self, name: str) -> np.ndarray:
        value = self.values[name]
        if not isinstance(value, onnx.TensorProto):
            raise self._wrong(name)
        return tensor_to_array(value, f"{self.where}: attribute {name!r}")

    def proto(self, name: str) -> Any:
        """The decoded proto field as it is (a ``TensorProto`` stays one), ``None`` if
        absent: for ops that dispatch on which attribute is present (Constant)."""
        return self.values.get(name)


class _Undecodable:
    def __repr__(self) -> str:
        return "<undecodable>"


def _type_name(t: int) -> str:
    try:
        return onnx.AttributeProto.AttributeType.Name(t)
    except ValueError:
        return f"type {t}"


def tensor_dtype(t: onnx.TensorProto, where: str) -> np.dtype:
    """The numpy dtype of a tensor fc can hold (bool, integers, floats); others are refused."""
    dtype = np.dtype(onnx_dtype_name(t.data_type, where))
    if dtype.kind not in "biuf":
        name = onnx.TensorProto.DataType.Name(t.data_type)
        raise ImportError_(f"{where}: element type {name} is not supported (fc's tensors are "
                           "bool, integer or float)")
    return dtype


def tensor_to_array(t: onnx.TensorProto, where: str, budget: Budget | None = None) -> np.ndarray:
    """``numpy_helper.to_array``, refusing first what fc cannot hold (an unknown or
    non-numeric element type, negative dims, a tensor above ``fc.limits``), and with the
    failures of a malformed tensor (data that does not fit its dims) as one line."""
    where = f"{where} {t.name!r}" if t.name else where
    dtype = tensor_dtype(t, where)
    if any(d < 0 for d in t.dims):
        raise ImportError_(f"{where}: negative dims {list(t.dims)}")
    nbytes = nbytes_of(t.dims, dtype)
    if budget is not None:
        budget.add(nbytes, where)
    else:
        check_bytes(nbytes, where)
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # too little raw data, data of another length than the dims, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ImportError_(f"{where}: cannot be decoded ({type(e).__name__}: {first})") from None
    if arr.shape != tuple(t.dims):
        raise ImportError_(f"{where}: holds {arr.size} values for dims {list(t.dims)}")
    return arr


class ConvertContext(ConvertContextBase):
    """One ONNX node being converted (or folded) into ``graph``."""

    CONST_KIND = "a constant (initializer or foldable subgraph)"

    def __init__(
        self,
        node: onnx.NodeProto,
        *,
        name: str,
        opset: int,
        graph: Graph | None,
        env: Env,
        consts: dict[str, Value],
        used: set[str],
        source: str,
        checking: bool = False,
    ):
        # ``name``: the ONNX node name, generated as ``<OpType>_<index>`` for unnamed nodes
        super().__init__(name=name, op=node.op_type, graph=graph, consts=consts, source=source,
                         checking=checking)
        self.node = node
        self.opset = opset
        self._env = env
        self._used = used
        self.attrs = OnnxAttrs(node, self.where)

    @property
    def op_type(self) -> str:
        return self.op

    @property
    def where(self) -> str:
        return f"{self._source}: node {self.name!r} ({self.op_type}, opset {self.opset})"

    # -- inputs ---------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        """Whether optional input ``i`` is given (ONNX marks a skipped one with ``""``)."""
        return i < len(self.node.input) and self.node.input[i] != ""

    def input_name(self, i: int) -> str:
        return self.node.input[i]

    def _lookup(self, i: int) -> Value | np.ndarray | None:
        return self._env.get(self.node.input[i])

    def _missing(self, i: int) -> ImportError_:
        return self.error(f"input {i} {self.node.input[i]!r} is not produced by any earlier "
                          "node, graph input or initializer")

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

    def outputs_used_reason(self, first: int, what: str) -> str | None:
        """A check's refusal when an output from ``first`` on is used (fc produces only the
        ones before it): ``"<what> used"``, else ``None``."""
        if any(self.output_used(i) for i in range(first, len(self.node.output))):
            return f"{what} used"
        return None

    def _helper_name(self, suffix: str) -> str:
        return f"{self.name}_{suffix}" if suffix else self.name

    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        """The ONNX output tensor names (a generated one where ONNX leaves it empty)."""
        return [self.node.output[i] if i < len(self.node.output) and self.node.output[i]
                else f"{node_name}_out{i}" for i in range(num_outputs)]
