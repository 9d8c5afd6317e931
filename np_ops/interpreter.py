"""The golden executor: an interpreter over an environment dict of numpy arrays.

``run(graph, inputs)`` evaluates nodes in order; each value is freed after its last use
(unless ``intermediate=True``, which returns every tensor, for per-layer reports). A kernel
failure is re-raised as ``ExecutionError`` naming the node and op. The graph's stored shapes
are not used, so a graph compiled at batch 1 runs at any batch size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fc.errors import ExecutionError, FcError
from fc.ir.core import Graph
from fc.np_ops.registry import get_kernel

__all__ = ["run"]


def _check_inputs(graph: Graph, inputs: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(inputs, np.ndarray):
        if len(graph.inputs) != 1:
            raise ExecutionError(f"graph has {len(graph.inputs)} inputs "
                                 f"{[v.name for v in graph.inputs]}; pass a dict")
        inputs = {graph.inputs[0].name: inputs}
    missing = [v.name for v in graph.inputs if v.name not in inputs]
    extra = sorted(set(inputs) - {v.name for v in graph.inputs})
    if missing or extra:
        raise ExecutionError(f"inputs: missing {missing}, unexpected {extra}; graph inputs are "
                             f"{[v.name for v in graph.inputs]}")
    env = {}
    for v in graph.inputs:
        arr = np.asarray(inputs[v.name])
        if arr.dtype.name != v.dtype:
            raise ExecutionError(f"input {v.name!r}: dtype {arr.dtype.name}, graph expects {v.dtype}")
        if v.shape is not None and (arr.ndim != len(v.shape) or arr.shape[1:] != v.shape[1:]):
            raise ExecutionError(f"input {v.name!r}: shape {list(arr.shape)}, graph expects "
                                 f"{list(v.shape)} (only the batch dim may differ)")
        env[v.name] = arr
    return env


def run(graph: Graph, inputs: Mapping[str, Any] | np.ndarray, *, intermediate: bool = False
        ) -> dict[str, np.ndarray]:
    """Execute ``graph``; return its outputs by name (every tensor with ``intermediate``)."""
    env: dict[str, np.ndarray] = _check_inputs(graph, inputs)
    for name, v in graph.initializers.items():
        env[name] = v.const
    # Remaining-use counts, so a tensor is dropped right after its last consumer ran.
    keep = {v.name for v in graph.outputs}
    remaining: dict[str, int] = {}
    if not intermediate:
        for node in graph:
            for v in node.inputs:
                if v is not None:
                    remaining[v.name] = remaining.get(v.name, 0) + 1

    for node in graph:
        args = [None if v is None else env[v.name] for v in node.inputs]
        while args and args[-1] is None:
            args.pop()
        try:
            result = get_kernel(node.op_type)(*args, **node.attrs)
        except FcError as e:
            raise ExecutionError(f"node {node.name!r} ({node.op_type}): {e}") from e
        except Exception as e:  # a numpy error inside a kernel: name the node
            shapes = [None if a is None else list(np.shape(a)) for a in args]
            raise ExecutionError(f"node {node.name!r} ({node.op_type}) failed on inputs {shapes}: "
                                 f"{type(e).__name__}: {e}") from e
        results = result if isinstance(result, list | tuple) else (result,)
        if len(results) != len(node.outputs):
            raise ExecutionError(f"node {node.name!r} ({node.op_type}): kernel returned "
                                 f"{len(results)} outputs, node has {len(node.outputs)}")
        for v, r in zip(node.outputs, results):
            env[v.name] = r
        if not intermediate:
            for v in node.inputs:
                if v is None or v.const is not None:
                    continue
                remaining[v.name] -= 1
                if remaining[v.name] == 0 and v.name not in keep:
                    del env[v.name]
    if intermediate:
        return env
    return {v.name: env[v.name] for v in graph.outputs}
