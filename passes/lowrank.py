"""Low-rank decomposition of Gemm and Conv layers by truncated SVD.

A layer whose weight, viewed as a matrix ``T``, has singular values ``s_1 >= s_2 >= ...``
is replaced by two layers whose product is the rank-``r`` truncation
``T_r = U_r diag(s_r) V_r^T``, split evenly as ``(U_r sqrt(s_r)) (sqrt(s_r) V_r^T)``. By
Eckart-Young ``T_r`` is the closest rank-``r`` matrix to ``T`` in the Frobenius norm, and::

    ||T - T_r||_F / ||T||_F = sqrt(sum_{i>r} s_i^2 / sum_i s_i^2)

the square root of the *discarded energy*; full rank reproduces the layer exactly (up to
one float32 rounding of each factor). The three schemes:

* **Gemm** ``y = alpha * A' B' + beta * C`` with B' (K, N): ``B' = P Q`` with P (K, r) and
  Q (r, N), so ``y = (alpha * A' P) Q + beta * C``: a Gemm to r features with no bias, then
  a Gemm with the bias and the fused activation. Each factor keeps the layer's ``transB``
  layout. Cost per row: K*N -> r*(K + N).
* **channel** (Conv, W (M, C, kh, kw); Zhang et al. 2015, the "k x k with r filters then
  1 x 1" form): ``T = W`` as (M, C*kh*kw); the first Conv has the r filters
  ``sqrt(s) V^T`` as (r, C, kh, kw) and the layer's strides, pads and dilations; the second
  is a 1x1 Conv with ``U sqrt(s)`` as (M, r, 1, 1), the bias and the activation. Cost per
  output pixel: M*C*kh*kw -> r*(C*kh*kw + M).
* **spatial** (Conv; Jaderberg et al. 2014, scheme 2): ``T[(c, i), (m, j)] = W[m, c, i, j]``
  as (C*kh, M*kw); a vertical kh x 1 Conv to r channels with the vertical stride, pads and
  dilation, then a horizontal 1 x kw Conv with the horizontal ones, the bias and the
  activation. Padding the input horizontally equals padding the intermediate, because the
  first Conv has no bias and is one column wide. Cost: r*C*kh per pixel of the (Ho, W)
  intermediate plus M*r*kw per output pixel.

The rank of a layer is given (``rank``), or the smallest keeping a fraction ``energy`` of
``sum s_i^2``, or the largest whose FLOPs stay within a fraction ``flops`` of the layer's. A
chosen (not given) rank that saves no FLOPs leaves the layer as it is, with the reason.
FLOPs count multiply-accumulates as ``fc.ir.complexity`` does. The SVD runs in float64; each
factor is rounded once to the weight's dtype.

Grouped convolutions are left alone (their filters see disjoint inputs: a shared basis of
r filters would mix the groups), as are layers whose weight is not a constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from fc.errors import PassError
from fc.ir.core import Graph, Node, Value
from fc.passes.infra import drop_dead_const, retype_node
from fc.passes.layer_select import find_layers

__all__ = ["SCHEMES", "RankChoice", "LayerDecomposition", "decompose", "decompose_layer",
           "layer_matrix", "choose_rank"]

SCHEMES = ("channel", "spatial")
LAYER_OPS = ("Conv", "Gemm")
ACT_KEYS = ("activation", "act_alpha", "act_beta")


@dataclass(frozen=True)
class RankChoice:
    """How one layer's rank is chosen: exactly one of ``rank``, ``energy``, ``flops``.

    ``scheme`` is ``channel`` or ``spatial`` for a Conv (a Gemm has one form).
    """

    rank: int | None = None
    energy: float | None = None
    flops: float | None = None
    scheme: str = "channel"

    def __post_init__(self) -> None:
        given = [k for k in ("rank", "energy", "flops") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PassError(f"a rank choice needs exactly one of rank, energy, flops (got "
                            f"{given or 'none'})")
        if self.rank is not None and self.rank < 1:
            raise PassError(f"rank {self.rank} must be >= 1")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise PassError(f"energy {self.energy} must be in (0, 1]")
        if self.flops is not None and not 0.0 < self.flops <= 1.0:
            raise PassError(f"flops {self.flops} must be in (0, 1]")
        if self.scheme not in SCHEMES:
            raise PassError(f"scheme {self.scheme!r} not one of {list(SCHEMES)}")


@dataclass
class LayerDecomposition:
    """What happened to one layer; ``skipped`` is the reason it was left alone ("" = done)."""

    name: str
    op: str
    scheme: str
    rank: int
    full_rank: int
    #: sum of the kept s_i^2 over sum s_i^2
    energy_kept: float
    #: ||T - T_r||_F / ||T||_F = sqrt(1 - energy_kept)
    weight_error: float
    flops_before: float
    flops_after: float
    skipped: str = ""


def _weight(node: Node) -> Value | str:
    w = node.inputs[1]
    if w.const is None:
        return f"weight {w.name!r} is not a constant"
    if not np.issubdtype(w.const.dtype, np.floating):
        return f"weight {w.name!r} is {w.const.dtype}, not floating"
    return w


def layer_matrix(node: Node, scheme: str) -> np.ndarray | str:
    """The float64 matrix ``T`` whose SVD decomposes ``node`` (module docstring), or why the
    layer cannot be decomposed with ``scheme``."""
    if node.op_type not in LAYER_OPS:
        return f"{node.op_type} is not one of {list(LAYER_OPS)}"
    w = _weight(node)
    if isinstance(w, str):
        return w
    a = w.const.astype(np.float64)
    if node.op_type == "Gemm":
        return a.T if node.attrs["transB"] else a
    if node.attrs["group"] != 1:
        return f"grouped convolution (group={node.attrs['group']})"
    m, c, kh, kw = a.shape
    if scheme == "channel":
        return a.reshape(m, c * kh * kw)
    if kh == 1 or kw == 1:
        return f"a {kh}x{kw} kernel has no spatial factorization"
    return a.transpose(1, 2, 0, 3).reshape(c * kh, m * kw)


def _positions(node: Node) -> tuple[int, int]:
    """(rows, intermediate positions): what the two factors' MACs scale with."""
    out = node.outputs[0].shape
    if node.op_type == "Gemm":
        a = node.inputs[0].shape
        rows = a[1] if node.attrs["transA"] else a[0]
        return rows, rows
    n, _, ho, wo = out
    return n * ho * wo, n * ho * node.inputs[0].shape[3]


