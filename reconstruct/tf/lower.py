"""Walk an IR graph and build its TensorFlow computation, node by node, through the lowering
table. Used inside a ``tf.function`` trace, for the frozen .pb and the trainable form alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fc.errors import FcError, ReconstructError
from fc.ir.core import Graph
from fc.ir.layout import to_source_perm
from fc.reconstruct.tf.context import LowerContext, Lt, WeightSource, identity, tf_name
from fc.reconstruct.tf.registry import LOWERINGS

__all__ = ["lower_graph", "check_lowerable", "boundary_perm", "Overrides"]

Overrides = Mapping[str, Callable[..., Any]]


def boundary_perm(graph: Graph, name: str, rank: int) -> tuple[int, ...]:
    """How a graph input/output is arranged at the TF model's boundary: its source layout
    (NHWC for a Keras model), else the IR's own order."""
    layout = graph.layouts.get(name)
    return to_source_perm(layout) if layout else identity(rank)


def check_lowerable(graph: Graph, overrides: Overrides | None = None) -> None:
    """Every op of ``graph`` has a lowering; otherwise one error listing all that do not."""
    missing: dict[str, list[str]] = {}
    for node in graph:
        if not (overrides and node.op_type in overrides) and node.op_type not in LOWERINGS:
            missing.setdefault(node.op_type, []).append(node.name)
    if missing:
        listed = "; ".join(f"{op} x{len(names)} ({', '.join(repr(n) for n in names[:3])})"
                           for op, names in sorted(missing.items()))
        raise ReconstructError(f"graph {graph.name!r}: {len(missing)} op type(s) have no "
                               f"TensorFlow lowering: {listed}")


def lower_graph(tf: Any, graph: Graph, inputs: Mapping[str, Any], weights: WeightSource, *,
                overrides: Overrides | None = None, collect: bool = False
                ) -> tuple[list[Any], dict[str, Any]]:
    """The TF tensors of ``graph``'s outputs, arranged as at the boundary, from ``inputs``
    (graph input name -> tensor, in the boundary arrangement).

    With ``collect`` the second result maps every IR value the graph computes to its tensor
    in the IR's own axis order (for per-layer comparison); otherwise it is empty.
    """
    env: dict[str, Lt] = {}
    for v in graph.inputs:
        env[v.name] = Lt(inputs[v.name], boundary_perm(graph, v.name, len(v.shape)),
                         shape=v.shape, dtype=v.dtype, name=v.name)
    for name, v in graph.initializers.items():
        env[name] = Lt(None, identity(v.const.ndim), shape=v.const.shape, dtype=v.dtype,
                       name=name, const=v.const)
    collected: dict[str, Any] = {}
    for node in graph:
        fn = (overrides or {}).get(node.op_type) or LOWERINGS.get(node.op_type)
        args = [None if v is None else env[v.name] for v in node.inputs]
        while args and args[-1] is None:
            args.pop()
        ctx = LowerContext(tf, node, weights)
        try:
            with tf.name_scope(tf_name(node.name)):
                result = fn(ctx, *args, **node.attrs)
        except ReconstructError:
            raise
        except FcError as e:
            raise ctx.error(str(e)) from None
        except Exception as e:  # a TF error while building: name the node and its inputs
            shapes = [None if a is None else list(a.shape) for a in args]
            raise ctx.error(f"lowering failed on IR inputs {shapes}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e
        results = list(result) if isinstance(result, list | tuple) else [result]
        if len(results) != len(node.outputs):
            raise ctx.error(f"the lowering returned {len(results)} outputs, the node has "
                            f"{len(node.outputs)}")
        for v, lt in zip(node.outputs, results):
            env[v.name] = lt
            if collect:
                collected[v.name] = ctx.ir(lt)
    boundary = LowerContext(tf, None, weights)
    outputs = [boundary.arrange(env[v.name], boundary_perm(graph, v.name, len(v.shape)))
               for v in graph.outputs]
    return outputs, collected
