"""Write an fc graph (either IR) as an ONNX model.

The IR's ops are ONNX's, so most nodes map one to one; what changes on the way:

* a fused activation (``activation`` / ``act_alpha`` / ``act_beta`` on Conv, ConvTranspose,
  Gemm, Scale, Add) becomes the layer followed by its standalone op
  (``fc.ir.activations.standalone_form``); SiLU is written ``x * Sigmoid(x)`` and Gelu in its
  erf or tanh formula (ONNX has Gelu only from opset 20, which many runtimes lack);
* ``Scale`` (per-channel ``x * scale + B``) becomes ``Mul`` + ``Add`` with the vectors shaped
  ``(C, 1, ..., 1)``;
* constants the IR keeps as attributes go back to the inputs ONNX wants (Reshape's shape,
  Slice's starts/ends/axes/steps, Pad's pads and value, Clip's bounds, Resize's scales or
  sizes, Split's split, (Un)Squeeze's and ReduceSum's axes) as int64/float32 initializers;
* ``Dropout`` (inference) becomes ``Identity``.

What is kept: tensor names (inputs, outputs, weights, intermediates), and each IR node's name
on the ONNX node that writes its output; the nodes an expansion adds are named
``<fc node>/<op>``. Every ONNX node carries ``metadata_props`` ``fc.node`` (the IR node),
``fc.op`` (its IR op) and ``fc.provenance`` (the source-model nodes it came from, comma
separated), and the same provenance in its ``doc_string``; the model's ``metadata_props``
hold the graph's name and its inputs'/outputs' source layouts (``fc.layouts``, JSON), so
the exported fused graph reads beside the source model (Netron shows both). The ONNX model
itself takes and returns the IR's layout (NCHW), as the golden executor's ``fc.np_ops.run``
does; a Keras model's NHWC boundary is only recorded there.

The model is opset 17 (LayerNormalization's first opset), IR version 10.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fc.ir.core import Graph, Node
from fc.ir.schema import get_schema
from fc.reconstruct.onnx.registry import EXPORTERS, ExportError

__all__ = ["OPSET", "IR_VERSION", "Builder", "to_onnx", "export_onnx"]

OPSET = 17
IR_VERSION = 10


def _onnx_dtype(name: str) -> int:
    from onnx import helper

    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(name))
    except (TypeError, KeyError):
        raise ExportError(f"dtype {name!r} has no ONNX type") from None


class Builder:
    """Collects the ONNX nodes and initializers while the IR nodes are exported in order."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names = {v.name for v in graph.values()} | {n.name for n in graph}
        self._node_names: set[str] = set()  # names of the ONNX nodes emitted so far
        self._shapes = {v.name: v.shape for v in graph.values()}
        self._dtypes = {v.name: v.dtype for v in graph.values()}
        #: the IR node being exported and the ONNX names of its outputs
        self.node: Node | None = None
        self.outs: list[str] = []

    # -- names and constants -----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def tmp(self, what: str) -> str:
        """A fresh tensor name for an intermediate of the current node's expansion."""
        return self.fresh(f"{self.node.name}/{what}")

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self._shapes.get(name)

    def dtype(self, name: str) -> str:
        return self._dtypes.get(name) or "float32"

    def const(self, array: Any, what: str, dtype: str | None = None) -> str:
        from onnx import numpy_helper

        arr = np.asarray(array, dtype=dtype) if dtype else np.asarray(array)
        name = self.tmp(what)
        self.initializers.append(numpy_helper.from_array(arr, name))
        self._shapes[name], self._dtypes[name] = arr.shape, arr.dtype.name
        return name

    def ints(self, values: Sequence[int], what: str) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), what)

    def scalar(self, value: float, what: str, like: str) -> str:
        return self.const(np.asarray(value, dtype=self.dtype(like)), what)

    # -- nodes -----------------------------------------------------------------------------
    def emit(self, op_type: str, inputs: Sequence[str | None], out: str | None = None,
             **attrs: Any) -> str:
        """Append one ONNX node; its output is ``out`` (an IR output name) or a fresh name."""
        return self.emit_multi(op_type, inputs, [out or self.tmp(op_type.lower())], **attrs)[0]

    def emit_multi(self, op_type: str, inputs: Sequence[str | None], outs: Sequence[str],
                   **attrs: Any) -> list[str]:
        from onnx import helper

        node = self.node
        writes_ir = any(o in self.outs for o in outs)
        if writes_ir and node.name not in self._node_names:
            name = node.name
        else:
            name = self.fresh(f"{node.name}/{op_type}")
        self._node_names.add(name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        proto = helper.make_node(op_type, [i or "" for i in inputs], list(outs), name=name, **attrs)
        prov = ",".join(node.provenance or [node.name])
        proto.doc_string = f"fc node {node.name!r} ({node.op_type}); provenance: {prov}"
        for k, v in (("fc.node", node.name), ("fc.op", node.op_type), ("fc.provenance", prov)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        self.nodes.append(proto)
        for o, i in zip(outs, inputs[:1] * len(outs)):
            self._dtypes.setdefault(o, self.dtype(i) if i else "float32")
        return list(outs)

    def lower(self, op_type: str, inputs: Sequence[str | None], attrs: dict[str, Any],
              outs: Sequence[str]) -> None:
        """Export IR op ``op_type`` (attributes completed from its schema) into ``outs``."""
        attrs = get_schema(op_type).complete(dict(attrs), f"node {self.node.name!r}")
        saved, self.outs = self.outs, list(outs)
        try:
            EXPORTERS.get(op_type)(self, *inputs, **attrs)
        finally:
            self.outs = saved

    def activation(self, y: str, activation: str, alpha: float, beta: float) -> None:
        """Write ``activation(y)`` into the node's output (the layer wrote ``y``)."""
        from fc.ir.activations import standalone_form

        op, attrs = standalone_form(activation, alpha, beta)
        self.lower(op, [y], attrs, [self.outs[0]])

    def layer_out(self, activation: str) -> str:
        """Where a layer writes: its IR output, or a temporary the activation then reads."""
        return self.tmp("preact") if activation else self.outs[0]


def _value_info(name: str, shape: Sequence[int] | None, dtype: str | None) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, _onnx_dtype(dtype or "float32"),
                                         None if shape is None else list(shape))


def to_onnx(graph: Graph, *, doc: str = "") -> Any:
    """The ``onnx.ModelProto`` of ``graph`` (not checked; ``export_onnx`` checks)."""
    from onnx import helper, numpy_helper

    missing: dict[str, list[str]] = {}
    for n in graph:
        if EXPORTERS.find(n.op_type) is None:
            missing.setdefault(n.op_type, []).append(n.name)
    if missing:
        listed = "; ".join(f"{op} ({len(v)}: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                           for op, v in sorted(missing.items()))
        raise ExportError(f"graph {graph.name!r}: no ONNX export for {listed}")
    b = Builder(graph)
    for n in graph:
        b.node = n
        b.outs = [v.name for v in n.outputs]
        inputs = [None if v is None else v.name for v in n.inputs]
        try:
            EXPORTERS.get(n.op_type)(b, *inputs, **n.attrs)
        except ExportError as e:
            raise ExportError(f"node {n.name!r} ({n.op_type}): {e}") from None
    inits = [numpy_helper.from_array(np.asarray(v.const), name)
             for name, v in graph.initializers.items()]
    g = helper.make_graph(
        b.nodes, graph.name,
        [_value_info(v.name, v.shape, v.dtype) for v in graph.inputs],
        [_value_info(v.name, v.shape, v.dtype) for v in graph.outputs],
        initializer=inits + b.initializers,
    )
    model = helper.make_model(g, producer_name="fc", producer_version="0.1.0",
                              opset_imports=[helper.make_opsetid("", OPSET)], doc_string=doc)
    model.ir_version = IR_VERSION
    meta = {"fc.graph": graph.name, "fc.layouts": json.dumps(graph.layouts, sort_keys=True)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def export_onnx(graph: Graph, path: str | os.PathLike, *, check: bool = True) -> Any:
    """Write ``graph`` as the ONNX model ``path`` (atomically: a failure leaves no file)
    after ``onnx.checker``'s full check; returns the model."""
    import onnx

    from fc.ir.serialize import atomic_write

    model = to_onnx(graph)
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"graph {graph.name!r}: onnx.checker refuses the export: "
                              f"{first}") from None
    data = model.SerializeToString()
    with atomic_write(path, "wb") as f:
        f.write(data)
    return model
