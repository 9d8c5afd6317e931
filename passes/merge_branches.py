"""Structural re-parameterization: parallel convolution branches summed into one convolution.

ACNet (Ding et al. 2019: a k x k, a 1 x k and a k x 1 convolution, each with its BN) and
RepVGG (Ding et al. 2021: a 3 x 3 and a 1 x 1 convolution and an identity, each with its BN)
train several branches over the same input ``x`` and add them. Convolution is linear in its
kernel, so after BN folding (which turns each branch into ``Conv(x, W_i, b_i)``, and a BN on
the identity into ``Scale(x, s, t)``)::

    sum_i Conv(x, W_i, b_i) = Conv(x, sum_i embed(W_i), sum_i b_i)

where ``embed`` places each kernel inside the largest one. Per spatial axis with dilation d,
a branch with kernel k and pads (p_begin, p_end) reads ``x[o*s - p_begin + u*d]``; in a kernel
of size K with pads (P, Q) it sits at offset ``(P - p_begin) / d``, which must be a whole
number. The merged pads are ``P = max p_begin`` and ``Q = max(p_end + (K - off - k) * d)``,
so every branch's reads lie inside the merged padded input (taps outside a branch's own
kernel are zero for it); the merged output size must then equal the branches'. The
identity is the 1 x 1 kernel ``W[m, m mod (C/g)] = 1`` (``s[m]`` for a Scale, whose shift
``t`` joins the bias); it needs stride 1 and as many output as input channels. Sums run in
float64 and are rounded once.

The rule is anchored on a binary ``Add`` of two branches (at least one a Conv): the Add
becomes the merged Conv (keeping its output, name and fused activation), the branches are
erased. A three-branch block (``Add(Add(a, b), c)``) merges in two steps of the same sweep.
Refusals: the operands read different inputs, strides/dilations/groups differ, a branch
carries an activation or non-constant weights, the kernels do not align, shapes broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fc.ir.core import Graph, Node, Value
from fc.passes.fold_batchnorm import bn_affine
from fc.passes.infra import FusionPass, FusionRule, Match, drop_dead_const, retype_node

__all__ = ["MergeBranches", "merge_branches_pass"]

CONV_ATTRS = ("strides", "dilations", "group")


@dataclass
class _Branch:
    """One operand of the Add as a kernel over the shared input."""

    x: Value
    node: Node | None  # the Conv / Scale / BN to erase (None: the input itself)
    w: np.ndarray | None  # (M, C/g, kh, kw) float64; None: identity (scaled by s)
    b: np.ndarray | None  # (M,) float64 or None
    pads: tuple[int, int, int, int]
    s: np.ndarray | None = None  # identity scale (None: 1)


def _branch(v: Value) -> _Branch | str:
    p = v.producer
    if p is not None and p.op_type == "Conv":
        if p.attrs["activation"]:
            return f"Conv {p.name!r} carries activation {p.attrs['activation']!r}"
        w, b = p.inputs[1], (p.inputs[2] if len(p.inputs) > 2 else None)
        for t in (w, b):
            if t is not None and (t.const is None or not np.issubdtype(t.const.dtype, np.floating)):
                return f"Conv {p.name!r} weight {t.name!r} is not a floating constant"
        return _Branch(p.inputs[0], p, w.const.astype(np.float64),
                       None if b is None else b.const.astype(np.float64), p.attrs["pads"])
    if p is not None and p.op_type in ("Scale", "BatchNormalization"):
        if p.attrs.get("activation"):
            return f"Scale {p.name!r} carries activation {p.attrs['activation']!r}"
        st = bn_affine(p)
        if isinstance(st, str):
            return st
        return _Branch(p.inputs[0], p, None, st[1], (0, 0, 0, 0), st[0])
    return _Branch(v, None, None, None, (0, 0, 0, 0))


def _identity(c: int, group: int, s: np.ndarray | None, dtype: type = np.float64) -> np.ndarray:
    cg = c // group
    w = np.zeros((c, cg, 1, 1), dtype)
    w[np.arange(c), np.arange(c) % cg, 0, 0] = 1.0 if s is None else s
    return w


def _layout(branches: list[_Branch], attrs: dict, in_hw: tuple[int, ...], out_hw: tuple[int, ...]
            ) -> tuple[tuple[int, int], tuple[int, int, int, int], list[tuple[int, int]]] | str:
    """(merged kernel size, merged pads, offset of each branch) or why they do not align."""
    sizes = [(1, 1) if br.w is None else br.w.shape[2:] for br in branches]
    kernel, offsets = [0, 0], [[0, 0] for _ in branches]
    begin, end = [0, 0], [0, 0]
    for axis in (0, 1):
        d, s = attrs["dilations"][axis], attrs["strides"][axis]
        begin[axis] = max(br.pads[axis] for br in branches)
        for i, br in enumerate(branches):
            off, rem = divmod(begin[axis] - br.pads[axis], d)
            if rem:
                return (f"pads {list(br.pads)} do not align with {begin[axis]} on axis {axis} at "
                        f"dilation {d}")
            offsets[i][axis] = off
        kernel[axis] = max(off[axis] + k[axis] for off, k in zip(offsets, sizes))
        # Every branch's last read must lie in the merged padded input; then the merged
        # output has the branches' size (checked), and kernel taps outside a branch are 0.
        end[axis] = max(br.pads[axis + 2] + (kernel[axis] - off[axis] - k[axis]) * d
                        for br, off, k in zip(branches, offsets, sizes))
        size = (in_hw[axis] + begin[axis] + end[axis] - d * (kernel[axis] - 1) - 1) // s + 1
        if size != out_hw[axis]:
            return (f"the merged {kernel[axis]}-tap kernel would give {size} outputs on axis "
                    f"{axis}, the branches {out_hw[axis]}")
    return (kernel[0], kernel[1]), (begin[0], begin[1], end[0], end[1]), \
        [tuple(o) for o in offsets]


class MergeBranches(FusionRule):
    """``Add(branch(x), branch(x))`` of Conv / Scale / identity branches becomes one Conv."""

    name = "merge_branches"
    anchor_ops = ("Add",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        a, b = node.inputs
        if not (a.shape == b.shape == node.output.shape) or len(a.shape) != 4:
            return "operands are not two 4-D tensors of the same shape"
        branches = [_branch(a), _branch(b)]
        for br in branches:
            if isinstance(br, str):
                return br
        convs = [br.node for br in branches if br.w is not None]
        if not convs:
            return "neither operand is a Conv"
        ref = convs[0]
        x = ref.inputs[0]
        for br in branches:
            if br.x is not x:
                return (f"operands read different inputs ({x.name!r} and {br.x.name!r}), not "
                        "branches of one block")
            if br.w is not None:
                diff = [k for k in CONV_ATTRS if br.node.attrs[k] != ref.attrs[k]]
                if diff:
                    return f"Conv {ref.name!r} and {br.node.name!r} differ in {diff}"
        if any(br.w is None for br in branches):  # an identity branch
            if tuple(ref.attrs["strides"]) != (1, 1) or x.shape != node.output.shape:
                return f"an identity branch needs stride 1 and {x.shape} -> {node.output.shape}"
        layout = _layout(branches, ref.attrs, x.shape[2:], node.output.shape[2:])
        if isinstance(layout, str):
            return layout
        nodes = [br.node for br in branches if br.node is not None] + [node]
        if len(set(map(id, nodes))) != len(nodes):
            return "both operands are the same branch"
        return Match(node, nodes, x=x, ref=ref, branches=branches, layout=layout)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, ref, x = match.anchor, match.ref, match.x
        kernel, pads, offsets = match.layout
        group = ref.attrs["group"]
        m, cg = ref.inputs[1].shape[:2]
        w = np.zeros((m, cg, *kernel))
        b = np.zeros(m)
        for br, (oh, ow) in zip(match.branches, offsets):
            k = _identity(m, group, br.s) if br.w is None else br.w
            w[:, :, oh:oh + k.shape[2], ow:ow + k.shape[3]] += k
            if br.b is not None:
                b += br.b
        dtype = ref.inputs[1].const.dtype
        wv = graph.add_const(f"{ref.inputs[1].name}_merged", w.astype(dtype))
        bv = graph.add_const(f"{node.name}_bias", b.astype(dtype))
        old = [t for br in match.branches if br.node is not None for t in br.node.inputs[1:]]
        act = {k: node.attrs[k] for k in ("activation", "act_alpha", "act_beta")}
        attrs = {**{k: ref.attrs[k] for k in CONV_ATTRS}, "pads": pads, **act}
        provenance = [p for br in match.branches if br.node is not None for p in br.node.provenance]
        retype_node(node, "Conv", [x, wv, bv], attrs, provenance=provenance)
        for br in match.branches:
            if br.node is not None:
                graph.erase_node(br.node)
        for t in old:
            drop_dead_const(graph, t)


def merge_branches_pass() -> FusionPass:
    return FusionPass(MergeBranches())
