"""What a TensorFlow converter sees: one GraphDef node, its inputs (fc ``Value``s or constant
arrays, by TF tensor name ``"node:0"``), its attributes decoded from ``AttrValue``s, and a
view of the source graph for the patterns that recognise a Keras layer from the ops it was
traced into (``producer``, ``const_of``, ``only_reader``).

Values of the IR mirror TF's tensors exactly, channels-last included: a converter of a
layout-sensitive op (Conv2D, pools, FusedBatchNorm, resizes) wraps its NCHW fc node in
Transposes (:func:`nchw_layer`), and ``fc.passes.layout`` removes them
afterwards. So shapes a converter reads are TF's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from fc.errors import ImportError_
from fc.frontend._context import ConvertContextBase
from fc.frontend.attrs import LiteralAttrs
from fc.frontend.tf.load import tensor_name
from fc.ir.core import Graph, Value
from fc.limits import check_tensor

__all__ = ["TFContext", "decode_attrs", "const_array", "GraphView", "nchw_layer",
           "NHWC_TO_NCHW", "NCHW_TO_NHWC"]

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)

Env = dict[str, "Value | np.ndarray"]


def const_array(tf: Any, proto: Any, where: str) -> np.ndarray:
    """The value of a ``TensorProto``, judged by its declared shape before TF allocates it
    (one ``float_val`` fills any declared shape: a few bytes can ask for gigabytes), and
    whatever TF cannot decode is one line naming ``where``."""
    try:
        dtype = np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype)
    except (TypeError, KeyError, ValueError):
        raise ImportError_(f"{where}: constant of TF element type {proto.dtype} has no numpy "
                           "dtype") from None
    dims = [int(d.size) for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise ImportError_(f"{where}: constant of unknown shape {dims}")
    check_tensor(dims, dtype, f"{where}: its value")
    try:
        return tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 - TF's decoder raises anything on a bad proto
        text = " ".join(str(e).split())[:200]
        raise ImportError_(f"{where}: its value cannot be decoded ({type(e).__name__}: "
                           f"{text})") from None


#: TF DataType enum -> its name (numpy's where it has one); numpy's ``dtype.name`` is slow
#: enough to show in a conversion that decodes thousands of ``T`` attributes
_TYPE_NAMES: dict[int, str] = {}


def _type_name(tf: Any, v: int) -> str:
    try:
        return np.dtype(tf.dtypes.as_dtype(v).as_numpy_dtype).name
    except (TypeError, KeyError, ValueError):  # resource, variant, ...: no numpy dtype
        try:
            return tf.dtypes.as_dtype(v).name
        except (TypeError, KeyError, ValueError):  # not a TF type at all
            return f"<unknown TF type {v}>"


def _decode_one(tf: Any, kind: str, v: Any, where: str = "attribute") -> Any:
    if kind == "s":
        return bytes(v)
    if kind in ("i", "f", "b"):
        return v
    if kind == "type":
        name = _TYPE_NAMES.get(v)
        if name is None:
            name = _TYPE_NAMES[v] = _type_name(tf, v)
        return name
    if kind == "shape":
        return None if v.unknown_rank else [d.size for d in v.dim]
    if kind == "tensor":
        return const_array(tf, v, where)
    if kind == "func":
        return v.name
    return None


_LIST_KINDS = ("s", "i", "f", "b", "type", "shape", "tensor", "func")
_KIND_NAMES = {"s": "string", "i": "int", "f": "float", "b": "bool", "type": "type",
               "shape": "shape", "tensor": "tensor", "func": "func"}


def decode_attrs(tf: Any, node: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A NodeDef's attributes as Python values, and TF's kind of each (for messages)."""
    values, kinds = {}, {}
    for name, attr in node.attr.items():
        where = f"node {node.name!r} ({node.op}): attribute {name!r}"
        which = attr.WhichOneof("value")
        if which == "list":
            lst = attr.list
            kind = next((k for k in _LIST_KINDS if len(getattr(lst, k))), "i")
            values[name] = [_decode_one(tf, kind, x, where) for x in getattr(lst, kind)]
            kinds[name] = f"list({_KIND_NAMES[kind]})"
        elif which is not None:
            values[name] = _decode_one(tf, which, getattr(attr, which), where)
            kinds[name] = _KIND_NAMES.get(which, which)
    return values, kinds


