"""Fuse activations and normalizations that exporters spell out in elementary ops back into
one op each, so the hardware op set covers them (and ``fuse_activation`` can then fuse the
activation into the layer before it).

The forms recognised (``x`` the input; products may be nested and ordered in any way, a
``Div`` by a constant counts as a product with its reciprocal)::

    Gelu exact       0.5 * x * (1 + Erf(x / sqrt(2)))          -> Gelu(approximate="none")
                     (x * 1/sqrt(2) inside the Erf is the same)
    Gelu tanh        0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
                     (x^3 as Pow(x, 3) or x*x*x)               -> Gelu(approximate="tanh")
    LayerNorm        d = x - ReduceMean(x, axes); v = ReduceMean(d^2, axes)  (d^2: Pow or d*d)
                     d / Sqrt(v + eps)   (or d * Reciprocal(Sqrt(v + eps)))
                     [* gamma] [+ beta]                        -> LayerNormalization(x, gamma, beta,
                                                                  axis=min(axes), epsilon=eps)
    HardSigmoid      s * Clip(x + b, 0, k) with k * s = 1      -> HardSigmoid(alpha=s, beta=b*s)
                     (torch: Clip(x+3, 0, 6) / 6, or * 1/6)
    HardSwish        x * HardSigmoid(x) or s * x * Clip(x + b, 0, k),
                     when alpha = 1/6 and beta = 1/2            -> HardSwish
    SiLU             x * Sigmoid(x)                            -> SiLU

The maths is exact: each fused op's kernel computes the same function (LayerNormalization
over axes [axis, rank), which the ReduceMean axes must be). Constants are matched with the
relative tolerance ``RTOL`` = 1e-4 (|c - expected| <= RTOL * |expected|), which admits every
float32 or float64 spelling (1/sqrt(2) as 0.70710677 or 0.7071067811865476; 6 or 1/6); the
fused op takes the *exact* constant of the function (0.5, sqrt(2), 1/6 ...), except where
the constant is a parameter of the op (HardSigmoid's alpha and beta, LayerNorm's epsilon,
gamma and beta), which are taken as found. A constant further off than the tolerance refuses
the match with the constant, its expected value and the tolerance in the reason; an
intermediate with users outside the match refuses it too (the infrastructure's rule).

The rewritten root node keeps its output value (name, users, graph-output status); the other
matched nodes are erased and their provenance joins the fused node's.
"""

from __future__ import annotations

import math

import numpy as np

from fc.ir.core import Graph, Node, Value
from fc.passes.infra import FusionRule, Match, RewritePass, drop_dead_const, only_user, retype_node

__all__ = ["RTOL", "FuseGelu", "FuseLayerNorm", "FuseHardActivations", "FuseSiLU",
           "fuse_decomposed_pass", "DECOMPOSED_RULES"]

#: relative tolerance for every constant of a decomposed form
RTOL = 1e-4

_SQRT2 = math.sqrt(2.0)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def scalar(v: Value | None) -> float | None:
    """The value of a one-element constant (None for anything else)."""
    if v is None or v.const is None or v.const.size != 1:
        return None
    return float(np.asarray(v.const).reshape(()))


def _off(found: float, expected: float, what: str) -> str | None:
    """The refusal when ``found`` is not ``expected`` within RTOL (None when it is)."""
    if abs(found - expected) <= RTOL * abs(expected):
        return None
    return (f"{what} is {found!r}, not {expected!r} within relative tolerance {RTOL:g} "
            f"(off by {abs(found - expected) / abs(expected):.3g})")


class _Product:
    """A Mul/Div(constant) tree flattened: its non-constant leaves, the product of its
    constants, and the nodes it spans (root first). Inner products are followed only through
    values with a single use, so every node spanned belongs to this product alone."""

    def __init__(self, graph: Graph, root: Node, max_nodes: int = 8):
        self.leaves: list[Value] = []
        self.const = 1.0
        self.nodes: list[Node] = []
        self._graph, self._max = graph, max_nodes
        self._walk(root)

    @staticmethod
    def is_product(node: Node | None) -> bool:
        if node is None:
            return False
        if node.op_type == "Mul":
            return True
        c = scalar(node.inputs[1]) if node.op_type == "Div" else None
        return c is not None and c != 0.0

    def _walk(self, node: Node) -> None:
        self.nodes.append(node)
        if node.op_type == "Div":
            self.const /= scalar(node.inputs[1])
            self._visit(node.inputs[0])
        else:
            for v in node.inputs:
                self._visit(v)

    def _visit(self, v: Value) -> None:
        c = scalar(v)
        if c is not None:
            self.const *= c
            return
        p = v.producer
        if (self.is_product(p) and len(self.nodes) < self._max
                and only_user(v, self._graph) is not None):
            self._walk(p)
        else:
            self.leaves.append(v)