def _flops(node: Node, scheme: str, rank: int | None) -> float:
    """MACs of the layer (``rank=None``) or of its two factors at ``rank``."""
    w = node.inputs[1].shape
    rows, inter = _positions(node)
    if rank is None:
        return float(rows * math.prod(w))
    if node.op_type == "Gemm":
        k, n = (w[1], w[0]) if node.attrs["transB"] else w
        return float(rows * rank * (k + n))
    m, c, kh, kw = w
    if scheme == "channel":
        return float(rows * rank * (c * kh * kw + m))
    return float(inter * rank * c * kh + rows * rank * m * kw)


def choose_rank(node: Node, choice: RankChoice, s: np.ndarray) -> tuple[int, str]:
    """(rank, reason to skip or "") for ``node`` with singular values ``s``."""
    full = len(s)
    if choice.rank is not None:
        if choice.rank > full:
            raise PassError(f"node {node.name!r} ({node.op_type}): rank {choice.rank} exceeds "
                            f"the full rank {full}")
        return choice.rank, ""
    before = _flops(node, choice.scheme, None)
    per_rank = _flops(node, choice.scheme, 1)
    break_even = math.ceil(before / per_rank) - 1  # the largest rank that saves FLOPs
    if choice.energy is not None:
        energy = np.cumsum(s**2) / np.sum(s**2) if np.any(s) else np.ones(full)
        # The smallest r keeping the energy; the 1e-12 forgives float64 rounding of 1.0.
        rank = int(np.searchsorted(energy, choice.energy - 1e-12) + 1)
        rank = min(rank, full)
        if rank > break_even:
            return rank, (f"keeping {choice.energy:g} of the energy needs rank {rank}, which "
                          f"saves no FLOPs (break-even rank {break_even})")
        return rank, ""
    rank = min(int(choice.flops * before // per_rank), full)
    if rank < 1:
        return 1, f"rank 1 costs {per_rank / before:.3g} of the layer's FLOPs > {choice.flops:g}"
    if rank > break_even:
        return rank, f"rank {rank} saves no FLOPs (break-even rank {break_even})"
    return rank, ""


def _factor_names(graph: Graph, w: Value) -> tuple[str, str]:
    """``conv1.weight`` -> ``conv1.0.weight``, ``conv1.1.weight`` (the two factors read like
    an ``nn.Sequential`` in a reconstructed state dict); other names get suffixes."""
    if w.name.endswith(".weight"):
        prefix = w.name[: -len(".weight")]
        return f"{prefix}.0.weight", f"{prefix}.1.weight"
    return f"{w.name}_lowrank0", f"{w.name}_lowrank1"


def _rewrite(graph: Graph, node: Node, scheme: str, p: np.ndarray, q: np.ndarray) -> None:
    """Replace ``node`` by its factors: T_r = p @ q with p (rows of T, r), q (r, cols of T)."""
    w = node.inputs[1]
    dtype = w.const.dtype
    r = p.shape[1]
    name0, name1 = _factor_names(graph, w)
    x, bias = node.inputs[0], (node.inputs[2] if len(node.inputs) > 2 else None)
    act = {k: node.attrs[k] for k in ACT_KEYS}
    if node.op_type == "Gemm":
        t = node.attrs["transB"]
        f0 = graph.add_const(name0, (p.T if t else p).astype(dtype))
        f1 = graph.add_const(name1, (q.T if t else q).astype(dtype))
        first = {"alpha": node.attrs["alpha"], "transA": node.attrs["transA"], "transB": t}
        second = {"beta": node.attrs["beta"], "transB": t, **act}
    elif scheme == "channel":
        m, c, kh, kw = w.shape
        f0 = graph.add_const(name0, q.reshape(r, c, kh, kw).astype(dtype))
        f1 = graph.add_const(name1, p.reshape(m, r, 1, 1).astype(dtype))
        first = {k: node.attrs[k] for k in ("strides", "pads", "dilations")}
        second = dict(act)
    else:
        m, c, kh, kw = w.shape
        f0 = graph.add_const(name0, p.reshape(c, kh, r).transpose(2, 0, 1)[..., None]
                             .astype(dtype))
        f1 = graph.add_const(name1, q.reshape(r, m, kw).transpose(1, 0, 2)[:, :, None, :]
                             .astype(dtype))
        (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
        top, left, bottom, right = node.attrs["pads"]
        first = {"strides": (sh, 1), "dilations": (dh, 1), "pads": (top, 0, bottom, 0)}
        second = {"strides": (1, sw), "dilations": (1, dw), "pads": (0, left, 0, right), **act}
    h = graph.add_node(node.op_type, [x, f0], first, name=f"{node.name}_lowrank",
                       provenance=node.provenance, before=node).output
    # The layer itself becomes the second factor: its name, output value and provenance stay.
    retype_node(node, node.op_type, [h, f1] + ([bias] if bias is not None else []), second)
    drop_dead_const(graph, w)


def decompose_layer(graph: Graph, node: Node, choice: RankChoice) -> LayerDecomposition:
    """Decompose one Conv/Gemm in place (or say why not, in ``skipped``)."""
    scheme = "gemm" if node.op_type == "Gemm" else choice.scheme
    t = layer_matrix(node, choice.scheme)
    if isinstance(t, str):
        return LayerDecomposition(node.name, node.op_type, scheme, 0, 0, 1.0, 0.0, 0.0, 0.0, t)
    u, s, vt = np.linalg.svd(t, full_matrices=False)
    rank, skipped = choose_rank(node, choice, s)
    total = float(np.sum(s**2))
    kept = float(np.sum(s[:rank] ** 2) / total) if total else 1.0
    error = math.sqrt(max(0.0, float(np.sum(s[rank:] ** 2)) / total)) if total else 0.0
    before = _flops(node, choice.scheme, None)
    after = before if skipped else _flops(node, choice.scheme, rank)
    report = LayerDecomposition(node.name, node.op_type, scheme, rank, len(s), kept, error,
                                before, after, skipped)
    if not skipped:
        root = np.sqrt(s[:rank])
        _rewrite(graph, node, choice.scheme, u[:, :rank] * root, root[:, None] * vt[:rank])
    return report


def decompose(graph: Graph, choice: RankChoice, *, layers: Mapping[str, RankChoice] | None = None,
              exclude: Iterable[str] = (), only: Iterable[str] | None = None
              ) -> list[LayerDecomposition]:
    """Decompose every Conv and Gemm of ``graph`` in place, in graph order.

    ``layers`` overrides ``choice`` per layer; layers in ``exclude`` are left alone and with
    ``only`` only the layers named there are considered (keys are node, weight or source
    names: ``fc.passes.layer_select``). Returns one entry per layer considered (decomposed or
    skipped, with the reason).
    """
    layers = dict(layers or {})
    exclude, only = list(exclude), None if only is None else list(only)
    named = find_layers(graph, [*layers, *exclude, *(only or [])], LAYER_OPS)
    per_node = {named[k].name: c for k, c in layers.items()}
    excluded = {named[k].name for k in exclude}
    wanted = None if only is None else {named[k].name for k in only}
    out = []
    for node in graph.nodes:
        if node.op_type not in LAYER_OPS or node.name in excluded:
            continue
        if wanted is not None and node.name not in wanted:
            continue
        out.append(decompose_layer(graph, node, per_node.get(node.name, choice)))
    return out
