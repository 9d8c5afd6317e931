"""Pruning sensitivity: how much each layer can lose alone (Li et al. 2017, section 3.3).

For each prunable layer and each ratio, a copy of the graph has only that layer pruned
(``fc.passes.prune``) and is evaluated by a *metric* where higher is better:

* ``accuracy``: top-1 accuracy of the first output over labelled inputs;
* ``distance``: ``-rel_l2`` of the outputs against the unpruned graph's on the same inputs
  (no labels needed; 0 is "unchanged").

The curves answer "which layers are fragile" (a plot, one curve per layer) and give a
per-layer ratio table that meets a budget: for a largest acceptable *drop* ``d`` of the
metric, each layer gets the largest ratio whose drop is at most ``d`` (``ratios_for``, the
seed tool's ``auto_make_yaml``). Layers are pruned alone, so the drops of a model pruned at
all of them add up roughly, not exactly: fine-tune, or ask for a smaller ``d``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fc.errors import PassError
from fc.ir.clone import clone
from fc.ir.core import Graph
from fc.ir.serialize import atomic_write
from fc.passes.prune import CRITERIA, prunable_layers, prune
from fc.passes.prune_config import PruneConfig, save_prune_config

__all__ = ["Evaluator", "accuracy_metric", "distance_metric", "SensitivityTable", "sensitivity",
           "ratios_for", "write_csv", "write_ratios_yaml", "plot"]

#: graph -> metric (higher is better)
Evaluator = Callable[[Graph], float]
Feeds = Sequence[Mapping[str, np.ndarray]]


def _outputs(graph: Graph, batches: Feeds) -> list[dict[str, np.ndarray]]:
    from fc.np_ops import run

    return [run(graph, dict(b)) for b in batches]


def accuracy_metric(batches: Feeds, labels: Sequence[np.ndarray]) -> Evaluator:
    """Top-1 accuracy of the graph's first output (N, classes) over ``batches``."""
    labels = [np.asarray(lab).reshape(-1) for lab in labels]
    total = sum(len(lab) for lab in labels)
    if not total or len(labels) != len(batches):
        raise PassError("accuracy needs labels for every batch, and at least one")

    def evaluate(graph: Graph) -> float:
        correct = 0
        for outs, lab in zip(_outputs(graph, batches), labels):
            logits = next(iter(outs.values()))
            if logits.ndim != 2 or len(logits) != len(lab):
                raise PassError(f"output {next(iter(outs))!r} {list(logits.shape)} is not "
                                f"(N={len(lab)}, classes): accuracy needs class scores")
            correct += int(np.sum(np.argmax(logits, axis=1) == lab))
        return correct / total

    return evaluate


def distance_metric(reference: Graph, batches: Feeds) -> Evaluator:
    """``-rel_l2`` of all outputs (concatenated) against ``reference`` on ``batches``."""
    ref = _outputs(reference, batches)
    ref_flat = np.concatenate([a.astype(np.float64).ravel() for o in ref for a in o.values()])
    norm = float(np.linalg.norm(ref_flat)) or 1.0

    def evaluate(graph: Graph) -> float:
        got = np.concatenate([a.astype(np.float64).ravel() for o in _outputs(graph, batches)
                              for a in o.values()])
        d = float(np.linalg.norm(got - ref_flat)) / norm
        return -d if d else 0.0  # not -0.0

    return evaluate


@dataclass
class SensitivityTable:
    """metric per (layer, ratio); ``baseline`` is the unpruned graph's metric."""

    metric: str
    criterion: str
    baseline: float
    ratios: list[float]
    #: layer (node name) -> metric at each ratio
    curves: dict[str, list[float]] = field(default_factory=dict)
    #: layer -> (op, filters)
    layers: dict[str, tuple[str, int]] = field(default_factory=dict)

    def drop(self, layer: str) -> list[float]:
        return [self.baseline - m for m in self.curves[layer]]


