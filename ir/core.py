"""The linked IR: ``Graph`` of ``Node`` objects connected through ``Value`` objects.

A ``Value`` knows its producer and its uses, so rewrites are local pointer surgery
(``replace_all_uses_with``, ``Graph.erase_node``) rather than searches over tensor names.
Names matter only for serialization and provenance. Nodes sit in a doubly linked list, so
inserting next to a node and erasing one are O(1), and iteration order is the topological
order the graph keeps.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from fc.errors import IRError

__all__ = ["Value", "Node", "Graph", "Shape", "rename_blocker"]

Shape = tuple[int, ...]


class Value:
    """A tensor: produced by one node (or a graph input / constant), used by many."""

    __slots__ = ("name", "shape", "dtype", "producer", "index", "_uses", "const")

    def __init__(
        self,
        name: str,
        shape: Sequence[int] | None = None,
        dtype: str | None = None,
        *,
        const: np.ndarray | None = None,
    ):
        self.name = name
        self.const = const
        if const is not None:
            shape = const.shape if shape is None else shape
            dtype = const.dtype.name if dtype is None else dtype
        self.shape: Shape | None = None if shape is None else tuple(int(d) for d in shape)
        self.dtype: str | None = dtype
        self.producer: Node | None = None
        self.index = 0
        # (node, input position) pairs; a node using this value twice appears twice.
        self._uses: list[tuple[Node, int]] = []

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def uses(self) -> list[tuple[Node, int]]:
        return list(self._uses)

    @property
    def users(self) -> list[Node]:
        """Distinct consuming nodes, in order of first use."""
        return list(dict.fromkeys(n for n, _ in self._uses))

    def replace_all_uses_with(self, other: Value, graph: Graph | None = None, *,
                              rename: bool = False) -> None:
        """Point every consumer and graph output of ``self`` at ``other``.

        Names do not change unless asked: with ``rename=True``, when ``self`` is a graph
        output, ``other`` takes over its name (``self`` becomes ``<name>_replaced``), so a
        rewrite keeps the names a user feeds or fetches. That needs ``other`` to be a node
        output and not a graph output already (``rename_blocker`` says why not; asking
        anyway raises ``IRError``).
        """
        if other is self:
            return
        if graph is None and self.producer is not None:
            graph = self.producer.graph
        if graph is None and self._uses:  # a graph input or weight: ask a consumer
            graph = self._uses[0][0].graph
        if other.producer is not None and any(n is other.producer for n, _ in self._uses):
            raise IRError(f"cannot replace {self.name!r} with {other.name!r}: its producer "
                          f"{other.producer.name!r} uses {self.name!r}, which would make a cycle")
        is_output = graph is not None and any(o is self for o in graph.outputs)
        if rename and is_output:
            reason = rename_blocker(graph, self, other)
            if reason is not None:
                raise IRError(f"cannot give {other.name!r} the output name {self.name!r}: {reason}")
        # Move the use list wholesale: O(uses), where set_input per use would be O(uses^2).
        uses, self._uses = self._uses, []
        for node, i in uses:
            node._inputs[i] = other
        other._uses.extend(uses)
        if not is_output:
            return
        graph.outputs[:] = [other if o is self else o for o in graph.outputs]
        if rename:
            old = self.name
            self.name = graph.reserve(old + "_replaced")
            other.name = old

    def __repr__(self) -> str:
        kind = "const " if self.is_const else ""
        return f"Value({kind}{self.name!r}, shape={self.shape}, dtype={self.dtype})"


def rename_blocker(graph: Graph, old: Value, new: Value) -> str | None:
    """Why ``new`` cannot take over the graph-output name of ``old`` (None if it can, or if
    ``old`` is not a graph output).

    Only a node output that is not a graph output yet can: renaming a graph input or a
    weight would change another interface name (or an initializer key), and a value listed
    twice as an output cannot carry two names.
    """
    if not any(o is old for o in graph.outputs):
        return None
    if new.producer is None:
        kind = "a constant" if new.const is not None else "a graph input"
        return f"{old.name!r} is a graph output and its replacement {new.name!r} is {kind}"
    if any(o is new for o in graph.outputs):
        return f"{old.name!r} and its replacement {new.name!r} are both graph outputs"
    return None


class Node:
    """One operation: ``op_type`` with tensor inputs/outputs and typed attributes."""

    __slots__ = ("op_type", "name", "_inputs", "outputs", "attrs", "provenance", "graph",
                 "_prev", "_next")

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        *,
        name: str = "",
        provenance: Iterable[str] = (),
    ):
        # Validate before linking anything, so a failed construction leaves no stale uses
        # on the inputs and no half-claimed outputs.
        outputs = list(outputs)
        for v in outputs:
            if v.producer is not None:
                raise IRError(f"node {name!r} ({op_type}): value {v.name!r} already has a producer "
                              f"{v.producer.name!r}")
        if len({id(v) for v in outputs}) != len(outputs):
            raise IRError(f"node {name!r} ({op_type}): the same value is listed twice as an output")
        self.op_type = op_type
        self.name = name
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.provenance: tuple[str, ...] = tuple(dict.fromkeys(provenance))
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        self._inputs: list[Value | None] = []
        for v in inputs:
            self._append_input(v)
        self.outputs: list[Value] = outputs
        for i, v in enumerate(self.outputs):
            v.producer, v.index = self, i

    def _append_input(self, v: Value | None) -> None:
        self._inputs.append(v)
        if v is not None:
            v._uses.append((self, len(self._inputs) - 1))

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def set_input(self, i: int, v: Value | None) -> None:
        """Rewire input ``i`` (negative counts from the end); uses follow."""
        if i < 0:
            i += len(self._inputs)
        if not 0 <= i < len(self._inputs):
            raise IRError(f"node {self.name!r} ({self.op_type}) has no input {i} "
                          f"(it has {len(self._inputs)})")
        old = self._inputs[i]
        if old is not None:
            old._uses.remove((self, i))
        self._inputs[i] = v
        if v is not None:
            v._uses.append((self, i))

    def set_inputs(self, inputs: Sequence[Value | None]) -> None:
        self._detach_inputs()
        for v in inputs:
            self._append_input(v)

    def _detach_inputs(self) -> None:
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses.remove((self, i))
        self._inputs = []

    def _unlink(self) -> None:
        """Undo the constructor's links (inputs' uses, outputs' producer)."""
        self._detach_inputs()
        for v in self.outputs:
            if v.producer is self:
                v.producer = None

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        if len(self.outputs) != 1:
            raise IRError(f"node {self.name!r} ({self.op_type}) has {len(self.outputs)} outputs")
        return self.outputs[0]

    def add_provenance(self, *sources: Iterable[str]) -> None:
        merged = list(self.provenance)
        for s in sources:
            merged.extend(s)
        self.provenance = tuple(dict.fromkeys(merged))

    def __repr__(self) -> str:
        ins = ", ".join("" if v is None else v.name for v in self._inputs)
        outs = ", ".join(v.name for v in self.outputs)
        return f"Node({self.name!r}: {self.op_type}({ins}) -> {outs}, {self.attrs})"


