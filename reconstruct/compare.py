"""Distances between a reconstructed model and its reference, for every reconstructor.

Framework-neutral: arrays in, a :class:`Report` out. Per output it gives the **distance**
(relative L2, ``||y - r|| / ||r||``), ``max_abs`` and ``cosine`` (DESIGN.md's vocabulary,
computed by ``fc.testing``), and the worst output. With per-layer values it compares every
IR value the reconstruction also produced with the golden executor's, in graph order, and
names the first node above the tolerance together with its provenance (the source-framework
layers it came from), so a report says *where* a distance appears.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph, Node
from fc.testing import cosine, max_abs, rel_l2

__all__ = ["DEFAULT_TOL", "Distance", "LayerDistance", "Report", "distance", "compare_outputs",
           "compare_layers", "LayerObserver"]

#: the seed's threshold: "if distance > 1e-3, report it"
DEFAULT_TOL = 1e-3


@dataclass(frozen=True)
class Distance:
    """How far one tensor is from its reference."""

    name: str
    rel_l2: float
    max_abs: float
    cosine: float
    shape: tuple[int, ...] = ()

    def line(self) -> str:
        return (f"{self.name}: distance {_fmt(self.rel_l2)}  max_abs {_fmt(self.max_abs)}  "
                f"cosine {self.cosine:.9f}")


@dataclass(frozen=True)
class LayerDistance(Distance):
    """A per-layer distance: the IR value, the node computing it and where that came from."""

    node: str = ""
    op_type: str = ""
    provenance: tuple[str, ...] = ()

    def where(self) -> str:
        src = f" from {', '.join(self.provenance)}" if self.provenance else ""
        return f"node {self.node!r} ({self.op_type}){src}"


def _fmt(x: float) -> str:
    return f"{x:.3e}" if math.isfinite(x) else str(x)


def distance(name: str, got: Any, ref: Any) -> Distance:
    """The distance of ``got`` from ``ref``; a shape mismatch is an error naming both."""
    y, r = np.asarray(got), np.asarray(ref)
    if y.shape != r.shape:
        raise FcError(f"{name}: shape {list(y.shape)} differs from the reference's {list(r.shape)}")
    finite = bool(np.all(np.isfinite(y)))
    d = rel_l2(y, r) if finite else float("inf")
    return Distance(name, d, max_abs(y, r) if finite else float("inf"), cosine(y, r) if finite
                    else float("nan"), tuple(r.shape))


def compare_outputs(got: Mapping[str, Any], ref: Mapping[str, Any]) -> list[Distance]:
    """One distance per reference output, in the reference's order."""
    missing = [k for k in ref if k not in got]
    if missing:
        raise FcError(f"the reconstruction gave no output {missing}; it gave {list(got)}")
    return [distance(k, got[k], r) for k, r in ref.items()]


def compare_layers(graph: Graph, got: Mapping[str, Any], golden: Mapping[str, Any]
                   ) -> list[LayerDistance]:
    """Every node output present in both ``got`` and ``golden``, in graph order."""
    out = []
    for node in graph:
        for v in node.outputs:
            if v.name in got and v.name in golden:
                d = distance(v.name, got[v.name], golden[v.name])
                out.append(LayerDistance(**asdict(d), node=node.name, op_type=node.op_type,
                                         provenance=tuple(node.provenance)))
    return out


class LayerObserver:
    """A golden-executor observer (``fc.np_ops.run(..., observer=...)``) that compares each
    node's outputs with ``got`` as the executor produces them, so the golden intermediates
    are never all held at once. The distances collect in ``layers``, in graph order."""

    def __init__(self, got: Mapping[str, Any]):
        self.got = got
        self.layers: list[LayerDistance] = []

    def __call__(self, node: Node, outputs: tuple[np.ndarray, ...]) -> None:
        for v, arr in zip(node.outputs, outputs):
            if v.name in self.got:
                d = distance(v.name, self.got[v.name], arr)
                self.layers.append(LayerDistance(**asdict(d), node=node.name, op_type=node.op_type,
                                                 provenance=tuple(node.provenance)))


@dataclass
class Report:
    """The outcome of one reconstruction check."""

    backend: str
    graph: str
    tol: float
    outputs: list[Distance]
    reference: str = "golden executor"
    layers: list[LayerDistance] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: what the backend says about the rebuilt model (e.g. the .pb's tensor names)
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> Distance:
        return max(self.outputs, key=lambda d: (not math.isfinite(d.rel_l2), d.rel_l2))

    @property
    def ok(self) -> bool:
        return self.worst.rel_l2 <= self.tol

    @property
    def first_above_tol(self) -> LayerDistance | None:
        return next((d for d in self.layers or () if not d.rel_l2 <= self.tol), None)

    def lines(self) -> list[str]:
        """What the CLI prints: ``distance: <rel-L2>`` first, on its own line."""
        w = self.worst
        out = [f"distance: {_fmt(w.rel_l2)}", f"max_abs: {_fmt(w.max_abs)}",
               f"cosine: {w.cosine:.9f}"]
        if len(self.outputs) > 1:
            out += [f"  output {d.line()}" for d in self.outputs]
            out.append(f"  worst: {w.name}")
        out += self.notes
        if self.layers is not None:
            out.append(f"per layer ({len(self.layers)} values vs the golden executor):")
            width = max((len(d.name) for d in self.layers), default=4)
            for d in self.layers:
                flag = "  <-- above tol" if not d.rel_l2 <= self.tol else ""
                out.append(f"  {d.name:<{width}}  {d.op_type:<18} {_fmt(d.rel_l2)}  "
                           f"max_abs {_fmt(d.max_abs)}{flag}")
            first = self.first_above_tol
            out.append(f"first above tol {self.tol:g}: {first.where()}, value {first.name!r}, "
                       f"distance {_fmt(first.rel_l2)}" if first is not None
                       else f"every layer within tol {self.tol:g}")
        verdict = "ok" if self.ok else "ABOVE TOL"
        out.append(f"{verdict}: worst distance {_fmt(w.rel_l2)} vs tol {self.tol:g} "
                   f"({self.backend} reconstruction of {self.graph!r} vs {self.reference})")
        return out

    def to_dict(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:  # JSON has no inf/nan: write them as strings
            if isinstance(x, float) and not math.isfinite(x):
                return str(x)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        first = self.first_above_tol
        return clean({
            "backend": self.backend, "graph": self.graph, "reference": self.reference,
            "tol": self.tol, "ok": self.ok, "distance": self.worst.rel_l2,
            "worst": asdict(self.worst), "outputs": [asdict(d) for d in self.outputs],
            "per_layer": None if self.layers is None else [asdict(d) for d in self.layers],
            "first_above_tol": None if first is None else asdict(first),
            "seconds": self.seconds,
        })

    def write_json(self, path: str | os.PathLike) -> None:
        from fc.ir.serialize import atomic_write

        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")