def sensitivity(graph: Graph, ratios: Sequence[float], evaluate: Evaluator, *,
                metric: str = "accuracy", criterion: str = "l1", layers: Sequence[str] | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> SensitivityTable:
    """Prune each layer alone at each ratio and evaluate (``graph`` is left untouched).

    ``layers`` (node names) defaults to every prunable layer; ``progress(done, total, what)``
    is called before each evaluation.
    """
    if criterion not in CRITERIA:
        raise PassError(f"pruning criterion {criterion!r} not one of {list(CRITERIA)}")
    ratios = sorted(float(r) for r in ratios)
    if not ratios or any(not 0.0 <= r < 1.0 for r in ratios):
        raise PassError(f"ratios {ratios} must be in [0, 1)")
    candidates = prunable_layers(graph)
    if layers is None:
        names = [k for k, v in candidates.items() if not isinstance(v, str)]
    else:
        bad = {k: candidates.get(k, "not a Conv/ConvTranspose/Gemm/MatMul layer") for k in layers
               if isinstance(candidates.get(k, ""), str)}
        if bad:
            raise PassError("cannot prune " + "; ".join(f"{k!r}: {v}" for k, v in bad.items()))
        names = list(layers)
    if not names:
        raise PassError(f"graph {graph.name!r} has no prunable layer")
    total = 1 + len(names) * len(ratios)
    if progress:
        progress(0, total, "baseline")
    table = SensitivityTable(metric, criterion, evaluate(graph), ratios)
    done = 1
    for name in names:
        node = graph.node_by_name(name)
        filters = node.outputs[0].shape[-1 if node.op_type in ("Gemm", "MatMul") else 1]
        table.layers[name] = (node.op_type, int(filters))
        curve = []
        for r in ratios:
            if progress:
                progress(done, total, f"{name} at {r:g}")
            if r == 0.0:
                curve.append(table.baseline)
            else:
                g = clone(graph)
                prune(g, {name: r}, criterion=criterion)
                curve.append(evaluate(g))
            done += 1
        table.curves[name] = curve
    if progress:
        progress(total, total, "done")
    return table


def ratios_for(table: SensitivityTable, max_drop: float) -> dict[str, float]:
    """Per layer, the largest ratio whose metric drop is at most ``max_drop`` (layers whose
    every ratio drops more get none)."""
    if not max_drop >= 0:
        raise PassError(f"the acceptable drop {max_drop} must be >= 0")
    out = {}
    for name in table.curves:
        # 1e-12: a drop equal to the budget (up to rounding) meets it.
        ok = [r for r, d in zip(table.ratios, table.drop(name)) if d <= max_drop + 1e-12]
        best = max(ok, default=0.0)
        if best > 0:
            out[name] = best
    return out


def write_csv(table: SensitivityTable, path: str | os.PathLike) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["layer", "op", "filters", "ratio", table.metric, "drop"])
        for name, curve in table.curves.items():
            op, filters = table.layers[name]
            for r, m, d in zip(table.ratios, curve, table.drop(name)):
                w.writerow([name, op, filters, r, repr(m), repr(d)])


def write_ratios_yaml(table: SensitivityTable, ratios: Mapping[str, float], max_drop: float,
                      path: str | os.PathLike) -> None:
    """The per-layer ratios as a pruning config (``fc.passes.prune_config``)."""
    save_prune_config(PruneConfig(dict(ratios), table.criterion), path, header=(
        f"fcc compress sensitivity: the largest ratio per layer whose {table.metric} drop is at "
        f"most {max_drop:g}\n(baseline {table.metric} {table.baseline:.6g}; each layer was "
        "pruned alone)"))


def plot(table: SensitivityTable, path: str | os.PathLike, *, title: str = "") -> None:
    """One curve per layer: the metric against the ratio, the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        cmap = plt.get_cmap("tab20")
        for i, (name, curve) in enumerate(table.curves.items()):
            ax.plot(table.ratios, curve, marker="o", ms=3, lw=1.2, color=cmap(i % 20), label=name)
        ax.axhline(table.baseline, color="grey", ls="--", lw=1, label="unpruned")
        ax.set_xlabel(f"pruning ratio ({table.criterion})")
        ax.set_ylabel(table.metric if table.metric == "accuracy" else "-rel_l2 of the outputs")
        ax.set_title(title or f"pruning sensitivity per layer ({len(table.curves)} layers)")
        ax.grid(True, alpha=0.3)
        ncol = max(1, math.ceil(len(table.curves) / 20))
        ax.legend(fontsize=7, ncol=ncol, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        with atomic_write(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