def _fresh(taken: Container[str], base: str, counters: dict[str, int], *, always_suffix: bool = False
           ) -> str:
    """``base`` or ``base_<i>``, not in ``taken``. ``counters`` remembers the last suffix per
    base, so naming n values of one base is O(n) overall, not O(n^2)."""
    if not always_suffix and base not in taken:
        return base
    i = counters.get(base, 0) + 1
    while f"{base}_{i}" in taken:
        i += 1
    counters[base] = i
    return f"{base}_{i}"


class Graph:
    """Inputs, outputs, constants and nodes in topological order."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        # Constants (weights) by name; insertion order is the serialization order.
        self.initializers: dict[str, Value] = {}
        #: source-framework layout of graph inputs/outputs by name (``fc.ir.layout``);
        #: a name not listed is in the IR's channels-first layout
        self.layouts: dict[str, str] = {}
        self._head: Node | None = None
        self._tail: Node | None = None
        self._len = 0
        self._names: set[str] = set()  # value names
        self._nodes_by_name: dict[str, Node] = {}
        self._value_suffix: dict[str, int] = {}
        self._node_suffix: dict[str, int] = {}

    # -- nodes ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """A snapshot of the nodes in order: safe to mutate the graph while iterating."""
        return list(self)

    def __iter__(self) -> Iterator[Node]:
        n = self._head
        while n is not None:
            nxt = n._next
            yield n
            n = nxt

    def __len__(self) -> int:
        return self._len

    def unique_node_name(self, name: str, op_type: str) -> str:
        """``name`` if free, else ``name_<i>``; an empty name becomes ``<op>_<i>``."""
        if not name:
            return _fresh(self._nodes_by_name, op_type.lower(), self._node_suffix,
                          always_suffix=True)
        return _fresh(self._nodes_by_name, name, self._node_suffix)

    def _claim(self, node: Node) -> None:
        if node.graph is not None:
            raise IRError(f"node {node.name!r} ({node.op_type}) is already in a graph")
        if not node.name or node.name in self._nodes_by_name:
            node.name = self.unique_node_name(node.name, node.op_type)
        node.graph = self
        self._nodes_by_name[node.name] = node
        self._len += 1

    def _check_anchor(self, anchor: Node) -> None:
        if anchor.graph is not self:
            raise IRError(f"anchor node {anchor.name!r} ({anchor.op_type}) is not in graph "
                          f"{self.name!r}")

    def append(self, node: Node) -> Node:
        self._claim(node)
        node._prev, node._next = self._tail, None
        if self._tail is None:
            self._head = node
        else:
            self._tail._next = node
        self._tail = node
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        self._check_anchor(anchor)
        self._claim(node)
        node._prev, node._next = anchor._prev, anchor
        if anchor._prev is None:
            self._head = node
        else:
            anchor._prev._next = node
        anchor._prev = node
        return node

    def insert_after(self, anchor: Node, node: Node) -> Node:
        self._check_anchor(anchor)
        if anchor._next is None:
            return self.append(node)
        return self.insert_before(anchor._next, node)

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        name: str = "",
        num_outputs: int = 1,
        outputs: Sequence[Value] | None = None,
        provenance: Iterable[str] = (),
        before: Node | None = None,
        complete: bool = True,
    ) -> Node:
        """Create a node with fresh output values and place it at the end (or ``before``).

        With ``complete`` (the default) the attributes are checked and defaulted against
        the op's schema, the inputs counted, and the outputs' shapes inferred when the
        inputs' are known. On any failure the graph is left as it was.
        """
        if before is not None:
            self._check_anchor(before)
        inputs = list(inputs)
        where = f"node {name!r} ({op_type})" if name else f"new {op_type} node"
        if complete:
            from fc.ir.schema import get_schema

            schema = get_schema(op_type)
            attrs = schema.complete(attrs or {}, where)
            schema.check_inputs(inputs, len(outputs) if outputs is not None else num_outputs, where)
        node_name = self.unique_node_name(name, op_type)
        if outputs is None:
            outputs = [Value(self.unique_name(f"{node_name}_out{i}" if num_outputs > 1
                                              else f"{node_name}_out"))
                       for i in range(num_outputs)]
        node = Node(op_type, inputs, outputs, attrs, name=node_name, provenance=provenance)
        if complete and all(v is None or v.shape is not None for v in node.inputs):
            from fc.ir.schema import infer_types

            try:
                types = infer_types(node)
            except BaseException:
                node._unlink()
                raise
            for v, t in zip(node.outputs, types):
                v.shape, v.dtype = t.shape, t.dtype
        for v in node.outputs:
            self._names.add(v.name)
        return self.insert_before(before, node) if before is not None else self.append(node)

    def erase_node(self, node: Node) -> None:
        """Remove a node whose outputs are no longer used."""
        if node.graph is not self:
            raise IRError(f"cannot erase node {node.name!r} ({node.op_type}): not in graph "
                          f"{self.name!r}")
        for v in node.outputs:
            is_output = any(o is v for o in self.outputs)
            if v._uses or is_output:
                users = [u.name for u in v.users] + (["<graph output>"] if is_output else [])
                raise IRError(f"cannot erase node {node.name!r} ({node.op_type}): output {v.name!r} "
                              f"is still used by {users}")
        node._detach_inputs()
        if node._prev is None:
            self._head = node._next
        else:
            node._prev._next = node._next
        if node._next is None:
            self._tail = node._prev
        else:
            node._next._prev = node._prev
        node._prev = node._next = None
        node.graph = None
        if self._nodes_by_name.get(node.name) is node:
            del self._nodes_by_name[node.name]
        self._len -= 1
        for v in node.outputs:
            v.producer = None

    # -- values --------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        """A value name this graph does not have yet (not reserved until used)."""
        return _fresh(self._names, base, self._value_suffix)

    def reserve(self, name: str) -> str:
        name = self.unique_name(name)
        self._names.add(name)
        return name

    def add_input(self, name: str, shape: Sequence[int], dtype: str = "float32") -> Value:
        v = Value(self.reserve(name), shape, dtype)
        self.inputs.append(v)
        return v

    def add_const(self, name: str, array: np.ndarray) -> Value:
        """Register a weight/constant tensor; the name is made unique."""
        array = np.asarray(array)
        v = Value(self.reserve(name), const=array)
        self.initializers[v.name] = v
        return v

    def remove_unused_consts(self) -> int:
        outs = {id(o) for o in self.outputs}
        dead = [k for k, v in self.initializers.items() if not v._uses and id(v) not in outs]
        for k in dead:
            del self.initializers[k]
            self._names.discard(k)
        return len(dead)

    def values(self) -> Iterator[Value]:
        """Every value once: inputs, constants, then node outputs in order."""
        yield from self.inputs
        yield from self.initializers.values()
        for n in self:
            yield from n.outputs

    def node_by_name(self, name: str) -> Node:
        """O(1) lookup; raises ``KeyError`` naming the node when absent."""
        try:
            return self._nodes_by_name[name]
        except KeyError:
            raise KeyError(f"graph {self.name!r} has no node {name!r}") from None

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self:
            hist[n.op_type] = hist.get(n.op_type, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def num_params(self) -> int:
        return int(sum(v.const.size for v in self.initializers.values()))

    def rename_index(self) -> None:
        """Recompute the name indexes after values or nodes were renamed by hand."""
        self._names = {v.name for v in self.values()}
        self._nodes_by_name = {n.name: n for n in self}

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes, {len(self.initializers)} weights)"