def _value_product(graph: Graph, v: Value) -> tuple[list[Value], float, list[Node]]:
    """``v`` as a product (leaves, constant, nodes); a non-product ``v`` is its own leaf."""
    if _Product.is_product(v.producer) and only_user(v, graph) is not None:
        p = _Product(graph, v.producer)
        return p.leaves, p.const, p.nodes
    return [v], 1.0, []


def _producer(v: Value, op_type: str) -> Node | None:
    p = v.producer
    return p if p is not None and p.op_type == op_type else None


def _add_const(node: Node | None) -> tuple[Value, float] | None:
    """For ``Add(v, c)`` / ``Add(c, v)`` with a scalar constant c (no fused activation):
    (v, c)."""
    if node is None or node.op_type != "Add" or node.attrs.get("activation"):
        return None
    for k in (0, 1):
        c = scalar(node.inputs[1 - k])
        if c is not None and scalar(node.inputs[k]) is None:
            return node.inputs[k], c
    return None


def _same_type(a: Value, b: Value) -> bool:
    return a.shape is not None and a.shape == b.shape and a.dtype == b.dtype


def _consts(nodes: list[Node]) -> list[Value]:
    return [v for n in nodes for v in n.inputs if v is not None and v.const is not None]


def _erase_matched(graph: Graph, root: Node, nodes: list[Node], consts: list[Value]) -> None:
    """Erase the matched nodes other than ``root`` (all unused once root is rewritten), in
    an order where each is erased after its users, then drop the dead constants ``consts``
    (the matched nodes' constants, collected before the rewrite)."""
    left = [n for n in dict.fromkeys(nodes) if n is not root]
    while left:
        free = [n for n in left if not any(v._uses for v in n.outputs)]
        if not free:
            raise AssertionError(f"matched nodes still used: {[n.name for n in left]}")
        for n in free:
            graph.erase_node(n)
        left = [n for n in left if n.graph is graph]
    for v in consts:
        drop_dead_const(graph, v)


