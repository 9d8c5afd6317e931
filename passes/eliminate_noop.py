"""No-op elimination: remove nodes whose output equals one of their inputs.

Recognised (each exact, not approximately equal, and valid at every batch size):

- Identity; Dropout (inference);
- Reshape whose output shape equals its input's (unless the target fixes the batch as a
  literal and infers another dim with -1: at another batch size that Reshape moves the batch);
  Flatten(axis=1) of a 2-D tensor;
- Transpose with the identity permutation; Cast to the input's dtype; Pad with all-zero pads;
- Concat/Sum/Max/Min/Mean with one input; Split into a single piece;
- Slice with unit steps selecting everything (on the batch axis only with start 0 and an
  open end, so it also selects everything at other batch sizes);
- Resize with every scale 1 and unchanged sizes (each output pixel samples its own input
  pixel; onnxruntime and fc's kernel copy such an axis in every mode, even
  tf_half_pixel_for_nn with a ceil nearest_mode, whose formula would give i + 0.5);
- Add/Sub of a constant 0, Mul/Div by a constant 1 (Add without a fused activation), when
  the constant does not broadcast the other operand to a larger shape or another dtype.

Every use of the output is pointed at the input and the node erased. A graph output keeps
its name (``Value.replace_all_uses_with``); when that is impossible (the input is a graph
input, a weight, or already a graph output) the node stays and the refusal is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fc.ir.core import Graph, Node, Value
from fc.ir.schemas._rules import norm_axis
from fc.passes.infra import Pass, replace_blocker

__all__ = ["EliminateNoOps"]

log = logging.getLogger("fc.passes")

_OPEN_END = 2**31 - 1  # ends at or above this select "to the end" at any batch size


def _first(node: Node) -> Value | None:
    return node.inputs[0]


def _reshape(node: Node) -> Value | None:
    x, y = node.inputs[0], node.output
    if x.shape is None or x.shape != y.shape:
        return None
    target = node.attrs["shape"]
    if target and target[0] not in (0, -1) and -1 in target[1:]:
        return None  # a literal batch plus an inferred dim: not a no-op at other batch sizes
    return x


def _flatten(node: Node) -> Value | None:
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 2 or node.attrs["axis"] not in (1, -1):
        return None
    return x


def _transpose(node: Node) -> Value | None:
    x = node.inputs[0]
    if x.shape is None:
        return None
    perm = node.attrs["perm"] or tuple(reversed(range(len(x.shape))))
    return x if tuple(perm) == tuple(range(len(x.shape))) else None


def _cast(node: Node) -> Value | None:
    x = node.inputs[0]
    return x if x.dtype is not None and node.attrs["to"] == x.dtype else None


def _pad(node: Node) -> Value | None:
    return node.inputs[0] if not any(node.attrs["pads"]) else None


def _single_input(node: Node) -> Value | None:
    return node.inputs[0] if len(node.inputs) == 1 else None


def _split(node: Node) -> Value | None:
    return node.inputs[0] if len(node.outputs) == 1 else None


def _slice(node: Node) -> Value | None:
    x, y = node.inputs[0], node.output
    if x.shape is None or x.shape != y.shape:
        return None
    a = node.attrs
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        if step != 1:
            return None  # a reversed axis keeps the shape but not the values
        if norm_axis(axis, len(x.shape)) == 0 and (start != 0 or end < _OPEN_END):
            return None
    return x


def _resize(node: Node) -> Value | None:
    x, a = node.inputs[0], node.attrs
    if x.shape is None or any(s != 1.0 for s in a["scales"]):
        return None
    if a["sizes"] and tuple(a["sizes"][1:]) != x.shape[1:]:
        return None
    return x


def _neutral_operand(node: Node, neutral: int, commutative: bool) -> Value | None:
    """The operand ``x`` of ``x op c`` (or ``c op x`` when commutative) with c == neutral."""
    y = node.output
    a, b = node.inputs
    candidates = [(a, b), (b, a)] if commutative else [(a, b)]
    for x, c in candidates:
        if (c.const is not None and x.shape == y.shape and x.dtype == y.dtype
                and c.const.dtype.name == x.dtype and bool(np.all(c.const == neutral))):
            return x
    return None


def _add(node: Node) -> Value | None:
    return None if node.attrs["activation"] else _neutral_operand(node, 0, True)


_RULES: dict[str, Callable[[Node], Value | None]] = {
    "Identity": _first,
    "Dropout": _first,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Cast": _cast,
    "Pad": _pad,
    "Concat": _single_input,
    "Sum": _single_input,
    "Max": _single_input,
    "Min": _single_input,
    "Mean": _single_input,
    "Split": _split,
    "Slice": _slice,
    "Resize": _resize,
    "Add": _add,
    "Sub": lambda n: _neutral_operand(n, 0, False),
    "Mul": lambda n: _neutral_operand(n, 1, True),
    "Div": lambda n: _neutral_operand(n, 1, False),
}


class EliminateNoOps(Pass):
    """Bypass and erase no-op nodes; count = nodes removed."""

    name = "eliminate_noops"

    def __init__(self) -> None:
        self.refusals: list[tuple[str, str]] = []

    def run(self, graph: Graph) -> int:
        self.refusals = []
        count = 0
        for node in graph.nodes:
            rule = _RULES.get(node.op_type)
            if rule is None:
                continue
            x = rule(node)
            if x is None:
                continue
            y = node.outputs[0]
            reason = replace_blocker(graph, y, x)
            if reason is not None:
                self.refusals.append((node.name, reason))
                log.debug("%s: refused at node %r: %s", self.name, node.name, reason)
                continue
            y.replace_all_uses_with(x, graph, rename=True)
            graph.erase_node(node)
            count += 1
        return count
