"""Thinning: physically remove channels that are identically zero (after structured pruning).

A channel (index ``c`` on axis 1 of a value) is *zero* when it is 0 for every input. Zeros
come from layers and propagate::

    layer (Conv/ConvTranspose/Gemm/MatMul): channel m is zero when filter m is zero on every
        input channel that is not zero, the bias b[m] is 0 and the fused activation has f(0)=0
    BatchNormalization: y = (x - mean) * s + beta, s = scale / sqrt(var + eps), is zero when
        scale = beta = 0, or x is zero and beta - mean * s = 0
    Scale act(x * s + b): (x zero or s = 0) and b = 0 and f(0) = 0
    activations, PRelu, pooling, Resize, Flatten: zero in, zero out when f(0) = 0
    Add/Sub/Sum: every operand zero; Mul: one operand zero

Removing channel c of a value removes it everywhere the same channel lives, so channels are
tracked as *atoms* shared by every value that carries them (a union-find): a per-channel op
passes its input's atoms on; an Add (and any elementwise op of two activations) unites the
channels of its operands, so a residual Add keeps the union of its inputs' live channels;
a Concat on axis 1 chains its inputs' atoms; a Flatten/Reshape to (N, C*H*W) repeats each
channel's atom H*W times, so the next Gemm loses whole blocks of input features; a depthwise
Conv unites each input channel with its group's output channels. A fresh atom starts at
every layer output. An atom is removed when it is zero in every value carrying it and
nothing *pins* it: a graph input or output, an op that mixes channels in a way thinning does
not rewrite (LRN, Transpose, Softmax over channels, a grouped non-depthwise Conv, ...).

Rewrites, all in the layers' own layouts through the schema's ``weight_by_out_channel``
(filters as rows, input channels on axis 1 of a row): the producing layer loses filters and
bias entries, a consuming layer loses weight columns, a depthwise Conv loses groups, BN /
Scale / PRelu / per-channel constants lose entries, Reshape and Split attributes follow.
Removed channels are zero, so the thinned graph computes the same outputs exactly (the
removed terms were products with zero). ``thin`` reports, per layer, its channels before and
after and, for zero channels it could not remove, why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fc.errors import PassError
from fc.ir.complexity import MAC_OPS
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import weight_by_out_channel, weight_from_out_channel, weight_input
from fc.ir.schemas.elementwise import ACTIVATION_OPS, UNARY_OPS
from fc.passes.infra import Pass, is_private, replace_const_input
from fc.passes.shape_inference import InferShapes

__all__ = ["LayerThinning", "ThinResult", "thin", "Thin", "channelwise_keeps_zero", "tied_layers"]

ACT_KEYS = ("activation", "act_alpha", "act_beta")


# -- channel atoms --------------------------------------------------------------------------
class _Atoms:
    """Union-find over channel atoms; an atom may be pinned (not removable) with a reason."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.pins: list[tuple[int, str]] = []

    def fresh(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def pin(self, atoms: np.ndarray, reason: str) -> None:
        if atoms.size:
            # One record per distinct atom is enough to give the reason.
            self.pins.extend((int(a), reason) for a in np.unique(atoms))

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        return np.fromiter((self.find(a) for a in atoms.tolist()), np.int64, len(atoms))


@dataclass
class _Track:
    atoms: np.ndarray  # (C,) atom of each channel on axis 1
    zero: np.ndarray  # (C,) bool: the channel is identically zero


class _Analysis:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.atoms = _Atoms()
        self.tracks: dict[int, _Track] = {}
        #: ids of the layers whose weights the rewrite may cut (the others are pinned)
        self.layers: set[int] = set()

    def get(self, v: Value | None) -> _Track | None:
        return None if v is None else self.tracks.get(id(v))

    def set(self, v: Value, atoms: np.ndarray, zero: np.ndarray) -> None:
        self.tracks[id(v)] = _Track(atoms, np.asarray(zero, bool))

    def fresh(self, v: Value, zero: np.ndarray | None = None, pin: str = "") -> None:
        if v.shape is None or len(v.shape) < 2:
            return
        atoms = self.atoms.fresh(v.shape[1])
        self.set(v, atoms, np.zeros(v.shape[1], bool) if zero is None else zero)
        if pin:
            self.atoms.pin(atoms, pin)

    def pin(self, v: Value | None, reason: str) -> None:
        t = self.get(v)
        if t is not None:
            self.atoms.pin(t.atoms, reason)


def _where(node: Node) -> str:
    return f"{node.op_type} node {node.name!r}"


def _zero_at_zero(fn: Callable[[np.ndarray], np.ndarray]) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.all(fn(np.zeros((1, 1), np.float32)) == 0))