def _provenance(nodes: list[Node]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        out.extend(n.provenance or [n.name])
    return list(dict.fromkeys(out))


class _ProductRule(FusionRule):
    """A rule whose match ends in a product (the root, rewritten into the fused op)."""

    anchor_ops = ("Mul", "Div")

    def rewrite(self, graph: Graph, match: Match) -> None:
        root = match.anchor
        prov, consts = _provenance(match.nodes), _consts(match.nodes)
        retype_node(root, match.op, [match.x], match.attrs, provenance=prov)
        _erase_matched(graph, root, match.nodes, consts)


class FuseGelu(_ProductRule):
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` or its tanh form -> ``Gelu``."""

    name = "fuse_gelu"

    def check(self, graph: Graph, node: Node) -> Match | str:
        if not _Product.is_product(node):
            return "not a product"
        prod = _Product(graph, node)
        if len(prod.leaves) != 2:
            return f"a product of {len(prod.leaves)} tensors, not x * (1 + erf/tanh(...))"
        for k in (0, 1):
            x, a = prod.leaves[k], prod.leaves[1 - k]
            add = a.producer if a.producer is not None and a.producer.op_type == "Add" else None
            parts = _add_const(add)
            if parts is None:
                continue
            inner, one = parts
            fn = inner.producer
            if fn is None or fn.op_type not in ("Erf", "Tanh"):
                continue
            # Only now is this a Gelu candidate: every mismatch below is a refusal.
            reason = _off(one, 1.0, f"the constant added to {fn.op_type}") or _off(
                prod.const, 0.5, "the constant factor")
            if reason:
                return reason
            body = (self._erf_arg if fn.op_type == "Erf" else self._tanh_arg)(graph, fn, x)
            if isinstance(body, str):
                return body
            if not _same_type(node.output, x):
                return f"output {node.output.name!r} is not shaped like x {x.name!r}"
            approximate = "none" if fn.op_type == "Erf" else "tanh"
            return Match(node, [*prod.nodes, add, fn, *body], x=x, op="Gelu",
                         attrs={"approximate": approximate})
        return "not x * (1 + erf(...)) or x * (1 + tanh(...))"

    @staticmethod
    def _erf_arg(graph: Graph, erf: Node, x: Value) -> list[Node] | str:
        leaves, c, nodes = _value_product(graph, erf.inputs[0])
        if leaves != [x]:
            return f"Erf {erf.name!r} does not read x / sqrt(2) of x {x.name!r}"
        return _off(c, 1.0 / _SQRT2, "the scale inside Erf") or nodes

    @staticmethod
    def _tanh_arg(graph: Graph, tanh: Node, x: Value) -> list[Node] | str:
        leaves, c, nodes = _value_product(graph, tanh.inputs[0])
        reason = _off(c, _SQRT_2_PI, "the scale inside Tanh")
        if reason:
            return reason
        add = leaves[0].producer if len(leaves) == 1 else None
        if add is None or add.op_type != "Add" or add.attrs.get("activation"):
            return f"Tanh {tanh.name!r} does not read sqrt(2/pi) * (x + 0.044715 x^3)"
        for k in (0, 1):
            if add.inputs[k] is not x:
                continue
            cubic = add.inputs[1 - k]
            cl, cc, cnodes = _value_product(graph, cubic)
            if cl == [x, x, x]:
                pass
            elif len(cl) == 1 and _producer(cl[0], "Pow") is not None and \
                    cl[0].producer.inputs[0] is x and scalar(cl[0].producer.inputs[1]) == 3.0:
                cnodes = [*cnodes, cl[0].producer]
            else:
                continue
            reason = _off(cc, _GELU_CUBIC, "the cubic coefficient")
            return reason or [*nodes, add, *cnodes]
        return f"Tanh {tanh.name!r} does not read sqrt(2/pi) * (x + 0.044715 x^3)"


def _clip_of_shift(graph: Graph, v: Value) -> tuple[Value, float, float, list[Node]] | None:
    """For ``Clip(x + b, 0, k)`` (k finite): (x, b, k, [Clip, Add])."""
    clip = _producer(v, "Clip")
    if clip is None or clip.attrs["min"] != 0.0:
        return None
    parts = _add_const(clip.inputs[0].producer)
    if parts is None:
        return None
    x, b = parts
    return x, b, float(clip.attrs["max"]), [clip, clip.inputs[0].producer]


class FuseHardActivations(_ProductRule):
    """``s * Clip(x + b, 0, k)`` (k s = 1) -> HardSigmoid; ``x * HardSigmoid(x)`` -> HardSwish."""

    name = "fuse_hard_activations"

    def check(self, graph: Graph, node: Node) -> Match | str:
        if not _Product.is_product(node):
            return "not a product"
        prod = _Product(graph, node)
        leaves, s = prod.leaves, prod.const
        if len(leaves) == 1:
            parts = _clip_of_shift(graph, leaves[0])
            if parts is None:
                return "not s * Clip(x + b, 0, k)"
            x, b, k, nodes = parts
            reason = _off(k * s, 1.0, "Clip's max times the constant factor")
            if reason:
                return reason
            if not _same_type(node.output, x):
                return f"output {node.output.name!r} is not shaped like x {x.name!r}"
            return Match(node, [*prod.nodes, *nodes], x=x, op="HardSigmoid",
                         attrs={"alpha": s, "beta": b * s})
        if len(leaves) != 2:
            return f"a product of {len(leaves)} tensors"
        for j in (0, 1):
            x, h = leaves[j], leaves[1 - j]
            hs = _producer(h, "HardSigmoid")
            if hs is not None and hs.inputs[0] is x:
                alpha, beta = hs.attrs["alpha"] * s, hs.attrs["beta"] * s
                nodes = [hs]
            else:
                parts = _clip_of_shift(graph, h)
                if parts is None or parts[0] is not x:
                    continue
                _, b, k, nodes = parts
                reason = _off(k * s, 1.0, "Clip's max times the constant factor")
                if reason:
                    return reason
                alpha, beta = s, b * s
            reason = _off(alpha, 1.0 / 6.0, "HardSwish's slope") or _off(
                beta, 0.5, "HardSwish's offset")
            if reason:
                return reason
            if not _same_type(node.output, x):
                return f"output {node.output.name!r} is not shaped like x {x.name!r}"
            return Match(node, [*prod.nodes, *nodes], x=x, op="HardSwish", attrs={})
        return "not x * HardSigmoid(x)"


class FuseSiLU(_ProductRule):
    """``x * Sigmoid(x)`` -> SiLU."""

    name = "fuse_silu"
    anchor_ops = ("Mul",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        prod = _Product(graph, node)
        if len(prod.leaves) != 2:
            return f"a product of {len(prod.leaves)} tensors"
        for j in (0, 1):
            x, sg = prod.leaves[j], prod.leaves[1 - j]
            sig = _producer(sg, "Sigmoid")
            if sig is None or sig.inputs[0] is not x:
                continue
            reason = _off(prod.const, 1.0, "the constant factor")
            if reason:
                return reason
            if not _same_type(node.output, x):
                return f"output {node.output.name!r} is not shaped like x {x.name!r}"
            return Match(node, [*prod.nodes, sig], x=x, op="SiLU", attrs={})
        return "not x * Sigmoid(x)"


class FuseLayerNorm(FusionRule):
    """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [Mul gamma] [Add beta] -> LayerNormalization."""

    name = "fuse_layer_norm"
    anchor_ops = ("Div", "Mul")

    @staticmethod
    def _axes(node: Node, rank: int) -> tuple[int, ...] | None:
        if node.attrs.get("keepdims", 1) != 1 or not node.attrs.get("axes"):
            return None
        return tuple(sorted(a % rank for a in node.attrs["axes"]))

    def check(self, graph: Graph, node: Node) -> Match | str:
        if node.op_type == "Div":
            d, s = node.inputs
            sqrt, head = _producer(s, "Sqrt"), []
        else:
            sqrt = head = None
            for k in (0, 1):
                rec = _producer(node.inputs[1 - k], "Reciprocal")
                if rec is not None and _producer(rec.inputs[0], "Sqrt") is not None:
                    d, sqrt, head = node.inputs[k], rec.inputs[0].producer, [rec]
                    break
        if sqrt is None:
            return "not d / sqrt(...)"
        sub = _producer(d, "Sub")
        if sub is None:
            return "the numerator is not x - mean(x)"
        x, m = sub.inputs
        mean = _producer(m, "ReduceMean")
        if mean is None or mean.inputs[0] is not x or x.shape is None:
            return "the numerator is not x - ReduceMean(x)"
        rank = len(x.shape)
        axes = self._axes(mean, rank)
        if axes is None or axes != tuple(range(axes[0], rank)):
            return f"ReduceMean {mean.name!r} axes {mean.attrs.get('axes')} are not the last axes of x"
        parts = _add_const(sqrt.inputs[0].producer)
        if parts is None:
            return "Sqrt does not read variance + epsilon"
        var_v, eps = parts
        var = _producer(var_v, "ReduceMean")
        if var is None or self._axes(var, rank) != axes:
            return "the variance is not a ReduceMean over the mean's axes"
        sq = var.inputs[0].producer
        if sq is None:
            return "the variance does not read (x - mean)^2"
        if sq.op_type == "Pow" and sq.inputs[0] is d:
            reason = _off(scalar(sq.inputs[1]) or 0.0, 2.0, "the exponent")
            if reason:
                return reason
        elif not (sq.op_type == "Mul" and sq.inputs[0] is d and sq.inputs[1] is d):
            return "the variance does not read (x - mean)^2"
        if eps < 0:
            return f"epsilon {eps!r} is negative"
        nodes = [node, *head, sqrt, sqrt.inputs[0].producer, var, sq, sub, mean]
        norm_shape = tuple(x.shape[axes[0]:])
        dt = np.dtype(x.dtype)
        gamma, beta, root = np.ones(norm_shape, dt), None, node
        nxt = self._affine(graph, root, "Mul", norm_shape)
        if nxt is not None:
            root, gamma = nxt[0], nxt[1].astype(dt)
            nodes.append(root)
        nxt = self._affine(graph, root, "Add", norm_shape)
        if nxt is not None:
            root, beta = nxt[0], nxt[1].astype(dt)
            nodes.append(root)
        if not _same_type(root.output, x):
            return f"output {root.output.name!r} is not shaped like x {x.name!r}"
        return Match(node, nodes, x=x, root=root, gamma=gamma, beta=beta, axis=axes[0],
                     epsilon=eps)

    @staticmethod
    def _affine(graph: Graph, node: Node, op: str, shape: tuple[int, ...]
                ) -> tuple[Node, np.ndarray] | None:
        """The Mul/Add by a constant broadcast over the normalized axes after ``node``."""
        user = only_user(node.output, graph)
        if user is None or user.op_type != op or (op == "Add" and user.attrs.get("activation")):
            return None
        k = user.inputs.index(node.output)
        c = user.inputs[1 - k]
        if c is None or c.const is None or c.const.ndim > len(shape):
            return None
        try:
            if np.broadcast_shapes(c.const.shape, shape) != shape:
                return None
        except ValueError:
            return None
        return user, np.ascontiguousarray(np.broadcast_to(c.const, shape))

    def rewrite(self, graph: Graph, match: Match) -> None:
        root = match.root
        base = root.name
        inputs = [match.x, graph.add_const(f"{base}_scale", match.gamma)]
        if match.beta is not None:
            inputs.append(graph.add_const(f"{base}_bias", match.beta))
        prov, consts = _provenance(match.nodes), _consts(match.nodes)
        retype_node(root, "LayerNormalization", inputs,
                    {"axis": match.axis, "epsilon": float(match.epsilon)}, provenance=prov)
        _erase_matched(graph, root, match.nodes, consts)


DECOMPOSED_RULES = (FuseLayerNorm, FuseGelu, FuseHardActivations, FuseSiLU)


def fuse_decomposed_pass() -> RewritePass:
    return RewritePass("fuse_decomposed", [r() for r in DECOMPOSED_RULES])
