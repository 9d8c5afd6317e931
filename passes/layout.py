"""Layout optimization: push Transposes down through the ops that do not care about axis
order, and cancel them where they meet their inverse.

A channels-last model (Keras) comes out of its importer as NCHW layers wrapped in
Transposes: ``x -> T(NCHW->NHWC) -> [TF's elementwise ops in NHWC] -> T(NHWC->NCHW) -> Conv``.
With ``y = Transpose(x, p)`` (y's axis j is x's axis p[j]) an op that commutes with the
permutation is rewritten to run on ``x`` and the Transpose moves below it:

- unary elementwise ops (activations, Cast, Identity, ...): ``f(T(x)) = T(f(x))``;
- broadcasting ops (Add, Mul, ..., PRelu): every input is ``T(.)`` with the same ``p`` or a
  constant, which is permuted once: ``c' = transpose(c_full, p^-1)`` (``c_full``: ``c`` with
  leading 1s up to the rank, as numpy broadcasts it);
- ops with axes map them through ``p``: Concat, Split, Softmax/LogSoftmax (axis -> p[axis]),
  Slice (axes), Pad (pads of axis j move to p[j]), reductions and Squeeze (axes; when axes are
  dropped the Transpose below is ``p`` restricted to the survivors, often the identity);
- ``Transpose(T(x), q)`` composes to ``Transpose(x, p∘q)``, which disappears when it is the
  identity;
- a Reshape or Flatten of ``T(x)`` reads the data in row-major order: if ``p`` only moves
  axes of size 1 (the batch axis counts as sized) the order is ``x``'s, so the Transpose just
  goes; else, before a classifier (Flatten -> Gemm/MatMul with a constant weight), the
  weight's rows are permuted instead: ``flatten(T(x)) @ W = flatten(x) @ W[order]`` with
  ``order[i]`` the position in ``flatten(T(x))`` of ``flatten(x)[i]`` (VGG's Flatten).

A Transpose moves into every user that accepts it (a copy below each; it stays for the
others), so ``x * sigmoid(x)`` of two Transposes of the same ``x`` first moves below the
sigmoid and then below the product. Graph outputs block it. Every push moves a Transpose
strictly downwards, so the sweep ends. What remains at the end and only moves axes of size 1
becomes a Reshape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fc.ir.activations import ACTIVATIONS
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import get_schema, infer_types
from fc.ir.schemas.elementwise import BINARY_OPS, UNARY_OPS, VARIADIC_OPS
from fc.passes.infra import Pass, drop_dead_const, replace_blocker, replace_const_input, retype_node

__all__ = ["OptimizeLayout", "inverse", "moves_only_unit_axes"]

Perm = tuple[int, ...]

# ops computing each element from the same element of every input
_UNARY = frozenset(UNARY_OPS) | {a.op_type for a in ACTIVATIONS.values()} | {"Dropout", "Cast"}
_BROADCAST = frozenset(BINARY_OPS) | frozenset(VARIADIC_OPS) | {"PRelu"}
_REDUCE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax"})


def inverse(perm: Sequence[int]) -> Perm:
    out = [0] * len(perm)
    for j, p in enumerate(perm):
        out[p] = j
    return tuple(out)


def _perm(node: Node) -> Perm:
    rank = len(node.inputs[0].shape)
    return tuple(node.attrs["perm"]) or tuple(reversed(range(rank)))


def moves_only_unit_axes(shape: Sequence[int], perm: Sequence[int]) -> bool:
    """Whether ``transpose(x, perm)`` keeps x's elements in row-major order: only axes of
    size 1 move. Axis 0 (the batch, 1 at compile time but not at run time) counts as sized."""
    kept = [p for p in perm if p == 0 or shape[p] != 1]
    return kept == sorted(kept)


def _transposer(v: Value | None, perm: Perm) -> Node | None:
    """The Transpose producing ``v`` with permutation ``perm``, if it is one."""
    if v is None or v.producer is None or v.producer.op_type != "Transpose":
        return None
    node = v.producer
    return node if node.inputs[0].shape is not None and _perm(node) == perm else None


def _survivors(perm: Perm, dropped: set[int]) -> Perm:
    """``perm`` restricted to the axes of y that survive (y axis j is x axis perm[j]),
    renumbered: the Transpose to put below an op that drops ``dropped`` (y axes)."""
    kept = [perm[j] for j in range(len(perm)) if j not in dropped]
    rank = {a: i for i, a in enumerate(sorted(kept))}
    return tuple(rank[a] for a in kept)


class OptimizeLayout(Pass):
    """Push Transposes down and cancel them (see the module docstring); count = rewrites."""

    name = "optimize_layout"

    def run(self, graph: Graph) -> int:
        count = 0
        changed = True
        while changed:
            changed = False
            for node in graph.nodes:
                if node.graph is graph and node.op_type == "Transpose" and self._push(graph, node):
                    count += 1
                    changed = True
        for node in graph.nodes:  # what is left and keeps the data order is a Reshape
            if node.graph is graph and node.op_type == "Transpose" and node.inputs[0].shape \
                    and moves_only_unit_axes(node.inputs[0].shape, _perm(node)):
                perm = _perm(node)
                shape = tuple(0 if (j == 0 and p == 0) else node.output.shape[j]
                              for j, p in enumerate(perm))
                retype_node(node, "Reshape", [node.inputs[0]], {"shape": shape})
                count += 1
        return count

    # -- one Transpose ------------------------------------------------------------------------
    def _push(self, graph: Graph, t: Node) -> bool:
        y = t.output
        if y.shape is None or t.inputs[0].shape is None or y in graph.outputs:
            return False
        perm = _perm(t)
        accepting = [u for u in y.users if self._accepts(graph, u, y, perm)]
        for u in accepting:
            if u.graph is graph and any(v is y for v in u.inputs):  # (not consumed meanwhile)
                self._rewrite(graph, u, y, perm)
        _erase_if_dead(graph, t)
        return bool(accepting)

    def _accepts(self, graph: Graph, u: Node, y: Value, perm: Perm) -> bool:
        op, rank = u.op_type, len(perm)
        if any(v.shape is None for v in u.outputs):
            return False
        if op == "Transpose":
            x = y.producer.inputs[0]
            composed = tuple(perm[q] for q in _perm(u))
            return composed != tuple(range(rank)) or replace_blocker(graph, u.output, x) is None
        if op in _UNARY:
            return True
        if op in _BROADCAST or op == "Concat":
            if len(u.output.shape) != rank:
                return False
            return all(v is None or v.const is not None or _transposer(v, perm) is not None
                       for v in u.inputs)
        if op in ("Split", "Softmax", "LogSoftmax", "Slice", "Pad", "Squeeze") or op in _REDUCE:
            return True
        if op in ("Reshape", "Flatten"):
            return moves_only_unit_axes(y.producer.inputs[0].shape, perm) or \
                self._classifier(graph, u, y, perm) is not None
        return False

    def _classifier(self, graph: Graph, u: Node, y: Value, perm: Perm) -> list[Node] | None:
        """The Gemm/MatMul users of a 2-D flatten of ``y`` whose weights can absorb ``perm``."""
        out = u.output
        if perm[0] != 0 or len(out.shape) != 2 or out.shape[0] != y.shape[0] or \
                out in graph.outputs or not out.users:
            return None
        if u.op_type == "Flatten" and u.attrs["axis"] != 1:
            return None
        layers = out.users
        for layer in layers:
            if len(out.uses) != len(layers) or layer.inputs[0] is not out:
                return None
            w = layer.inputs[1]
            if w is None or w.const is None or w.const.ndim != 2 or w is out:
                return None
            if layer.op_type == "Gemm" and layer.attrs["transA"]:
                return None
            if layer.op_type not in ("Gemm", "MatMul"):
                return None
        return layers

    # -- rewrites -----------------------------------------------------------------------------
    def _rewrite(self, graph: Graph, u: Node, y: Value, perm: Perm) -> None:
        op = u.op_type
        x = y.producer.inputs[0]
        if op == "Transpose":
            composed = tuple(perm[q] for q in _perm(u))
            if composed == tuple(range(len(perm))):
                u.output.replace_all_uses_with(x, graph, rename=True)
                graph.erase_node(u)
            else:
                retype_node(u, "Transpose", [x], {"perm": composed},
                            provenance=y.producer.provenance)
            return
        if op in ("Reshape", "Flatten"):
            self._rewrite_reshape(graph, u, y, x, perm)
            return
        attrs = dict(u.attrs)
        out_perms: list[Perm] = [perm] * len(u.outputs)
        if op in _UNARY:
            inputs = [x if v is y else v for v in u.inputs]
        elif op in _BROADCAST or op == "Concat":
            inputs = [self._untransposed(graph, v, perm) for v in u.inputs]
            if op == "Concat":
                attrs["axis"] = perm[u.attrs["axis"] % len(perm)]
        else:
            inputs = [x if v is y else v for v in u.inputs]
            rank = len(perm)
            if op in ("Split", "Softmax", "LogSoftmax"):
                attrs["axis"] = perm[u.attrs["axis"] % rank]
            elif op == "Slice":
                attrs["axes"] = tuple(perm[a % rank] for a in u.attrs["axes"])
            elif op == "Pad":
                pads = u.attrs["pads"]
                new = [0] * (2 * rank)
                for j in range(rank):
                    new[perm[j]], new[perm[j] + rank] = pads[j], pads[j + rank]
                attrs["pads"] = tuple(new)
            else:  # reductions and Squeeze: axes of y are axes perm[.] of x
                axes = u.attrs["axes"]
                if op == "Squeeze" and not axes:
                    axes = tuple(j for j, d in enumerate(y.shape) if d == 1)
                dropped = {a % rank for a in axes} if axes else set(range(rank))
                attrs["axes"] = tuple(sorted(perm[a] for a in dropped))
                if op == "Squeeze" or not u.attrs["keepdims"]:
                    out_perms = [_survivors(perm, dropped)]
        self._move_below(graph, u, inputs, attrs, out_perms)

    def _untransposed(self, graph: Graph, v: Value | None, perm: Perm) -> Value | None:
        """Input ``v`` of a broadcasting op, as it is before the ``perm`` Transpose; a
        constant is permuted once (a new weight: the old one may be shared)."""
        if v is None:
            return None
        t = _transposer(v, perm)
        if t is not None:
            return t.inputs[0]
        c = v.const
        rank = len(perm)
        if c.size == 1 and c.ndim <= rank:
            return v
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return graph.add_const(f"{v.name}_permuted",
                               np.ascontiguousarray(full.transpose(inverse(perm))))

    def _move_below(self, graph: Graph, u: Node, inputs: Sequence[Value | None],
                    attrs: dict, out_perms: Sequence[Perm]) -> None:
        """``u`` now computes on the untransposed inputs; each output gets a Transpose (by its
        permutation, none for the identity) that produces the value ``u`` produced before, so
        every consumer and graph output keeps its name."""
        old_inputs = list(u.inputs)
        olds = list(u.outputs)
        u.attrs = get_schema(u.op_type).complete(attrs, f"node {u.name!r}")
        u.set_inputs(inputs)
        fresh = []
        for i, old in enumerate(olds):
            # the node keeps its output's name; the Transpose below gets a new one (unless it
            # produces a graph output, whose name is the graph's interface)
            if old in graph.outputs:
                v = Value(graph.reserve(f"{old.name}_untransposed"))
            else:
                v = Value(old.name)
                old.name = graph.reserve(f"{old.name}_transposed")
            v.producer, v.index = u, i
            old.producer = None
            fresh.append(v)
        u.outputs = fresh
        for v, t in zip(fresh, infer_types(u)):
            v.shape, v.dtype = t.shape, t.dtype
        anchor = u
        for v, old, p in zip(fresh, olds, out_perms):
            if p == tuple(range(len(p))):
                old.replace_all_uses_with(v, graph, rename=True)
                continue
            node = Node("Transpose", [v], [old], {"perm": p},
                        name=graph.unique_node_name(f"{u.name}_transpose", "Transpose"),
                        provenance=u.provenance)
            graph.insert_after(anchor, node)
            anchor = node
        _release(graph, old_inputs)

    def _rewrite_reshape(self, graph: Graph, u: Node, y: Value, x: Value, perm: Perm) -> None:
        if moves_only_unit_axes(x.shape, perm):
            if u.op_type == "Reshape":
                az = u.attrs["allowzero"]
                # a 0 copies y's dim i: still a copy when x's dim i is the same axis
                shape = tuple(d if d != 0 or az or perm[i] == i else y.shape[i]
                              for i, d in enumerate(u.attrs["shape"]))
                retype_node(u, "Reshape", [x], {"shape": shape, "allowzero": az})
            else:  # flatten(y) as a reshape of x: the split point may sit among moved 1s
                k = int(np.prod(y.shape[u.attrs["axis"]:]))
                retype_node(u, "Reshape", [x], {"shape": (-1, k) if u.attrs["axis"] else (1, -1)})
            _release(graph, [y])
            return
        # a classifier after the flatten: permute its weights' rows instead of the data
        layers = self._classifier(graph, u, y, perm)
        idx = np.arange(int(np.prod(y.shape[1:]))).reshape((1, *y.shape[1:]))
        order = idx.transpose(inverse(perm)).ravel()  # flatten(x)[i] is flatten(y)[order[i]]
        for layer in layers:
            w = layer.inputs[1]
            trans = layer.op_type == "Gemm" and layer.attrs["transB"]
            arr = np.ascontiguousarray(w.const[:, order] if trans else w.const[order])
            replace_const_input(graph, layer, 1, arr, f"{w.name}_rows_permuted")
        if u.op_type == "Flatten":
            u.set_input(0, x)
        else:
            retype_node(u, "Reshape", [x], {"shape": (0, u.output.shape[1])})
        _release(graph, [y])


def _erase_if_dead(graph: Graph, t: Node) -> None:
    """Erase Transpose ``t`` once nothing uses its output (and its constant input, if any)."""
    if t.graph is graph and not t.output.uses and t.output not in graph.outputs:
        x = t.inputs[0]
        graph.erase_node(t)
        drop_dead_const(graph, x)


def _release(graph: Graph, old_inputs: Sequence[Value | None]) -> None:
    """After a rewrite stopped reading ``old_inputs``: drop dead weights among them and erase
    Transposes that produced them and are used no more."""
    for w in old_inputs:
        if w is None:
            continue
        if w.producer is not None and w.producer.op_type == "Transpose":
            _erase_if_dead(graph, w.producer)
        else:
            drop_dead_const(graph, w)
