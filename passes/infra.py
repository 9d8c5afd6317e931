"""Pass infrastructure: the pass contract, fusion rules, and the pass manager.

A pass is a callable ``graph -> PassResult(graph, modified, count)``; passes rewrite in
place and say how many rewrites they made. A ``FusionRule`` is a pattern anchored on one
node kind, a ``check`` that returns a *reason* (a string) when it refuses, and a
``rewrite``; ``FusionPass`` runs one rule over the graph in a single linear sweep and logs
every refusal at debug level, so ``--debug`` shows why a fusion did not happen.
The ``PassManager`` runs a list of passes to a fixed point and records per-pass counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fc.errors import FcError, PassError
from fc.ir.core import Graph, Node, Value

__all__ = [
    "PassResult",
    "Pass",
    "FunctionPass",
    "FusionRule",
    "FusionPass",
    "PassManager",
    "PassReport",
    "only_user",
    "producer_of",
    "is_private",
    "absorb_into",
    "replace_const_input",
    "drop_dead_const",
]

log = logging.getLogger("fc.passes")


@dataclass
class PassResult:
    graph: Graph
    modified: bool
    count: int = 0


class Pass:
    """Base class: subclasses set ``name`` and implement ``run``, returning a rewrite count."""

    name: str = "pass"

    def run(self, graph: Graph) -> int:
        raise NotImplementedError

    def __call__(self, graph: Graph) -> PassResult:
        count = self.run(graph)
        return PassResult(graph, count > 0, count)

    def __repr__(self) -> str:
        return f"<pass {self.name}>"


class FunctionPass(Pass):
    """Wrap ``fn(graph) -> count`` as a pass."""

    def __init__(self, name: str, fn: Callable[[Graph], int]):
        self.name, self._fn = name, fn

    def run(self, graph: Graph) -> int:
        return self._fn(graph)


class FusionRule:
    """A rewrite anchored on nodes of ``anchor_ops``.

    ``check(graph, node)`` returns ``None`` to accept or a reason string to refuse;
    ``rewrite(graph, node)`` performs the fusion (it may assume ``check`` accepted).
    """

    name: str = "fusion"
    anchor_ops: tuple[str, ...] = ()

    def check(self, graph: Graph, node: Node) -> str | None:
        raise NotImplementedError

    def rewrite(self, graph: Graph, node: Node) -> None:
        raise NotImplementedError


class FusionPass(Pass):
    """Apply one ``FusionRule`` at every anchor node, in graph order, in one sweep."""

    def __init__(self, rule: FusionRule):
        self.rule = rule
        self.name = rule.name
        self.refusals: list[tuple[str, str]] = []

    def run(self, graph: Graph) -> int:
        count = 0
        self.refusals = []
        for node in graph.nodes:
            if node.graph is not graph or node.op_type not in self.rule.anchor_ops:
                continue  # erased by an earlier rewrite of this sweep, or not an anchor
            reason = self.rule.check(graph, node)
            if reason is not None:
                self.refusals.append((node.name, reason))
                log.debug("%s: refused at node %r: %s", self.name, node.name, reason)
                continue
            self.rule.rewrite(graph, node)
            count += 1
        return count


@dataclass
class PassReport:
    """What a PassManager run did: rewrites per pass, iterations, and time."""

    counts: dict[str, int] = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0

    def add(self, name: str, count: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + count


class PassManager:
    """Run ``passes`` in order, repeatedly until none modifies the graph (a fixed point).

    With ``verify=True`` (tests) the IR verifier runs after every pass that modified the
    graph, and a failure names the pass.
    """

    def __init__(self, passes: Sequence[Pass], *, max_iterations: int = 10, verify: bool = False):
        self.passes = list(passes)
        self.max_iterations = max_iterations
        self.verify = verify

    def __call__(self, graph: Graph) -> tuple[PassResult, PassReport]:
        from fc.ir.verify import verify

        report = PassReport()
        start = time.perf_counter()
        any_modified = False
        for _ in range(self.max_iterations):
            report.iterations += 1
            modified = False
            for p in self.passes:
                try:
                    result = p(graph)
                except FcError:
                    raise
                except Exception as e:  # a bug in a pass: say which
                    raise PassError(f"pass {p.name!r} failed: {type(e).__name__}: {e}") from e
                report.add(p.name, result.count)
                if result.modified:
                    modified = True
                    if self.verify:
                        try:
                            verify(graph)
                        except FcError as e:
                            raise PassError(f"after pass {p.name!r}: {e}") from None
            any_modified |= modified
            if not modified:
                break
        report.seconds = time.perf_counter() - start
        return PassResult(graph, any_modified, sum(report.counts.values())), report


# -- helpers for fusion checks ------------------------------------------------------------
def producer_of(v: Value | None, op_types: Sequence[str] | str) -> Node | None:
    """The node producing ``v`` if it is one of ``op_types``."""
    if v is None or v.producer is None:
        return None
    ops = (op_types,) if isinstance(op_types, str) else op_types
    return v.producer if v.producer.op_type in ops else None


def only_user(v: Value, graph: Graph) -> Node | None:
    """The single consuming node of ``v`` (None if several, none, or a graph output)."""
    if v in graph.outputs:
        return None
    users = v.users
    if len(users) != 1 or len(v.uses) != 1:
        return None
    return users[0]


def is_private(v: Value, graph: Graph) -> bool:
    """True when ``v`` is a weight used only once, so a fusion may rewrite it in place."""
    return v.const is not None and len(v.uses) == 1 and v not in graph.outputs


def drop_dead_const(graph: Graph, v: Value | None) -> None:
    """Remove the weight ``v`` from ``graph.initializers`` once nothing uses it (O(1), so a
    fusion can clean up after itself without a graph-wide sweep)."""
    if (v is not None and v.const is not None and not v._uses and v not in graph.outputs
            and graph.initializers.get(v.name) is v):
        del graph.initializers[v.name]


def replace_const_input(graph: Graph, node: Node, index: int, array: np.ndarray, name: str) -> Value:
    """Make input ``index`` of ``node`` the constant ``array`` (appending the input if absent).

    Copy-on-write: a private weight (used only here) of the same shape and dtype gets the new
    array in place and keeps its name; a shared one is left untouched for its other users and
    a new constant named ``name`` (made unique) takes its place here.
    """
    old = node.inputs[index] if index < len(node.inputs) else None
    if (old is not None and is_private(old, graph) and old.shape == tuple(array.shape)
            and old.dtype == array.dtype.name and graph.initializers.get(old.name) is old):
        old.const = array
        return old
    new = graph.add_const(name, array)
    if index < len(node.inputs):
        node.set_input(index, new)
    else:
        node.set_inputs([*node.inputs, *([None] * (index - len(node.inputs))), new])
    drop_dead_const(graph, old)
    return new


def absorb_into(graph: Graph, keep: Node, absorbed: Sequence[Node]) -> None:
    """Fuse the nodes ``absorbed`` (a chain after ``keep``, in order) into ``keep``.

    ``keep`` takes over the *output value* of the last absorbed node, so every consumer and
    graph output keeps the name it had; the absorbed nodes are erased and ``keep``'s
    provenance becomes the union. Precondition: ``keep``'s old output and the absorbed nodes'
    other outputs are used only by the absorbed nodes (the rule's ``check`` ensures it).
    """
    last = absorbed[-1]
    old, new = keep.output, last.output
    inside = {id(n) for n in absorbed}
    if old in graph.outputs or any(id(u) not in inside for u, _ in old._uses):
        raise PassError(f"node {keep.name!r}: output {old.name!r} is used outside the fusion")
    for n in absorbed:
        n.set_inputs([])
    # Swap the two output values between ``keep`` and ``last``; ``last`` then produces the
    # dead value and is erased with the rest.
    keep.outputs, last.outputs = [new], [old]
    new.producer, new.index = keep, 0
    old.producer, old.index = last, 0
    for n in reversed(absorbed):
        graph.erase_node(n)
    keep.add_provenance(*(n.provenance for n in absorbed))


# -- helpers for generic rewrites (added with the generic passes) ---------------------------
class RewritePass(Pass):
    """Apply several ``FusionRule``s in one linear sweep, dispatching on the anchor op.

    Like ``FusionPass`` (refusals logged at debug and kept in ``refusals``), for passes made
    of a few related rules (e.g. Transpose/Reshape/Squeeze cancellation). At each node the
    rules anchored on its op are tried in order; the first that accepts rewrites it.
    """

    def __init__(self, name: str, rules: Sequence[FusionRule]):
        self.name = name
        self.rules = list(rules)
        self.refusals: list[tuple[str, str]] = []
        self._by_op: dict[str, list[FusionRule]] = {}
        for r in self.rules:
            for op in r.anchor_ops:
                self._by_op.setdefault(op, []).append(r)

    def run(self, graph: Graph) -> int:
        count = 0
        self.refusals = []
        for node in graph.nodes:
            rules = self._by_op.get(node.op_type)
            if not rules or node.graph is not graph:
                continue
            for rule in rules:
                reason = rule.check(graph, node)
                if reason is None:
                    rule.rewrite(graph, node)
                    count += 1
                    break
                self.refusals.append((node.name, f"{rule.name}: {reason}"))
                log.debug("%s: %s refused at node %r: %s", self.name, rule.name, node.name, reason)
        return count


def replace_blocker(graph: Graph, old: Value, new: Value) -> str | None:
    """Why ``old.replace_all_uses_with(new)`` would change the graph's interface, or None.

    A graph output keeps its name only when ``new`` is produced by a node and is not already
    a graph output (``Value.replace_all_uses_with`` renames ``new`` then); otherwise the
    output would be renamed to a graph input's/constant's name, or listed twice.
    """
    if old not in graph.outputs:
        return None
    if new.producer is None:
        kind = "a constant" if new.const is not None else "a graph input"
        return f"{old.name!r} is a graph output and its replacement {new.name!r} is {kind}"
    if new in graph.outputs:
        return f"{old.name!r} and its replacement {new.name!r} are both graph outputs"
    return None


def retype_node(node: Node, op_type: str, inputs: Sequence[Value | None],
                attrs: dict | None = None, *, provenance: Sequence[str] = ()) -> Node:
    """Turn ``node`` in place into ``op_type(inputs, attrs)``, keeping its output values.

    Keeping the output ``Value`` objects keeps their names, users and graph-output status,
    so a rewrite that ends in this node needs no renaming. Attributes are completed against
    the new op's schema and the output types re-inferred (raising if they change).
    """
    from fc.ir.schema import complete_attrs, infer_types

    where = f"node {node.name!r}"
    node.op_type = op_type
    node.attrs = complete_attrs(op_type, attrs or {}, where)
    node.set_inputs(inputs)
    node.add_provenance(provenance)
    for v, t in zip(node.outputs, infer_types(node)):
        if v.shape is not None and (v.shape, v.dtype) != (t.shape, t.dtype):
            raise PassError(f"{where} ({op_type}): rewrite changes output {v.name!r} from "
                            f"{v.dtype}{list(v.shape)} to {t.dtype}{list(t.shape)}")
        v.shape, v.dtype = t.shape, t.dtype
    return node
