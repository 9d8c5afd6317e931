"""The per-layer error report: how far each layer's output moves from the float run.

For each node, in graph order, over all images: distance (rel-L2 = ||q - f|| / ||f||),
cosine and SQNR (dB, = -20 log10 distance), **accumulated** (the quantized network up to this
layer vs float) and **isolated** (only this layer quantized, its inputs float). Sums of
squares are accumulated over batches, so the figures are those of the whole image set and
memory does not depend on its size. The network output's accumulated distance is the
**final distance**.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.ir.core import Graph, Node
from fc.quant.quantize import QuantSpec
from fc.quant.simulate import Lockstep

__all__ = ["Distance", "LayerRow", "ErrorReport", "error_report"]


@dataclass
class Distance:
    """Streaming sums for rel-L2, cosine and SQNR of y against a reference r."""

    rr: float = 0.0
    dd: float = 0.0
    yr: float = 0.0
    yy: float = 0.0

    def add(self, y: np.ndarray, r: np.ndarray) -> None:
        y64, r64 = np.asarray(y, np.float64).ravel(), np.asarray(r, np.float64).ravel()
        d = y64 - r64
        self.rr += float(r64 @ r64)
        self.dd += float(d @ d)
        self.yr += float(y64 @ r64)
        self.yy += float(y64 @ y64)

    @property
    def rel_l2(self) -> float:
        if self.rr == 0:
            return 0.0 if self.dd == 0 else math.inf
        return math.sqrt(self.dd / self.rr)

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.yy * self.rr)
        return self.yr / den if den else 1.0

    @property
    def sqnr_db(self) -> float:
        d = self.rel_l2
        return math.inf if d == 0 else -20 * math.log10(d)


@dataclass
class LayerRow:
    index: int
    name: str
    op: str
    provenance: tuple[str, ...]
    tensor: str
    accumulated: Distance = field(default_factory=Distance)
    isolated: Distance = field(default_factory=Distance)

    def as_dict(self) -> dict[str, Any]:
        a, i = self.accumulated, self.isolated
        return {"index": self.index, "name": self.name, "op": self.op,
                "provenance": "|".join(self.provenance), "tensor": self.tensor,
                "distance": _r(a.rel_l2), "cosine": _r(a.cosine), "sqnr_db": _r(a.sqnr_db),
                "isolated_distance": _r(i.rel_l2), "isolated_cosine": _r(i.cosine),
                "isolated_sqnr_db": _r(i.sqnr_db)}


def _r(v: float) -> float | None:
    return None if not math.isfinite(v) else float(f"{v:.6g}")


@dataclass
class ErrorReport:
    graph: str
    strategy: str
    rows: list[LayerRow]
    output: str
    images: int = 0
    top1_agree: int = 0
    top1_total: int = 0

    @property
    def final(self) -> Distance:
        return next(r.accumulated for r in self.rows if r.tensor == self.output)

    @property
    def final_distance(self) -> float:
        return self.final.rel_l2

    def worst(self, n: int = 5) -> list[LayerRow]:
        return sorted(self.rows, key=lambda r: r.isolated.sqnr_db)[:n]

    def lines(self) -> list[str]:
        head = (f"{'#':>3}  {'layer':<32} {'op':<17} {'distance':>9} {'cosine':>8} {'SQNR dB':>8}"
                f"  {'iso dist':>9} {'iso SQNR':>8}")
        out = [f"per-layer error of {self.strategy} on {self.graph} ({self.images} images)", head]
        for r in self.rows:
            d = r.as_dict()
            out.append(f"{r.index:>3}  {_clip(r.name, 32):<32} {r.op:<17} {_fmt(d['distance'])} "
                       f"{_fmt(d['cosine'], 8)} {_fmt(d['sqnr_db'], 8, '.2f')}  "
                       f"{_fmt(d['isolated_distance'])} {_fmt(d['isolated_sqnr_db'], 8, '.2f')}")
        out.append("worst 5 layers by isolated SQNR: " + ", ".join(
            f"{r.name} ({r.isolated.sqnr_db:.1f} dB)" for r in self.worst()))
        if self.top1_total:
            out.append(f"top-1 agreement with float: {self.top1_agree}/{self.top1_total}")
        out.append(f"final distance: {self.final_distance:.6g}")
        return out

    def to_json(self) -> str:
        doc = {"graph": self.graph, "strategy": self.strategy, "images": self.images,
               "output": self.output, "final_distance": _r(self.final_distance),
               "final_sqnr_db": _r(self.final.sqnr_db),
               "top1_agreement": [self.top1_agree, self.top1_total],
               "worst": [r.name for r in self.worst()],
               "layers": [r.as_dict() for r in self.rows]}
        return json.dumps(doc, indent=1) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        rows = [r.as_dict() for r in self.rows]
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def to_markdown(self, png_name: str | None) -> str:
        out = [f"# Quantization error: {self.strategy} on {self.graph}", "",
               f"{self.images} images; output `{self.output}`; **final distance "
               f"{self.final_distance:.4g}** (SQNR {self.final.sqnr_db:.2f} dB)", ""]
        if self.top1_total:
            out += [f"Top-1 agreement with float: {self.top1_agree}/{self.top1_total}", ""]
        if png_name:
            out += [f"![per-layer SQNR]({png_name})", ""]
        out += ["Worst five layers by isolated SQNR: " + ", ".join(
            f"`{r.name}` ({r.isolated.sqnr_db:.1f} dB)" for r in self.worst()), "",
            "| # | layer | op | distance | cosine | SQNR dB | isolated distance | isolated SQNR dB |",
            "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            d = r.as_dict()
            out.append(f"| {r.index} | `{r.name}` | {r.op} | {d['distance']} | {d['cosine']} | "
                       f"{d['sqnr_db']} | {d['isolated_distance']} | {d['isolated_sqnr_db']} |")
        return "\n".join(out) + "\n"

    def plot(self, path: str | os.PathLike) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = np.arange(len(self.rows))
        cap = 80.0
        acc = [min(r.accumulated.sqnr_db, cap) for r in self.rows]
        iso = [min(r.isolated.sqnr_db, cap) for r in self.rows]
        fig, ax = plt.subplots(figsize=(max(8, len(x) * 0.12), 4.5), dpi=100)
        ax.plot(x, acc, "-o", ms=3, label="accumulated")
        ax.plot(x, iso, "-s", ms=3, alpha=0.7, label="isolated")
        for r in self.worst(5):
            ax.annotate(_clip(r.name, 24), (r.index, min(r.isolated.sqnr_db, cap)), fontsize=7,
                        rotation=30, xytext=(3, -12), textcoords="offset points")
        ax.set_xlabel("layer (graph order)")
        ax.set_ylabel("SQNR (dB, higher is better)")
        ax.set_title(f"{self.strategy} on {self.graph}: final distance {self.final_distance:.3g}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        plt.close(fig)
        return path

    def write(self, out_dir: str | os.PathLike, stem: str) -> list[Path]:
        """``stem``.csv/.json/.md and the plot ``stem``.png, each written atomically."""
        from fc.ir.serialize import atomic_write

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{stem}.png"
        tmp_png = out_dir / f".{stem}.tmp.png"
        self.plot(tmp_png)
        os.replace(tmp_png, png)
        paths = [png]
        for suffix, text in (("csv", self.to_csv()), ("json", self.to_json()),
                             ("md", self.to_markdown(png.name))):
            p = out_dir / f"{stem}.{suffix}"
            with atomic_write(p, "w") as f:
                f.write(text)
            paths.append(p)
        return paths


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]


def _fmt(v: float | None, w: int = 9, spec: str = ".4g") -> str:
    return f"{'inf' if v is None else format(v, spec):>{w}}"


def error_report(graph: Graph, spec: QuantSpec, batches: Iterable[np.ndarray], *,
                 output: str | None = None, isolated: bool = True) -> ErrorReport:
    """Float vs quantized over ``batches`` (input arrays of the graph's single input)."""
    output = output or graph.outputs[0].name
    rows: dict[str, LayerRow] = {}
    for node in graph:
        t = next((v for v in node.outputs if v.dtype == "float32"), None)
        if t is not None:
            rows[node.name] = LayerRow(len(rows), node.name, node.op_type, node.provenance, t.name)
    if output not in {r.tensor for r in rows.values()}:
        raise ValueError(f"output {output!r} is not a node's first float output")
    report = ErrorReport(graph.name, spec.strategy.name, list(rows.values()), output)

    def observe(node: Node, ref: tuple[np.ndarray, ...], acc: tuple[np.ndarray, ...],
                iso: tuple[np.ndarray, ...]) -> None:
        row = rows.get(node.name)
        if row is None:
            return
        k = next(i for i, v in enumerate(node.outputs) if v.name == row.tensor)
        row.accumulated.add(acc[k], ref[k])
        row.isolated.add(iso[k], ref[k])
        if row.tensor == output and ref[k].ndim == 2 and ref[k].shape[1] > 1:
            report.top1_agree += int(np.sum(acc[k].argmax(1) == ref[k].argmax(1)))
            report.top1_total += len(ref[k])

    runner = Lockstep(graph, spec, observe, isolated=isolated)
    name = graph.inputs[0].name
    for x in batches:
        runner.run({name: x})
        report.images += len(x)
    return report
