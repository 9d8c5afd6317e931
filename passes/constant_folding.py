"""Constant folding: evaluate nodes whose inputs are all constants, once, at compile time.

A node whose every (present) input is a weight is run through its numpy kernel (the same
golden kernel the executor uses, with the node's complete attributes) and its outputs become
new weights. Each new weight takes over the name of the output it replaces, so graph outputs
and debugging names stay the same. Nodes are visited in graph order, so a chain of constant
nodes folds in one sweep. Weights nobody uses any more are dropped at the end.

Folding is skipped when the result would be much larger than its inputs (more than
``MAX_GROWTH`` times their bytes *and* more than ``MAX_BYTES``): e.g. a Resize, Concat of a
weight with itself or a Pad of a small constant to a large map. Storing such a result would
bloat the parameter file the hardware loads, while computing it on the device from the small
inputs is cheap.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from fc.errors import PassError
from fc.ir.core import Graph, Node, Value
from fc.np_ops.registry import get_kernel, has_kernel
from fc.passes.infra import Pass

__all__ = ["FoldConstants", "MAX_GROWTH", "MAX_BYTES"]

log = logging.getLogger("fc.passes")

MAX_GROWTH = 2.0
MAX_BYTES = 1 << 20


def _nbytes(v: Value) -> int | None:
    if v.shape is None or v.dtype is None:
        return None
    return math.prod(v.shape) * np.dtype(v.dtype).itemsize


class FoldConstants(Pass):
    """Fold all-constant nodes; count = nodes folded + unused weights removed."""

    name = "fold_constants"

    def __init__(self, max_growth: float = MAX_GROWTH, max_bytes: int = MAX_BYTES):
        self.max_growth, self.max_bytes = max_growth, max_bytes
        self.refusals: list[tuple[str, str]] = []

    def _too_big(self, out_bytes: int, in_bytes: int) -> bool:
        return out_bytes > self.max_growth * in_bytes and out_bytes > self.max_bytes

    def _refuse(self, node: Node, reason: str) -> None:
        self.refusals.append((node.name, reason))
        log.debug("%s: refused at node %r: %s", self.name, node.name, reason)

    def run(self, graph: Graph) -> int:
        self.refusals = []
        folded = 0
        for node in graph.nodes:
            present = [v for v in node.inputs if v is not None]
            if not present or any(v.const is None for v in present):
                continue
            if not has_kernel(node.op_type):
                self._refuse(node, f"no numpy kernel for {node.op_type}")
                continue
            in_bytes = sum(v.const.nbytes for v in present)
            sizes = [_nbytes(v) for v in node.outputs]
            if None not in sizes and self._too_big(sum(sizes), in_bytes):
                self._refuse(node, f"result of {sum(sizes)} bytes from {in_bytes} bytes of inputs "
                                   "would bloat the weights")
                continue
            results = self._evaluate(node)
            out_bytes = sum(r.nbytes for r in results)
            if None in sizes and self._too_big(out_bytes, in_bytes):
                self._refuse(node, f"result of {out_bytes} bytes from {in_bytes} bytes of inputs "
                                   "would bloat the weights")
                continue
            for v, arr in zip(node.outputs, results):
                # The new weight takes the output's name (already reserved in the graph,
                # and free once the node is erased below), so graph outputs keep theirs.
                const = Value(v.name, const=arr)
                v.replace_all_uses_with(const, graph)
                graph.initializers[const.name] = const
            graph.erase_node(node)
            folded += 1
        return folded + graph.remove_unused_consts()

    def _evaluate(self, node: Node) -> list[np.ndarray]:
        args = [None if v is None else v.const for v in node.inputs]
        while args and args[-1] is None:
            args.pop()
        where = f"node {node.name!r} ({node.op_type})"
        try:
            result = get_kernel(node.op_type)(*args, **node.attrs)
        except Exception as e:  # the graph would fail at run time too: say where
            raise PassError(f"{where}: constant folding failed: {type(e).__name__}: {e}") from e
        results = list(result) if isinstance(result, list | tuple) else [result]
        if len(results) != len(node.outputs):
            raise PassError(f"{where}: kernel returned {len(results)} outputs, node has "
                            f"{len(node.outputs)}")
        arrays = []
        for v, r in zip(node.outputs, results):
            # A copy: kernels may return views of (or the very) input weights, and a later
            # pass may rewrite a private weight in place.
            arr = np.array(r, copy=True, order="C")
            if v.shape is not None and (tuple(arr.shape), arr.dtype.name) != (v.shape, v.dtype):
                raise PassError(f"{where}: kernel gave {arr.dtype.name}{list(arr.shape)} for "
                                f"output {v.name!r} typed {v.dtype}{list(v.shape)}")
            arrays.append(arr)
        return arrays
