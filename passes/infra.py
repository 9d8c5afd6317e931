"""Pass infrastructure: the pass contract, fusion rules, and the pass manager.

A pass is a callable ``graph -> PassResult(graph, modified, count)`` that says how many
rewrites it made. It declares ``in_place``: True (every built-in pass) means it rewrites the
graph it is given and returns that same object; False means it returns a new graph and
leaves its input as it was. The ``PassManager`` runs a list of passes to a fixed point,
threading the graph through them, records per-pass counts, and warns, naming the passes
still changing the graph, when it stops at ``max_iterations`` instead.

A ``FusionRule`` is anchored on one node kind. Its ``check(graph, node)`` returns a
``Match`` (the nodes it will rewrite, and whatever the rewrite needs) or a refusal: a
string saying why not. Its ``rewrite(graph, match)`` performs the rewrite from the match,
without matching again. The infrastructure enforces, once for every rule, that each
*intermediate* value of a match (an output of a matched node that a matched node reads) is
used only inside the match and is not a graph output, since the rewrite would otherwise
destroy a tensor someone else needs. ``FusionPass`` runs one rule over the graph in a single
linear sweep, ``RewritePass`` several; both log every refusal at debug level (so
``--debug`` shows why a fusion did not happen) and keep them in ``refusals``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fc.errors import FcError, PassError
from fc.ir.core import Graph, Node, Value, rename_blocker

__all__ = [
    "PassResult",
    "Pass",
    "FunctionPass",
    "Match",
    "FusionRule",
    "FusionPass",
    "RewritePass",
    "PassManager",
    "PassReport",
    "intermediate_reason",
    "only_user",
    "producer_of",
    "is_private",
    "absorb_into",
    "replace_blocker",
    "replace_const_input",
    "drop_dead_const",
    "retype_node",
]

log = logging.getLogger("fc.passes")


@dataclass
class PassResult:
    graph: Graph
    modified: bool
    count: int = 0


class Pass:
    """Base class: subclasses set ``name`` and implement ``run``, returning a rewrite count.

    ``in_place`` (True here) declares that ``run`` rewrites the graph it is given; a pass
    that builds a new graph sets it False and overrides ``__call__`` to return the new
    graph in its ``PassResult``, leaving the input untouched.
    """

    name: str = "pass"
    in_place: bool = True

    def run(self, graph: Graph) -> int:
        raise NotImplementedError

    def __call__(self, graph: Graph) -> PassResult:
        count = self.run(graph)
        return PassResult(graph, count > 0, count)

    def __repr__(self) -> str:
        return f"<pass {self.name}>"


class FunctionPass(Pass):
    """Wrap ``fn(graph) -> count`` (an in-place rewrite) as a pass."""

    def __init__(self, name: str, fn: Callable[[Graph], int]):
        self.name, self._fn = name, fn

    def run(self, graph: Graph) -> int:
        return self._fn(graph)


class Match:
    """What a rule's ``check`` found at ``anchor``: the nodes its rewrite replaces or erases
    (``nodes``), and named facts for the rewrite (``match.layer``, ``match.scale``, ...).

    The *intermediates* are the outputs of ``nodes`` that one of ``nodes`` reads; the
    infrastructure refuses the match unless each is used only by ``nodes`` and is not a
    graph output. The other outputs of ``nodes`` are the match's results, which the rewrite
    keeps (consumers and graph outputs then read the rewritten node).
    """

    __slots__ = ("anchor", "nodes", "facts")

    def __init__(self, anchor: Node, nodes: Sequence[Node] | None = None, **facts: Any):
        self.anchor = anchor
        self.nodes: list[Node] = list(nodes) if nodes is not None else [anchor]
        self.facts = facts

    def __getattr__(self, name: str) -> Any:
        try:
            return self.facts[name]  # only reached for names that are not slots
        except KeyError:
            raise AttributeError(f"match at {self.anchor.name!r} has no fact {name!r} "
                                 f"(it has {sorted(self.facts)})") from None

    def intermediates(self) -> list[Value]:
        """Outputs of matched nodes read by a matched node, in node order."""
        inside = {id(n) for n in self.nodes}
        out = []
        for n in self.nodes:
            out.extend(v for v in n.outputs if any(id(u) in inside for u, _ in v._uses))
        return out

    def __repr__(self) -> str:
        return (f"Match({self.anchor.name!r}, nodes={[n.name for n in self.nodes]}, "
                f"{', '.join(sorted(self.facts))})")


def intermediate_reason(graph: Graph, match: Match) -> str | None:
    """Why ``match`` may not be rewritten: an intermediate is a graph output or has a user
    outside the match; None when every intermediate is private to it."""
    inside = {id(n) for n in match.nodes}
    for v in match.intermediates():
        what = f"{v.producer.op_type} output {v.name!r}" if v.producer else repr(v.name)
        if v in graph.outputs:
            return f"{what} is a graph output"
        outside = [u for u in v.users if id(u) not in inside]
        if outside:
            return (f"{what} has {len(v.uses)} uses, also outside the match "
                    f"({', '.join(repr(u.name) for u in outside)})")
    return None


class FusionRule:
    """A rewrite anchored on nodes of ``anchor_ops``.

    ``check(graph, node)`` returns a ``Match`` to accept or a reason string to refuse;
    ``rewrite(graph, match)`` performs the rewrite from the match (called only after the
    infrastructure has found every intermediate private: ``match``).
    """

    name: str = "fusion"
    anchor_ops: tuple[str, ...] = ()

    def check(self, graph: Graph, node: Node) -> Match | str:
        raise NotImplementedError

    def rewrite(self, graph: Graph, match: Match) -> None:
        raise NotImplementedError

    def match(self, graph: Graph, node: Node) -> Match | str:
        """``check``, then the infrastructure's intermediate rule: a Match or a reason."""
        m = self.check(graph, node)
        if isinstance(m, str):
            return m
        reason = intermediate_reason(graph, m)
        return m if reason is None else reason


