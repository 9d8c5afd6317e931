"""Constant folding at import: a node whose inputs are all constants becomes its value.

A frozen Keras graph computes much of itself from its weights (a batch norm's
``rsqrt(var + eps) * gamma``, the reshapes of every bias), so hundreds of nodes fold. The
common ones fold in numpy (microseconds each, TF's semantics, the dtype of TF's result);
any other op is evaluated by TensorFlow itself on a one-node graph, so folding is exactly
TF's arithmetic whatever the op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fc.errors import FcError, ImportError_
from fc.frontend.tf.context import decode_attrs
from fc.limits import check_tensor

__all__ = ["fold_node", "NUMPY_FOLDERS"]

Arrays = list[np.ndarray]


def _same(fn: Callable[..., Any]) -> Callable[[Any, Arrays], Arrays]:
    """An elementwise numpy function whose result keeps the first input's dtype (TF's binary
    ops take operands of one dtype)."""
    def fold(attrs: Any, xs: Arrays) -> Arrays:
        with np.errstate(all="ignore"):
            return [np.asarray(fn(*xs), dtype=xs[0].dtype)]

    return fold


def _reshape(attrs: Any, xs: Arrays) -> Arrays:
    return [xs[0].reshape([int(d) for d in np.asarray(xs[1]).ravel()])]


def _squeeze(attrs: Any, xs: Arrays) -> Arrays:
    dims = attrs.get("squeeze_dims") or []
    x = xs[0]
    axes = tuple(d % x.ndim for d in dims) if dims else tuple(i for i, d in enumerate(x.shape)
                                                              if d == 1)
    return [np.squeeze(x, axis=axes)]


def _expand_dims(attrs: Any, xs: Arrays) -> Arrays:
    return [np.expand_dims(xs[0], int(np.asarray(xs[1]).ravel()[0]))]


def _concat(attrs: Any, xs: Arrays) -> Arrays:
    return [np.concatenate(xs[:-1], axis=int(xs[-1]))]


def _pack(attrs: Any, xs: Arrays) -> Arrays:
    return [np.stack(xs, axis=int(attrs.get("axis", 0)))]


def _cast(attrs: Any, xs: Arrays) -> Arrays:
    return [xs[0].astype(np.dtype(attrs["DstT"]))]


def _transpose(attrs: Any, xs: Arrays) -> Arrays:
    return [np.ascontiguousarray(np.transpose(xs[0], [int(p) for p in xs[1]]))]


def _rsqrt(attrs: Any, xs: Arrays) -> Arrays:
    x = xs[0]
    with np.errstate(all="ignore"):
        return [np.asarray(np.reciprocal(np.sqrt(x)), dtype=x.dtype)]


def _identity(attrs: Any, xs: Arrays) -> Arrays:
    return [xs[0]]


def _identity_n(attrs: Any, xs: Arrays) -> Arrays:
    return list(xs)


def _reduce(fn: Callable[..., Any]) -> Callable[[Any, Arrays], Arrays]:
    def fold(attrs: Any, xs: Arrays) -> Arrays:
        axes = tuple(int(a) for a in np.asarray(xs[1]).ravel())
        y = fn(xs[0], axis=axes, keepdims=bool(attrs.get("keep_dims", False)))
        return [np.asarray(y, dtype=xs[0].dtype)]

    return fold


NUMPY_FOLDERS: dict[str, Callable[[Any, Arrays], Arrays]] = {
    "Identity": _identity, "StopGradient": _identity, "ReadVariableOp": _identity,
    "IdentityN": _identity_n,
    "Reshape": _reshape, "Squeeze": _squeeze, "ExpandDims": _expand_dims,
    "ConcatV2": _concat, "Pack": _pack, "Cast": _cast, "Transpose": _transpose,
    "AddV2": _same(np.add), "Add": _same(np.add), "Sub": _same(np.subtract),
    "Mul": _same(np.multiply), "Neg": _same(np.negative), "Maximum": _same(np.maximum),
    "Minimum": _same(np.minimum), "Square": _same(np.square), "Sqrt": _same(np.sqrt),
    "Rsqrt": _rsqrt, "Reciprocal": _same(np.reciprocal), "Inv": _same(np.reciprocal),
    "Prod": _reduce(np.prod), "Sum": _reduce(np.sum),
}


def _real_div(attrs: Any, xs: Arrays) -> Arrays | None:
    """Float division in numpy; TF's integer RealDiv is left to TF (``None``)."""
    return _same(np.true_divide)(attrs, xs) if xs[0].dtype.kind == "f" else None


NUMPY_FOLDERS["RealDiv"] = _real_div  # type: ignore[assignment]


_BROADCASTING = frozenset({"AddV2", "Add", "Sub", "Mul", "Maximum", "Minimum", "RealDiv"})


def fold_node(tf: Any, node: Any, inputs: Sequence[np.ndarray], where: str) -> Arrays:
    """The outputs of ``node`` evaluated on constant ``inputs``."""
    fn = NUMPY_FOLDERS.get(node.op)
    if node.op in _BROADCASTING and len(inputs) == 2:  # a broadcast can multiply sizes
        try:
            shape = np.broadcast_shapes(*(np.shape(x) for x in inputs))
        except ValueError as e:
            raise ImportError_(f"{where}: constant folding failed: {e}") from None
        check_tensor(shape, np.result_type(*inputs), f"{where}: its folded output")
    if fn is not None:
        attrs, _ = decode_attrs(tf, node)
        try:
            out = fn(attrs, list(inputs))
        except (ValueError, IndexError, TypeError) as e:
            raise ImportError_(f"{where}: constant folding failed: {type(e).__name__}: {e}") \
                from None
        if out is not None:
            return out
    return _fold_with_tf(tf, node, inputs, where)


def _fold_with_tf(tf: Any, node: Any, inputs: Sequence[np.ndarray], where: str) -> Arrays:
    """Run ``node`` alone in TensorFlow, its inputs fed as constants."""
    gd = tf.compat.v1.GraphDef()
    for i, arr in enumerate(inputs):
        c = gd.node.add()
        c.name, c.op = f"fc_input_{i}", "Const"
        c.attr["dtype"].type = tf.as_dtype(arr.dtype).as_datatype_enum
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr))
    n = gd.node.add()
    n.CopyFrom(node)
    del n.input[:]
    n.input.extend(f"fc_input_{i}" for i in range(len(inputs)))
    try:
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
        g = wrapped.graph
        op = g.get_operation_by_name(node.name)
        for t in op.outputs:  # TF's shape inference knows them from the constant inputs
            if t.shape.is_fully_defined():
                check_tensor(t.shape.as_list(), t.dtype.as_numpy_dtype,
                             f"{where}: its folded output")
        fn = wrapped.prune([], list(op.outputs))
        return [np.asarray(t) for t in fn()]
    except FcError:
        raise
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ImportError_(f"{where}: constant folding failed in TensorFlow: "
                           f"{type(e).__name__}: {text}") from None
