"""The IR verifier: run after every load and, in tests, after every pass.

Checks: nodes in topological order, one producer per value, unique names, every input
defined, every op known, attributes complete and typed, links consistent, stored shapes and
dtypes equal to the inferred ones, weights matching their declared shape and dtype.
"""

from __future__ import annotations

from fc.errors import FcError, IRError
from fc.ir.core import Graph, Value
from fc.ir.schema import get_schema, has_schema, infer_types

__all__ = ["verify"]


def verify(graph: Graph, *, check_shapes: bool = True) -> None:
    """Raise ``IRError`` naming the first node/field that breaks an invariant."""
    defined: dict[str, Value] = {}

    def define(v: Value, where: str) -> None:
        if v.name in defined:
            raise IRError(f"{where}: tensor {v.name!r} is produced more than once")
        defined[v.name] = v

    for v in graph.inputs:
        if v.shape is None or v.dtype is None:
            raise IRError(f"graph input {v.name!r} has no shape/dtype")
        define(v, f"graph input {v.name!r}")
    for name, v in graph.initializers.items():
        if v.const is None or name != v.name:
            raise IRError(f"weight {name!r} has no array or a mismatched name")
        if tuple(v.const.shape) != v.shape or v.const.dtype.name != v.dtype:
            raise IRError(f"weight {name!r}: array is {v.const.dtype.name}{list(v.const.shape)}, "
                          f"declared {v.dtype}{list(v.shape or ())}")
        define(v, f"weight {name!r}")

    unknown: dict[str, list[str]] = {}
    node_names: set[str] = set()
    for node in graph:
        where = f"node {node.name!r} ({node.op_type})"
        if node.name in node_names:
            raise IRError(f"{where}: node name used twice")
        node_names.add(node.name)
        if node.graph is not graph:
            raise IRError(f"{where}: node is not linked to this graph")
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            if defined.get(v.name) is not v:
                raise IRError(f"{where}: input {i} {v.name!r} is not defined before the node "
                              "(dangling input, or nodes out of topological order)")
            if (node, i) not in v._uses:
                raise IRError(f"{where}: input {v.name!r} does not list the node as a user")
        for v in node.outputs:
            if v.producer is not node:
                raise IRError(f"{where}: output {v.name!r} names another producer")
            define(v, where)
        if not has_schema(node.op_type):
            unknown.setdefault(node.op_type, []).append(node.name)
            continue
        schema = get_schema(node.op_type)
        try:
            schema.check_arity(len(node.inputs), len(node.outputs), where)
            for i, spec in enumerate(schema.inputs):
                if not spec.optional and not spec.variadic and (
                        i >= len(node.inputs) or node.inputs[i] is None):
                    raise IRError(f"{where}: required input {spec.name!r} is missing")
            complete = schema.complete(node.attrs, where)
        except FcError as e:
            raise IRError(str(e)) from None
        if complete != node.attrs or list(complete) != list(node.attrs):
            missing = [k for k in schema.attrs if k not in node.attrs]
            raise IRError(f"{where}: attributes incomplete or not canonical "
                          f"(missing {missing})" if missing else
                          f"{where}: attributes not in canonical form: {node.attrs}")
        if check_shapes:
            _check_types(node, where)
    if unknown:
        listed = "; ".join(f"{op} x{len(ns)} ({', '.join(repr(n) for n in ns[:3])})"
                           for op, ns in sorted(unknown.items()))
        raise IRError(f"unknown op(s): {listed}")
    for v in graph.outputs:
        if defined.get(v.name) is not v:
            raise IRError(f"graph output {v.name!r} is not produced by the graph")


def _check_types(node, where: str) -> None:
    try:
        types = infer_types(node)
    except FcError as e:
        raise IRError(str(e)) from None
    for v, t in zip(node.outputs, types):
        if v.shape != t.shape or v.dtype != t.dtype:
            raise IRError(f"{where}: output {v.name!r} is stored as {v.dtype}{list(v.shape or ())}"
                          f" but infers to {t.dtype}{list(t.shape)}")