class RewritePass(Pass):
    """Apply ``FusionRule``s in one linear sweep in graph order, dispatching on the anchor op.

    At each node the rules anchored on its op are tried in order; the first that matches
    rewrites it. Refusals are logged at debug level and kept in ``refusals`` as
    ``(node name, reason)``, the reason prefixed with the rule's name when the pass has
    several rules.
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
        several = len(self.rules) > 1
        for node in graph.nodes:
            rules = self._by_op.get(node.op_type)
            if not rules or node.graph is not graph:
                continue  # not an anchor, or erased by an earlier rewrite of this sweep
            for rule in rules:
                m = rule.match(graph, node)
                if not isinstance(m, str):
                    rule.rewrite(graph, m)
                    count += 1
                    break
                self.refusals.append((node.name, f"{rule.name}: {m}" if several else m))
                log.debug("%s: %s refused at node %r: %s", self.name, rule.name, node.name, m)
        return count


class FusionPass(RewritePass):
    """Apply one ``FusionRule`` at every anchor node, in graph order, in one sweep."""

    def __init__(self, rule: FusionRule):
        super().__init__(rule.name, [rule])
        self.rule = rule


@dataclass
class PassReport:
    """What a PassManager run did: rewrites per pass, iterations, and time.

    ``still_changing`` names the passes that modified the graph in the last iteration when
    the run stopped at ``max_iterations`` without reaching a fixed point (empty otherwise).
    """

    counts: dict[str, int] = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0
    still_changing: list[str] = field(default_factory=list)

    def add(self, name: str, count: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + count

    @property
    def converged(self) -> bool:
        return not self.still_changing


class PassManager:
    """Run ``passes`` in order, repeatedly until none modifies the graph (a fixed point).

    The graph each pass returns is the one the next pass gets (an in-place pass must return
    the graph it was given). With ``verify=True`` (tests) the IR verifier runs after every
    pass that modified the graph, and a failure names the pass. Stopping at
    ``max_iterations`` with passes still changing the graph logs a warning naming them (and
    fills ``PassReport.still_changing``): two passes undoing each other, most likely.
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
        changing: list[str] = []
        for _ in range(self.max_iterations):
            report.iterations += 1
            changing = []
            for p in self.passes:
                try:
                    result = p(graph)
                except FcError:
                    raise
                except Exception as e:  # a bug in a pass: say which
                    raise PassError(f"pass {p.name!r} failed: {type(e).__name__}: {e}") from e
                if p.in_place and result.graph is not graph:
                    raise PassError(f"pass {p.name!r} declares in_place but returned another graph")
                graph = result.graph
                report.add(p.name, result.count)
                if result.modified:
                    changing.append(p.name)
                    if self.verify:
                        try:
                            verify(graph)
                        except FcError as e:
                            raise PassError(f"after pass {p.name!r}: {e}") from None
            any_modified |= bool(changing)
            if not changing:
                break
        else:
            report.still_changing = list(dict.fromkeys(changing))
            log.warning("pass manager stopped after %d iterations without a fixed point; still "
                        "changing the graph: %s", self.max_iterations,
                        ", ".join(report.still_changing))
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


def replace_blocker(graph: Graph, old: Value, new: Value) -> str | None:
    """Why ``old.replace_all_uses_with(new, rename=True)`` would change the graph's interface
    (a graph output losing its name, or listed twice), or None: a rewrite that bypasses a
    node refuses with this reason instead."""
    return rename_blocker(graph, old, new)


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
