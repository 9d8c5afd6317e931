"""Structured (filter) pruning: rank a layer's output channels and zero the weakest.

Each output channel ``m`` of a Conv / ConvTranspose / Gemm / MatMul is computed from one
slice ``F_m`` of its weight (its *filter*; the schema's ``weight_by_out_channel`` gives the
slices as rows, whatever the layout). A criterion scores the filters and the
``floor(ratio * M)`` lowest-scoring ones are zeroed (at least one filter stays):

* ``l1``: ``||F_m||_1`` (Li et al. 2017, "Pruning Filters for Efficient ConvNets");
* ``l2``: ``||F_m||_2``;
* ``fpgm``: ``sum_j ||F_m - F_j||_2`` (He et al. 2019, "Filter Pruning via Geometric
  Median"): a filter close to all the others is close to their geometric median, so the
  rest of the layer can stand in for it. Norms are not the point: FPGM removes redundant
  filters, not small ones.

Ties keep the lower index (a stable sort), so pruning is deterministic. Scores run in
float64.

Zeroing a filter makes the channel zero only if everything else that writes it is zero too,
so pruning also zeroes the channel's bias, and the ``scale`` and ``B`` of a
BatchNormalization or Scale reading the layer's output (BN then outputs ``0 * ... + 0``
whatever the statistics). That is what ``thin`` needs to remove the channel physically, and
what fine-tuning must keep zero (``PruneResult.masks``, in the IR weights' layout).

Not prunable: layers whose weight is not a constant, grouped Conv/ConvTranspose (the group
structure ties output channels to input channels), and layers whose output reaches a graph
output without another layer in between (pruning a classifier would delete classes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fc.errors import PassError
from fc.ir.complexity import MAC_OPS
from fc.ir.core import Graph, Node, Value
from fc.ir.schema import weight_by_out_channel, weight_from_out_channel, weight_input
from fc.passes.infra import replace_const_input
from fc.passes.layer_select import find_layers

__all__ = ["CRITERIA", "filter_scores", "select_filters", "LayerPruning", "PruneResult",
           "prunable_layers", "prune_filters", "prune"]

CRITERIA = ("l1", "l2", "fpgm")
#: per-channel ops whose affine parameters (inputs 1 and 2) zero a pruned channel
AFFINE_FOLLOWERS = ("BatchNormalization", "Scale")


def filter_scores(rows: np.ndarray, criterion: str) -> np.ndarray:
    """The (M,) float64 score of each filter ``rows[m]`` (lower = pruned first)."""
    f = np.asarray(rows, np.float64).reshape(len(rows), -1)
    if criterion == "l1":
        return np.abs(f).sum(axis=1)
    if criterion == "l2":
        return np.sqrt((f * f).sum(axis=1))
    if criterion == "fpgm":
        # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b: an (M, M) Gram matrix, not an (M, M, D) cube.
        sq = (f * f).sum(axis=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)
        np.fill_diagonal(d2, 0.0)
        return np.sqrt(np.maximum(d2, 0.0)).sum(axis=1)
    raise PassError(f"pruning criterion {criterion!r} not one of {list(CRITERIA)}")


def select_filters(scores: np.ndarray, ratio: float) -> np.ndarray:
    """Indices (ascending) of the ``floor(ratio * M)`` lowest scores, keeping one at least."""
    if not 0.0 <= ratio < 1.0:
        raise PassError(f"pruning ratio {ratio} must be in [0, 1)")
    m = len(scores)
    n = min(int(math.floor(ratio * m + 1e-9)), m - 1)
    return np.sort(np.argsort(scores, kind="stable")[:n])


@dataclass
class LayerPruning:
    """One layer: which filters were zeroed (or why none could be)."""

    name: str
    op: str
    filters: int
    ratio: float
    criterion: str
    pruned: tuple[int, ...] = ()
    #: the other weights that had the pruned channels zeroed (bias, BN scale/B, ...)
    zeroed: tuple[str, ...] = ()
    skipped: str = ""
    #: the layers pruned together with this one (the same channels: a residual Add sums them)
    tied: tuple[str, ...] = ()


@dataclass
class PruneResult:
    layers: list[LayerPruning]
    #: IR weight name -> bool array of its shape, True where pruning zeroed it; a fine-tuning
    #: loop multiplies by ``~mask`` after each step so pruned channels stay zero
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def _output_facing(graph: Graph) -> set[int]:
    """ids of values that reach a graph output through non-layer ops only."""
    facing = {id(v) for v in graph.outputs}
    for node in reversed(graph.nodes):
        if node.op_type not in MAC_OPS and any(id(v) in facing for v in node.outputs):
            facing.update(id(v) for v in node.inputs if v is not None and v.const is None)
    return facing


def _refusal(node: Node, facing: set[int]) -> str | None:
    i = weight_input(node.op_type)
    w = node.inputs[i] if i is not None and i < len(node.inputs) else None
    if w is None or w.const is None:
        return "its weight is not a constant"
    if not np.issubdtype(w.const.dtype, np.floating):
        return f"its weight {w.name!r} is {w.const.dtype}, not floating"
    if node.attrs.get("group", 1) != 1:
        return f"grouped {node.op_type} (group={node.attrs['group']})"
    if id(node.outputs[0]) in facing:
        return "its output reaches a graph output with no layer in between"
    return None


def prunable_layers(graph: Graph) -> dict[str, Node | str]:
    """Every layer (Conv, ConvTranspose, Gemm, MatMul) in graph order -> itself when it can
    be pruned, else the reason it cannot."""
    facing = _output_facing(graph)
    out: dict[str, Node | str] = {}
    for node in graph:
        if node.op_type in MAC_OPS:
            out[node.name] = _refusal(node, facing) or node
    return out


def _zero_channels(graph: Graph, node: Node, index: int, channels: np.ndarray,
                   masks: dict[str, np.ndarray]) -> str:
    """Zero entries ``channels`` of the per-channel vector input ``index`` of ``node``."""
    v = node.inputs[index]
    if v.const is None:
        raise PassError(f"node {node.name!r} ({node.op_type}): input {v.name!r} is not a constant")
    arr = np.array(v.const, copy=True)
    flat = arr.reshape(-1)
    flat[channels] = 0
    new = replace_const_input(graph, node, index, arr, f"{v.name}_pruned")
    mask = np.zeros(arr.shape, bool)
    mask.reshape(-1)[channels] = True
    _add_mask(masks, v, new, mask)
    return new.name


def _add_mask(masks: dict[str, np.ndarray], old: Value, new: Value, mask: np.ndarray) -> None:
    """Record ``mask`` for weight ``new`` (which replaced ``old``, or is ``old`` updated in
    place: then the masks of earlier prunings of it accumulate)."""
    if new is old and old.name in masks:
        mask = mask | masks[old.name]
    masks[new.name] = mask


def prune_filters(graph: Graph, node: Node, channels: Iterable[int],
                  masks: dict[str, np.ndarray] | None = None) -> tuple[str, ...]:
    """Zero output channels ``channels`` of layer ``node``: its filters, its bias and the
    affine parameters of a BatchNormalization/Scale reading it. Returns the other weights
    zeroed. Shared weights are copied, never changed under another user."""
    masks = {} if masks is None else masks
    channels = np.asarray(sorted(set(int(c) for c in channels)), dtype=np.int64)
    i = weight_input(node.op_type)
    w: Value = node.inputs[i]
    rows = np.array(weight_by_out_channel(node, w.const), copy=True)
    if channels.size and not 0 <= channels[0] <= channels[-1] < len(rows):
        raise PassError(f"node {node.name!r}: channels {channels.tolist()} outside 0..{len(rows) - 1}")
    rows[channels] = 0
    mask_rows = np.zeros(rows.shape, bool)
    mask_rows[channels] = True
    new_w = replace_const_input(graph, node, i, weight_from_out_channel(node, rows)
                                .astype(w.const.dtype), f"{w.name}_pruned")
    _add_mask(masks, w, new_w, weight_from_out_channel(node, mask_rows))
    zeroed = []
    b = i + 1
    if b < len(node.inputs) and node.inputs[b] is not None and node.op_type != "MatMul":
        if node.op_type == "Gemm" and node.inputs[b].shape != (len(rows),):
            raise PassError(f"node {node.name!r} (Gemm): bias {node.inputs[b].name!r} "
                            f"{list(node.inputs[b].shape)} is not per output channel")
        zeroed.append(_zero_channels(graph, node, b, channels, masks))
    _zero_followers(graph, node.outputs[0], channels, masks, zeroed)
    return tuple(zeroed)


def _zero_followers(graph: Graph, v: Value, channels: np.ndarray, masks: dict[str, np.ndarray],
                    zeroed: list[str]) -> None:
    """Zero ``channels`` of what reads ``v`` channel by channel: a BN/Scale's affine terms, and
    through channel-wise ops that keep zeros (ReLU, pooling) a depthwise Conv's filters of
    those channels (and, recursively, what follows it). Otherwise a BN or a depthwise bias
    would turn the pruned channels into constants, which ``thin`` cannot remove."""
    from fc.passes.thin import channelwise_keeps_zero

    for user in v.users:
        if user.inputs[0] is not v:
            continue
        if user.op_type in AFFINE_FOLLOWERS:
            for k in (1, 2):
                if k < len(user.inputs) and user.inputs[k] is not None:
                    zeroed.append(_zero_channels(graph, user, k, channels, masks))
            _zero_followers(graph, user.output, channels, masks, zeroed)
        elif channelwise_keeps_zero(user):
            _zero_followers(graph, user.outputs[0], channels, masks, zeroed)
        elif (user.op_type == "Conv" and user.attrs["group"] == v.shape[1] > 1
              and user.inputs[1].const is not None):
            k = user.inputs[1].shape[0] // user.attrs["group"]  # depthwise multiplier
            more = prune_filters(graph, user, (channels[:, None] * k + np.arange(k)).reshape(-1),
                                 masks)
            zeroed.extend((user.inputs[1].name, *more))


def _group_rows(graph: Graph, names: list[str]) -> np.ndarray:
    """The filters of one layer as rows; of tied layers side by side, each layer's scaled to
    unit norm (so a layer with larger weights does not decide alone)."""
    if len(names) == 1:
        node = graph.node_by_name(names[0])
        return weight_by_out_channel(node, node.inputs[weight_input(node.op_type)].const)
    parts = []
    for name in names:
        node = graph.node_by_name(name)
        rows = weight_by_out_channel(node, node.inputs[weight_input(node.op_type)].const)
        rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
        parts.append(rows / (np.linalg.norm(rows) or 1.0))
    return np.concatenate(parts, axis=1)


def prune(graph: Graph, ratios: Mapping[str, float], *, criterion: str = "l1",
          default: float = 0.0, exclude: Iterable[str] = (), skip_first: bool = False,
          coupled: bool = True) -> PruneResult:
    """Prune ``graph`` in place: each layer at ``ratios[key]`` (a node, weight or source
    name), the others at ``default``; ``exclude`` (keys) and, with ``skip_first``, the first
    layer are left alone. Returns what was done per layer and the masks.

    ``coupled``: layers whose outputs a residual Add sums (``thin.tied_layers``) are pruned
    together when all of them are to be pruned: the same channels, chosen by the criterion
    on their joint filters (each layer's filters scaled to unit norm, side by side), at the
    smallest of their ratios, so that ``thin`` can remove those channels. Otherwise each
    layer is pruned alone, and a residual Add keeps the union of its inputs' channels.
    """
    if criterion not in CRITERIA:
        raise PassError(f"pruning criterion {criterion!r} not one of {list(CRITERIA)}")
    for key, r in {**ratios, "default": default}.items():
        if not 0.0 <= r < 1.0:
            raise PassError(f"pruning ratio {r} for {key!r} must be in [0, 1)")
    named = find_layers(graph, [*ratios, *exclude], MAC_OPS)
    per_node = {named[k].name: r for k, r in ratios.items()}
    excluded = {named[k].name for k in exclude}
    layers = prunable_layers(graph)
    if skip_first and layers:
        excluded.add(next(iter(layers)))

    wanted: dict[str, float] = {}
    result = PruneResult([])
    for name, entry in layers.items():
        ratio = per_node.get(name, default)
        if name in excluded or (ratio == 0.0 and name not in per_node):
            continue
        if isinstance(entry, str):
            if name in per_node:  # asked for by name: say why not
                result.layers.append(LayerPruning(name, graph.node_by_name(name).op_type, 0,
                                                  ratio, criterion, skipped=entry))
            continue
        wanted[name] = ratio
    groups: dict[str, list[str]] = {}
    if coupled:
        from fc.passes.thin import tied_layers

        for group in tied_layers(graph):
            if all(wanted.get(n, 0.0) > 0 for n in group):
                for n in group:
                    groups[n] = group
    done: set[str] = set()
    for name in wanted:
        if name in done:
            continue
        group = groups.get(name, [name])
        nodes = [graph.node_by_name(n) for n in group]
        rows = _group_rows(graph, group)
        ratio = min(wanted[n] for n in group)
        pruned = select_filters(filter_scores(rows, criterion), ratio)
        for node in nodes:
            zeroed = prune_filters(graph, node, pruned, result.masks) if pruned.size else ()
            result.layers.append(LayerPruning(node.name, node.op_type, len(rows), ratio, criterion,
                                              tuple(int(c) for c in pruned), zeroed,
                                              tied=tuple(n for n in group if n != node.name)))
            done.add(node.name)
    order = {n: i for i, n in enumerate(layers)}
    result.layers.sort(key=lambda la: order[la.name])
    return result