def _fused_keeps_zero(node: Node) -> bool:
    """f(0) == 0 for the activation fused into ``node`` (evaluated, not looked up)."""
    if not node.attrs.get("activation"):
        return True
    from fc.np_ops.activation import apply_activation

    return _zero_at_zero(lambda x: apply_activation(x, *(node.attrs[k] for k in ACT_KEYS)))


def _channel_const(c: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """A constant operand as per-channel rows (channels, -1) when it broadcasts along axis 1
    of a rank-``rank`` value (its aligned dim is ``channels`` or 1); None if it cannot."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    a = np.broadcast_to(c.reshape(shape), shape[:1] + (channels,) + shape[2:]) \
        if shape[1] == 1 else c.reshape(shape)
    if a.shape[1] != channels:
        return None
    return np.moveaxis(a, 1, 0).reshape(channels, -1)


# -- analysis rules ---------------------------------------------------------------------------
Rule = Callable[[_Analysis, Node], None]
_RULES: dict[str, Rule] = {}


def _rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            if op in _RULES:
                raise ValueError(f"thinning rule for {op!r} registered twice")
            _RULES[op] = fn
        return fn

    return deco


def _unknown(an: _Analysis, node: Node) -> None:
    for v in node.inputs:
        an.pin(v, f"read by {_where(node)}, which thinning does not rewrite")
    for v in node.outputs:
        an.fresh(v, pin=f"produced by {_where(node)}")


def _layer_kind(node: Node) -> str | None:
    """Why ``node`` is not a layer thinning can rewrite, or None."""
    i = weight_input(node.op_type)
    w = node.inputs[i] if i is not None else None
    if w is None or w.const is None:
        return "its weight is not a constant"
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 2 and node.op_type in ("Gemm", "MatMul"):
        return "its input is not 2-D"
    if node.op_type == "Gemm" and node.attrs["transA"]:
        return "transA=1"
    if node.op_type == "MatMul" and len(w.shape) != 2:
        return "batched weight"
    if node.op_type == "ConvTranspose" and node.attrs["group"] != 1:
        return f"grouped ConvTranspose (group={node.attrs['group']})"
    if node.op_type == "Conv" and node.attrs["group"] != 1 and w.shape[1] != 1:
        return f"grouped Conv (group={node.attrs['group']}) that is not depthwise"
    return None


def _bias_zero(node: Node, m: int) -> np.ndarray | bool:
    """(M,) bool: the bias adds 0 to output channel m (True when there is no bias)."""
    if node.op_type == "MatMul" or len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    if node.op_type == "Gemm" and node.attrs["beta"] == 0.0:
        return True
    rows = _channel_const(node.inputs[2].const, 2, m)  # (M,), (1, M), (N, M) or a scalar
    return np.all(rows == 0, axis=1) if rows is not None else False


@_rule(*MAC_OPS)
def _layer(an: _Analysis, node: Node) -> None:
    reason = _layer_kind(node)
    out = node.outputs[0]
    if reason:
        _unknown(an, node)
        return
    x = an.get(node.inputs[0])
    w = node.inputs[weight_input(node.op_type)]
    rows = weight_by_out_channel(node, w.const)  # filters as rows, input channels on axis 1
    depthwise = node.op_type == "Conv" and node.attrs["group"] != 1
    m = len(rows)
    if x is None or len(x.zero) != (node.attrs["group"] if depthwise else rows.shape[1]):
        _unknown(an, node)
        return
    if depthwise:  # output channel j reads input channel j // k only
        k = m // len(x.zero)
        filt_zero = np.all(rows.reshape(m, -1) == 0, axis=1) | np.repeat(x.zero, k)
    else:
        filt_zero = np.all(rows[:, ~x.zero].reshape(m, -1) == 0, axis=1)
    zero = filt_zero & _bias_zero(node, m) & _fused_keeps_zero(node)
    an.fresh(out, np.asarray(zero, bool))
    an.layers.add(id(node))
    if depthwise:
        an.atoms.union(np.repeat(x.atoms, k), an.get(out).atoms)


def _passthrough(an: _Analysis, node: Node, keeps_zero: bool) -> None:
    x = an.get(node.inputs[0])
    for v in node.outputs:
        if x is None or v.shape is None or len(v.shape) < 2 or v.shape[1] != len(x.atoms):
            _unknown(an, node)
            return
    for v in node.outputs:
        an.set(v, x.atoms, x.zero & keeps_zero)


def _standalone_keeps_zero(node: Node) -> bool:
    from fc.np_ops import call

    return _zero_at_zero(lambda z: call(node.op_type, z, **node.attrs))


#: one-input ops that act on each channel alone: elementwise (zero stays zero when f(0) = 0)
UNARY_CHANNELWISE = (*UNARY_OPS, *ACTIVATION_OPS, "Dropout", "Cast")
#: ... and spatial ones (zero stays zero: padding never wins a max, averages of 0 are 0)
SPATIAL_CHANNELWISE = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize")


def channelwise_keeps_zero(node: Node) -> bool | None:
    """For an op acting on each channel of its data input alone: does a zero channel stay
    zero? None for any other op."""
    if node.op_type in SPATIAL_CHANNELWISE or node.op_type == "PRelu":
        return True
    if node.op_type in UNARY_CHANNELWISE:
        return _standalone_keeps_zero(node)
    return None


@_rule(*UNARY_CHANNELWISE, *SPATIAL_CHANNELWISE)
def _channelwise(an: _Analysis, node: Node) -> None:
    _passthrough(an, node, bool(channelwise_keeps_zero(node)))


def _affine_zero(x: _Track, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Channels zero after ``x * s + t``."""
    return (x.zero | (s == 0)) & (t == 0)


def _const_params(node: Node, indices: tuple[int, ...]) -> list[np.ndarray] | None:
    out = []
    for i in indices:
        v = node.inputs[i] if i < len(node.inputs) else None
        if v is not None and v.const is None:
            return None
        out.append(None if v is None else v.const.astype(np.float64).reshape(-1))
    return out


@_rule("BatchNormalization")
def _batchnorm(an: _Analysis, node: Node) -> None:
    x, p = an.get(node.inputs[0]), _const_params(node, (1, 2, 3, 4))
    if x is None or p is None:
        _unknown(an, node)
        return
    gamma, beta, mean, var = p
    s = gamma / np.sqrt(np.maximum(var + node.attrs["epsilon"], 1e-300))
    zero = ((gamma == 0) & (beta == 0)) | _affine_zero(x, s, beta - mean * s)
    an.set(node.output, x.atoms, zero)


@_rule("Scale")
def _scale(an: _Analysis, node: Node) -> None:
    x, p = an.get(node.inputs[0]), _const_params(node, (1, 2))
    if x is None or p is None:
        _unknown(an, node)
        return
    s, t = p[0], (p[1] if p[1] is not None else np.zeros_like(p[0]))
    an.set(node.output, x.atoms, _affine_zero(x, s, t) & _fused_keeps_zero(node))


@_rule("PRelu")
def _prelu(an: _Analysis, node: Node) -> None:
    x, slope = an.get(node.inputs[0]), node.inputs[1]
    if x is None or slope.const is None or _channel_const(slope.const, len(node.output.shape),
                                                          len(x.atoms)) is None:
        _unknown(an, node)
        return
    an.set(node.output, x.atoms, x.zero)


@_rule("Add", "Sub", "Mul", "Sum")
def _elementwise(an: _Analysis, node: Node) -> None:
    out = node.output
    if out.shape is None or len(out.shape) < 2:
        _unknown(an, node)
        return
    rank, c = len(out.shape), out.shape[1]
    atoms, zeros = None, []
    for v in node.inputs:
        if v.const is not None:
            rows = _channel_const(v.const, rank, c)
            if rows is None:
                _unknown(an, node)
                return
            zeros.append(np.all(rows == 0, axis=1))
            continue
        t = an.get(v)
        if t is None or len(v.shape) != rank or len(t.atoms) not in (1, c):
            _unknown(an, node)
            return
        if len(t.atoms) == 1 and c != 1:  # broadcast over channels: it reaches all of them
            an.pin(v, f"broadcast over the channels by {_where(node)}")
            zeros.append(np.repeat(t.zero, c))
            continue
        if atoms is None:
            atoms = t.atoms
        else:
            an.atoms.union(atoms, t.atoms)
        zeros.append(t.zero)
    if atoms is None:
        _unknown(an, node)
        return
    zero = np.logical_or.reduce(zeros) if node.op_type == "Mul" else np.logical_and.reduce(zeros)
    an.set(out, atoms, zero & _fused_keeps_zero(node))


@_rule("Concat")
def _concat(an: _Analysis, node: Node) -> None:
    out = node.output
    tracks = [an.get(v) for v in node.inputs]
    if out.shape is None or node.attrs["axis"] % len(out.shape) != 1 or any(t is None for t in tracks):
        _unknown(an, node)
        return
    an.set(out, np.concatenate([t.atoms for t in tracks]), np.concatenate([t.zero for t in tracks]))


@_rule("Split")
def _split(an: _Analysis, node: Node) -> None:
    x = an.get(node.inputs[0])
    if x is None or node.attrs["axis"] % len(node.inputs[0].shape) != 1:
        _passthrough(an, node, True) if x is not None else _unknown(an, node)
        return
    start = 0
    for v, n in zip(node.outputs, node.attrs["split"]):
        an.set(v, x.atoms[start:start + n], x.zero[start:start + n])
        start += n


def _is_flatten(node: Node) -> bool:
    x, y = node.inputs[0].shape, node.output.shape
    return x is not None and y is not None and len(y) == 2 and len(x) >= 2 and y[0] == x[0]


@_rule("Flatten", "Reshape")
def _flatten(an: _Analysis, node: Node) -> None:
    x = an.get(node.inputs[0])
    if x is None or not _is_flatten(node) or (node.op_type == "Flatten" and node.attrs["axis"] != 1):
        _unknown(an, node)
        return
    spatial = math.prod(node.inputs[0].shape[2:])
    an.set(node.output, np.repeat(x.atoms, spatial), np.repeat(x.zero, spatial))


# -- rewriting ------------------------------------------------------------------------------
def set_const(graph: Graph, node: Node, index: int, array: np.ndarray) -> None:
    """Input ``index`` of ``node`` becomes ``array`` (a cut of the old weight). A private
    weight keeps its name, shape updated: a thinned model's weights read like the original's.
    A shared one is left to its other users and a ``_thinned`` copy takes its place here."""
    v = node.inputs[index]
    if is_private(v, graph) and graph.initializers.get(v.name) is v:
        v.const, v.shape = array, tuple(array.shape)
    else:
        replace_const_input(graph, node, index, array, f"{v.name}_thinned")


class _Rewriter:
    def __init__(self, an: _Analysis, removed_roots: set[int]):
        self.an = an
        self.removed = np.array(sorted(removed_roots), np.int64)
        self.graph = an.graph

    def keep(self, v: Value | None) -> np.ndarray | None:
        """(C,) bool: the channels of ``v`` that stay (None: ``v`` is not tracked)."""
        t = self.an.get(v)
        if t is None:
            return None
        return ~np.isin(self.an.atoms.roots(t.atoms), self.removed)

    def slice_const(self, node: Node, index: int, keep: np.ndarray, rank: int) -> None:
        """Cut the constant input ``index`` of ``node`` along its dim aligned (from the right,
        as broadcasting aligns) to axis 1 of a rank-``rank`` value."""
        v = node.inputs[index] if index < len(node.inputs) else None
        if v is None or keep.all():
            return
        c = v.const
        axis = 1 - (rank - c.ndim)
        if axis < 0 or c.shape[axis] == 1:
            return  # broadcast along the channels: nothing to cut
        set_const(self.graph, node, index, np.compress(keep, c, axis=axis))


def _rewrite_layer(rw: _Rewriter, node: Node) -> None:
    out_keep, in_keep = rw.keep(node.outputs[0]), rw.keep(node.inputs[0])
    i = weight_input(node.op_type)
    w = node.inputs[i]
    rows = weight_by_out_channel(node, w.const)
    changed = False
    if not in_keep.all():
        if node.op_type == "Conv" and node.attrs["group"] != 1:  # depthwise: drop groups
            node.attrs["group"] = int(in_keep.sum())
        else:
            rows, changed = np.compress(in_keep, rows, axis=1), True
    if not out_keep.all():
        rows, changed = rows[out_keep], True
        if node.op_type != "MatMul" and len(node.inputs) > 2:
            rw.slice_const(node, 2, out_keep, 2)  # a bias is (M,) or Gemm's C, as (N, M)
    if changed:
        set_const(rw.graph, node, i, np.ascontiguousarray(weight_from_out_channel(node, rows)))


def _rewrite_params(indices: tuple[int, ...]) -> Callable[[_Rewriter, Node], None]:
    def rewrite(rw: _Rewriter, node: Node) -> None:
        keep = rw.keep(node.outputs[0])
        if keep is None:
            return
        # BN/Scale parameters are (C,) vectors; a PRelu slope broadcasts to the output.
        rank = 2 if node.op_type in ("BatchNormalization", "Scale") else len(node.output.shape)
        for i in indices:
            rw.slice_const(node, i, keep, rank)

    return rewrite


def _rewrite_elementwise(rw: _Rewriter, node: Node) -> None:
    keep = rw.keep(node.output)
    if keep is None:
        return
    for i, v in enumerate(node.inputs):
        if v.const is not None:
            rw.slice_const(node, i, keep, len(node.output.shape))


def _rewrite_reshape(rw: _Rewriter, node: Node) -> None:
    keep = rw.keep(node.output)
    if keep is None or keep.all() or node.op_type != "Reshape":
        return
    shape = list(node.attrs["shape"])
    if shape[1] not in (-1, 0):
        shape[1] = int(keep.sum())
        node.attrs["shape"] = tuple(shape)


def _rewrite_split(rw: _Rewriter, node: Node) -> None:
    if node.attrs["axis"] % len(node.inputs[0].shape) != 1:
        return
    keeps = [rw.keep(v) for v in node.outputs]
    if any(k is None for k in keeps):
        return
    node.attrs["split"] = tuple(int(k.sum()) for k in keeps)


_REWRITES: dict[str, Callable[[_Rewriter, Node], None]] = {
    **{op: _rewrite_layer for op in MAC_OPS},
    "BatchNormalization": _rewrite_params((1, 2, 3, 4)),
    "Scale": _rewrite_params((1, 2)),
    "PRelu": _rewrite_params((1,)),
    **{op: _rewrite_elementwise for op in ("Add", "Sub", "Mul", "Sum")},
    "Reshape": _rewrite_reshape,
    "Split": _rewrite_split,
}


# -- the pass -------------------------------------------------------------------------------
@dataclass
class LayerThinning:
    """A layer whose output had zero channels: how many it had, kept, and why some stayed."""

    name: str
    op: str
    channels: int
    kept: int
    zero: int
    #: reason -> number of zero channels it kept
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class ThinResult:
    layers: list[LayerThinning]
    #: channels removed over all layers
    removed: int = 0


def _layer_reasons(an: _Analysis, node: Node, removed: set[int], alive: dict[int, str],
                   pins: dict[int, str]) -> LayerThinning | None:
    t = an.get(node.outputs[0])
    if id(node) not in an.layers or not t.zero.any():
        return None
    roots = an.atoms.roots(t.atoms)
    gone = np.isin(roots, list(removed)) if removed else np.zeros(len(roots), bool)
    reasons: dict[str, int] = {}
    for r in roots[t.zero & ~gone].tolist():
        why = pins.get(r) or alive.get(r, "kept")
        reasons[why] = reasons.get(why, 0) + 1
    return LayerThinning(node.name, node.op_type, len(roots), int((~gone).sum()),
                         int(t.zero.sum()), reasons)


def _analyse(graph: Graph) -> _Analysis:
    an = _Analysis(graph)
    for v in graph.inputs:
        an.fresh(v, pin=f"graph input {v.name!r}")
    for node in graph:
        _RULES.get(node.op_type, _unknown)(an, node)
    for v in graph.outputs:
        an.pin(v, f"graph output {v.name!r}")
    return an


def tied_layers(graph: Graph) -> list[list[str]]:
    """Groups (two or more, in graph order) of layers whose output channels are the same
    channels, channel by channel: the layers a residual Add sums. Pruning them with the same
    channels is what lets ``thin`` remove those channels."""
    an = _analyse(graph)
    groups: dict[tuple[int, ...], list[str]] = {}
    for node in graph:
        if id(node) in an.layers:
            key = tuple(an.atoms.roots(an.get(node.outputs[0]).atoms).tolist())
            groups.setdefault(key, []).append(node.name)
    return [names for names in groups.values() if len(names) > 1]


def thin(graph: Graph) -> ThinResult:
    """Remove every removable zero channel of ``graph`` in place (module docstring)."""
    an = _analyse(graph)

    atoms = an.atoms
    pins: dict[int, str] = {}
    for a, reason in atoms.pins:
        pins.setdefault(atoms.find(a), reason)
    alive: dict[int, str] = {}
    candidates: set[int] = set()
    for v in graph.values():
        t = an.get(v)
        if t is None:
            continue
        roots = atoms.roots(t.atoms)
        where = f"live in {v.name!r}" + (f" ({_where(v.producer)})" if v.producer else "")
        for r in np.unique(roots[~t.zero]).tolist():
            alive.setdefault(r, where)
        candidates.update(np.unique(roots[t.zero]).tolist())
    removed = {r for r in candidates if r not in alive and r not in pins}

    report = [r for r in (_layer_reasons(an, n, removed, alive, pins) for n in graph) if r]
    if removed:
        rw = _Rewriter(an, removed)
        for node in graph.nodes:
            fn = _REWRITES.get(node.op_type)
            if fn is not None and (node.op_type not in MAC_OPS or id(node) in an.layers):
                fn(rw, node)
        InferShapes().run(graph)
        graph.remove_unused_consts()
    return ThinResult(report, sum(la.channels - la.kept for la in report))


class Thin(Pass):
    """``thin`` as a pass (count = channels removed)."""

    name = "thin"

    def run(self, graph: Graph) -> int:
        return thin(graph).removed


def _check_rules() -> None:
    overlap = set(_REWRITES) - set(_RULES)
    if overlap:
        raise PassError(f"thinning rewrites without an analysis rule: {sorted(overlap)}")


_check_rules()