class GraphView:
    """The source GraphDef around a node: producers, readers, and the constants known."""

    def __init__(self, nodes: Mapping[str, Any], readers: Mapping[str, list[str]], env: Env,
                 read_tensors: set[str] | None = None,
                 weight_names: Mapping[str, str] | None = None):
        self.nodes = nodes
        #: captured-variable Placeholder -> the variable's name
        self.weight_names = dict(weight_names or {})
        #: node name -> the nodes reading one of its outputs
        self.readers = readers
        #: every tensor some kept node reads (``"node:1"``), and the graph's outputs
        self.read_tensors = read_tensors or set()
        self.env = env

    def producer(self, tensor: str) -> Any | None:
        """The NodeDef producing ``tensor``, looking through Identity-like nodes."""
        node = self.nodes.get(tensor_name(tensor).split(":")[0])
        while node is not None and node.op in ("Identity", "StopGradient", "ReadVariableOp") \
                and node.input:
            node = self.nodes.get(tensor_name(node.input[0]).split(":")[0])
        return node

    def weight_name(self, tensor: str) -> str:
        """The name a weight made from constant ``tensor`` takes: its variable's (Keras'
        ``"conv1/bias"``), found through the reshapes Keras puts in between, else the name of
        the node producing it."""
        node = self.producer(tensor)
        first = node
        while node is not None:
            if node.name in self.weight_names:
                return self.weight_names[node.name]
            if node.op not in ("Reshape", "Squeeze", "ExpandDims", "Cast") or not node.input:
                break
            node = self.producer(node.input[0])
        name = first.name if first is not None else tensor_name(tensor).split(":")[0]
        return name if tensor_name(tensor).endswith(":0") else tensor.replace(":", "_")

    def const_of(self, tensor: str) -> np.ndarray | None:
        """``tensor``'s value if it is a constant: folded at import, or a Const node not
        reached yet (a pattern may look ahead of the conversion)."""
        entry = self.env.get(tensor_name(tensor))
        if isinstance(entry, np.ndarray):
            return entry
        if isinstance(entry, Value) and entry.is_const:
            return entry.const
        node = self.nodes.get(tensor_name(tensor).split(":")[0])
        if entry is None and node is not None and node.op == "Const":
            import tensorflow as tf

            return const_array(tf, node.attr["value"].tensor, f"node {node.name!r} (Const)")
        return None

    def only_reader(self, node_name: str) -> str | None:
        """The one node reading ``node_name``'s outputs, if exactly one does."""
        readers = self.readers.get(node_name, [])
        return readers[0] if len(set(readers)) == 1 else None

    @staticmethod
    def data_inputs(node: Any) -> list[str]:
        return [tensor_name(i) for i in node.input if not i.startswith("^")]


class TFContext(ConvertContextBase):
    """One GraphDef node being converted into ``graph``."""

    CONST_KIND = "a constant (a Const node or a subgraph of constants)"

    def __init__(self, node: Any, *, tf: Any, graph: Graph | None, view: GraphView,
                 consts: dict[Hashable, Value], source: str, checking: bool = False,
                 decoded: tuple[dict[str, Any], dict[str, str]] | None = None):
        """``decoded``: ``decode_attrs(tf, node)`` if the caller has it already."""
        super().__init__(name=node.name, op=node.op, graph=graph, consts=consts, source=source,
                         checking=checking)
        self.node = node
        self.tf = tf
        self.view = view
        self._inputs = GraphView.data_inputs(node)
        values, kinds = decoded or decode_attrs(tf, node)
        self.attrs = LiteralAttrs(values, self.where, kinds=kinds)

    @property
    def where(self) -> str:
        return f"{self._source}: node {self.name!r} ({self.op})"

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def input_name(self, i: int) -> str:
        return self._inputs[i]

    def _lookup(self, i: int) -> Value | np.ndarray | None:
        return self.view.env.get(self._inputs[i])

    def _missing(self, i: int) -> ImportError_:
        return self.error(f"input {i} {self._inputs[i]!r} is not produced by any earlier node")

    def weight_name(self, i: int) -> str:
        """The name a weight made from constant input ``i`` takes (its Const node's)."""
        return self._weight_key(i)[1]

    def _weight_key(self, i: int) -> tuple[Hashable, str]:
        name = self._inputs[i]
        return name, self.view.weight_name(name)

    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        return [self.name if k == 0 else f"{self.name}:{k}" for k in range(num_outputs)]

    # -- the source graph ---------------------------------------------------------------------
    def producer(self, i: int) -> Any | None:
        """The NodeDef producing input ``i`` (through Identity-like nodes)."""
        return self.view.producer(self._inputs[i]) if self.has_input(i) else None

    def data_format(self) -> str:
        return self.attrs.str("data_format", "NHWC")


def nchw_layer(ctx: ConvertContextBase, op: str, x: Value, others: list[Value | None],
               attrs: dict[str, Any], fmt: str = "NHWC") -> Value:
    """fc's NCHW ``op`` on the TF tensor ``x`` in data format ``fmt``. For NHWC it sits
    between two Transposes that ``fc.passes.layout`` later cancels against their neighbours';
    the fc node takes the TF node's name and output name, the Transposes are helpers."""
    if fmt == "NCHW":
        return ctx.add_node(op, [x, *others], attrs).output
    if fmt != "NHWC":
        raise ctx.error(f"data_format {fmt!r} is not NHWC or NCHW")
    t = ctx.add_node("Transpose", [x], {"perm": NHWC_TO_NCHW}, suffix="to_nchw", final=False)
    y = ctx.add_node(op, [t.output, *others], attrs)
    return ctx.add_node("Transpose", [y.output], {"perm": NCHW_TO_NHWC}, suffix="to_nhwc",
                        final=False).output
