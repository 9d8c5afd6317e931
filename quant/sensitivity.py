"""Quantization sensitivity per layer (AIMET's QuantAnalyzer, tpu-mlir's ``search_qtable``).

For each *layer* (a node that quantizes something of its own: weights or an output with its
own parameters; scale-preserving movers only carry their input's grid), over the evaluation
images, against the float graph's outputs:

* **only this layer quantized** (every other layer float, ``qconfig.layers`` = float): its
  weights, its output and the inputs it reads as integers are quantized;
* **all quantized but this layer**, which is kept at the *keep* precision (``float`` or 16
  bits): the gain over the fully quantized model says what keeping it buys.

Each gives the final distance (rel-L2 of the output against float, SQNR) and, with labels, the
top-1 drop in points. ``propose`` keeps the fewest layers at the keep precision to meet a
target (a top-1 drop in points, or an output distance): greedy by the all-but-one gain, each
candidate mix verified by an actual run; the result is a ``qconfig.layers`` mapping
(``write_layers_yaml``) that ``fcc quant`` reads back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph
from fc.ir.serialize import atomic_write
from fc.quant.plan import LayerSetting, _scale_preserving, make_plan, weight_inputs
from fc.quant.report import Distance

__all__ = ["candidate_layers", "Measure", "LayerSensitivity", "SensitivityReport",
           "Evaluator", "ArrayEvaluator", "sensitivity", "sensitivity_mixes", "propose",
           "keep_setting", "write_layers_yaml", "parallel_evaluator", "SensitivityTask"]


def candidate_layers(graph: Graph) -> list[str]:
    """Nodes, in graph order, with quantized weights or an output of their own parameters."""
    plan = make_plan(graph)
    out = []
    for n in graph:
        if _scale_preserving(n):
            continue
        if weight_inputs(n) or any(plan.kind.get(v.name) == "own" for v in n.outputs):
            out.append(n.name)
    return out


def keep_setting(keep: str | int) -> LayerSetting:
    """``float`` or a bit width (16)."""
    if str(keep) == "float":
        return LayerSetting(float=True)
    bits = int(keep)
    if not 2 <= bits <= 16:
        raise FcError(f"keep precision {keep!r}: expected float or 2..16 bits")
    return LayerSetting(weight_bits=bits, act_bits=bits)


@dataclass
class Measure:
    """One run over the images: output distance to float, top-1 (labels) and agreement."""

    distance: Distance = field(default_factory=Distance)
    correct: int = 0
    agree: int = 0
    images: int = 0

    def merge(self, o: Measure) -> Measure:
        d = Distance(self.distance.rr + o.distance.rr, self.distance.dd + o.distance.dd,
                     self.distance.yr + o.distance.yr, self.distance.yy + o.distance.yy)
        return Measure(d, self.correct + o.correct, self.agree + o.agree, self.images + o.images)

    @property
    def top1(self) -> float:
        return self.correct / self.images if self.images else 0.0


#: settings by node name -> Measure over the evaluation images
Evaluator = Callable[[Mapping[str, LayerSetting]], Measure]


class ArrayEvaluator:
    """An evaluator over in-memory batches: ``build`` makes the QuantSpec of a mix; each
    batch's float output is computed once, when first needed. ``parts`` gives the per-batch
    measures of a range of batches (a shard of the work, for a task on a worker); calling it
    folds every batch's measure in order, so a run split into shards and folded in the same
    order gives the same sums to the bit."""

    def __init__(self, graph: Graph, build: Callable[[Mapping[str, LayerSetting]], Any],
                 batches: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None = None,
                 *, output: str | None = None):
        from fc.np_ops import Interpreter

        self.graph, self.build, self.batches = graph, build, list(batches)
        self.name = graph.inputs[0].name
        self.out = output or graph.outputs[0].name
        self._float = Interpreter(graph)
        self._ref: dict[int, np.ndarray] = {}
        self.labels = None if labels is None else [np.asarray(y).reshape(-1) for y in labels]

    def _reference(self, i: int) -> np.ndarray:
        r = self._ref.get(i)
        if r is None:
            r = self._ref[i] = self._float.run({self.name: self.batches[i]})[self.out]
        return r

    def parts(self, layers: Mapping[str, LayerSetting], start: int = 0, stop: int | None = None
              ) -> list[Measure]:
        from fc.quant.quantize import quantized_graph
        from fc.quant.simulate import SimInterpreter

        sim = SimInterpreter(quantized_graph(self.graph, self.build(layers)))
        out = []
        for i in range(start, len(self.batches) if stop is None else stop):
            x, ref = self.batches[i], self._reference(i)
            y = sim.run({self.name: x})[self.out]
            part = Measure(images=len(x))
            part.distance.add(y, ref)
            if y.ndim == 2:
                part.agree = int(np.sum(y.argmax(1) == ref.argmax(1)))
                if self.labels is not None:
                    part.correct = int(np.sum(y.argmax(1) == self.labels[i]))
            out.append(part)
        return out

    def __call__(self, layers: Mapping[str, LayerSetting]) -> Measure:
        return fold(self.parts(layers))


def fold(parts: Sequence[Measure]) -> Measure:
    """The measures of consecutive batches added in order (from an empty one)."""
    m = Measure()
    for p in parts:
        m = m.merge(p)
    return m


def array_evaluator(graph: Graph, build: Callable[[Mapping[str, LayerSetting]], Any],
                    batches: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None = None,
                    *, output: str | None = None) -> ArrayEvaluator:
    """An evaluator over in-memory batches (``ArrayEvaluator``)."""
    return ArrayEvaluator(graph, build, batches, labels, output=output)


@dataclass
class LayerSensitivity:
    index: int
    name: str
    op: str
    only: Measure          # only this layer quantized
    all_but: Measure       # all quantized but this one (kept at the keep precision)


def _r(v: float | None, nd: int = 6) -> float | None:
    return None if v is None or not math.isfinite(v) else float(f"{v:.{nd}g}")


@dataclass
class SensitivityReport:
    graph: str
    strategy: str
    keep: str
    labelled: bool
    float_: Measure
    quantized: Measure
    layers: list[LayerSensitivity]
    proposal: dict[str, Any] | None = None

    def drop(self, m: Measure) -> float | None:
        """Top-1 drop against float in points (None without labels)."""
        return 100 * (self.float_.top1 - m.top1) if self.labelled else None

    def row(self, r: LayerSensitivity) -> dict[str, Any]:
        q = self.quantized
        gain_d = q.distance.rel_l2 - r.all_but.distance.rel_l2
        gain_t = None if not self.labelled else 100 * (r.all_but.top1 - q.top1)
        return {"index": r.index, "layer": r.name, "op": r.op,
                "only_distance": _r(r.only.distance.rel_l2), "only_sqnr_db": _r(r.only.distance.sqnr_db),
                "only_drop": _r(self.drop(r.only)),
                "all_but_distance": _r(r.all_but.distance.rel_l2),
                "all_but_sqnr_db": _r(r.all_but.distance.sqnr_db),
                "all_but_drop": _r(self.drop(r.all_but)),
                "gain_distance": _r(gain_d), "gain_drop": _r(gain_t)}

    def sorted_rows(self) -> list[dict[str, Any]]:
        """Worst first: by top-1 drop when labelled, else by distance (only-this-layer)."""
        key = "only_drop" if self.labelled else "only_distance"
        return sorted((self.row(r) for r in self.layers),
                      key=lambda d: (-(d[key] if d[key] is not None else math.inf), d["index"]))

    def lines(self) -> list[str]:
        q = self.quantized
        head = [f"quantization sensitivity of {self.graph} ({self.strategy}, {q.images} images; "
                f"all quantized: distance {q.distance.rel_l2:.4g}, SQNR {q.distance.sqnr_db:.2f} dB"
                + (f", top-1 {q.top1:.4f} vs float {self.float_.top1:.4f}" if self.labelled else "")
                + ")",
                f"{'layer':<32} {'op':<18} {'only dist':>9} {'only SQNR':>9} {'only drop':>9}"
                f" {'but dist':>9} {'but drop':>9}   (but: all quantized, this one {self.keep})"]
        for d in self.sorted_rows():
            def f(v: Any, spec: str = ".4g") -> str:
                return f"{'-' if v is None else format(v, spec):>9}"
            head.append(f"{d['layer'][:32]:<32} {d['op']:<18} {f(d['only_distance'])} "
                        f"{f(d['only_sqnr_db'], '.2f')} {f(d['only_drop'], '.2f')} "
                        f"{f(d['all_but_distance'])} {f(d['all_but_drop'], '.2f')}")
        if self.proposal:
            p = self.proposal
            head.append(f"proposal: keep {len(p['layers'])} layer(s) at {self.keep} "
                        f"({', '.join(p['layers']) or 'none'}): " + p["verified"])
        return head

    def to_csv(self) -> str:
        rows = self.sorted_rows()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["layer"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def to_json(self) -> str:
        def m(x: Measure) -> dict[str, Any]:
            return {"distance": _r(x.distance.rel_l2), "sqnr_db": _r(x.distance.sqnr_db),
                    "top1": _r(x.top1) if self.labelled else None,
                    "agreement": _r(x.agree / x.images) if x.images else None, "images": x.images}
        return json.dumps({"graph": self.graph, "strategy": self.strategy, "keep": self.keep,
                           "float": m(self.float_), "quantized": m(self.quantized),
                           "layers": [self.row(r) for r in self.layers],
                           "proposal": self.proposal}, indent=1) + "\n"

    def plot(self, path: str | os.PathLike) -> None:
        """Layers in graph order on x; top-1 drop (or distance) of only-this-layer and of
        all-but-this-layer on y; the worst labelled."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [self.row(r) for r in self.layers]
        key = "drop" if self.labelled else "distance"
        only = [d[f"only_{key}"] or 0.0 for d in rows]
        but = [d[f"all_but_{key}"] or 0.0 for d in rows]
        xs = np.arange(len(rows))
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows) + 2), 4.5), dpi=100)
        try:
            ax.plot(xs, only, "o-", label="only this layer quantized")
            ax.plot(xs, but, "s--", label=f"all quantized but this one ({self.keep})")
            q = self.drop(self.quantized) if self.labelled else self.quantized.distance.rel_l2
            ax.axhline(q, color="grey", lw=1, ls=":", label="all quantized")
            worst = int(np.argmax(only)) if rows else 0
            if rows:
                ax.annotate(rows[worst]["layer"], (worst, only[worst]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8, color="red")
            ax.set_xticks(xs, [d["layer"] for d in rows], rotation=60, ha="right", fontsize=7)
            ax.set_ylabel("top-1 drop (points)" if self.labelled else "output rel-L2 to float")
            ax.set_title(f"quantization sensitivity ({self.graph}, {self.strategy})", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            with atomic_write(path) as f:
                fig.savefig(f, format="png")
        finally:
            plt.close(fig)

    def write(self, out_dir: str | os.PathLike, stem: str) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in (("csv", self.to_csv()), ("json", self.to_json())):
            p = out / f"{stem}.{suffix}"
            with atomic_write(p, "w") as f:
                f.write(text)
            paths.append(p)
        self.plot(out / f"{stem}.png")
        return paths + [out / f"{stem}.png"]


Mix = dict[str, LayerSetting]


def sensitivity_mixes(graph: Graph, names: Sequence[str], keep: str | int) -> list[Mix]:
    """The runs of a sensitivity report, in order: all float, all quantized, then per layer
    only it quantized and all but it (kept at ``keep``)."""
    keepset = keep_setting(keep)
    others = [n.name for n in graph if not _scale_preserving(n)]
    mixes: list[Mix] = [{n: LayerSetting(float=True) for n in others}, {}]
    for name in names:
        mixes.append({n: LayerSetting(float=True) for n in others if n != name})
        mixes.append({name: keepset})
    return mixes


def sensitivity(graph: Graph, evaluate: Evaluator, *, strategy: str = "", keep: str | int = "float",
                labelled: bool = False, layers: Sequence[str] | None = None,
                progress: bool = True,
                many: Callable[[Sequence[Mix]], list[Measure]] | None = None) -> SensitivityReport:
    """Every layer alone quantized, and every layer alone kept at ``keep`` (see the module
    docstring); 2 + 2 * layers runs of ``evaluate``, or one call of ``many`` with all of
    them (``parallel_evaluator``: tasks on a process pool or a Dask cluster)."""
    from tqdm import tqdm

    names = list(layers) if layers is not None else candidate_layers(graph)
    if not names:
        raise FcError(f"graph {graph.name!r} has no layer to quantize")
    mixes = sensitivity_mixes(graph, names, keep)
    if many is not None:
        results = many(mixes)
    else:
        results = []
        with tqdm(total=len(mixes), desc="sensitivity", unit="run", disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            for mix in mixes:
                results.append(evaluate(mix))
                bar.update()
    flt, full = results[:2]
    rows = [LayerSensitivity(i, name, graph.node_by_name(name).op_type, results[2 + 2 * i],
                             results[3 + 2 * i]) for i, name in enumerate(names)]
    return SensitivityReport(graph.name, strategy, str(keep), labelled, flt, full, rows)


def propose(report: SensitivityReport, evaluate: Evaluator, *, target_drop: float | None = None,
            target_distance: float | None = None, progress: bool = True) -> dict[str, Any]:
    """The fewest layers at the keep precision meeting the target: layers are added in the
    order of their all-but-one gain and each mix is run; the first that meets the target is
    the proposal (``met`` False if even every layer kept does not)."""
    if (target_drop is None) == (target_distance is None):
        raise FcError("give one target: a top-1 drop (points) or an output distance")
    if target_drop is not None and not report.labelled:
        raise FcError("--target-drop needs labelled images (EVALUATION.image_file); "
                      "use --target-distance without labels")
    keepset = keep_setting(report.keep)
    rows = [report.row(r) for r in report.layers]
    gain = "gain_drop" if target_drop is not None else "gain_distance"
    order = [d["layer"] for d in sorted(rows, key=lambda d: (-(d[gain] or 0.0), -(d["gain_distance"] or 0.0),
                                                              d["index"]))]

    def meets(m: Measure) -> bool:
        if target_drop is not None:
            return report.drop(m) <= target_drop + 1e-9
        return m.distance.rel_l2 <= target_distance

    from tqdm import tqdm

    kept: list[str] = []
    m = report.quantized
    tried = 0
    with tqdm(total=len(order), desc="propose", unit="run", disable=not progress, leave=False) as bar:
        while not meets(m) and len(kept) < len(order):
            kept.append(order[len(kept)])
            m = evaluate({n: keepset for n in kept})
            tried += 1
            bar.update()
    met = meets(m)
    what = (f"top-1 drop {report.drop(m):.2f} points (target {target_drop:g})" if target_drop is not None
            else f"distance {m.distance.rel_l2:.4g} (target {target_distance:g})")
    proposal = {"layers": kept, "keep": report.keep, "met": met, "runs": tried,
                "top1": _r(m.top1) if report.labelled else None,
                "drop": _r(report.drop(m)), "distance": _r(m.distance.rel_l2),
                "target_drop": target_drop, "target_distance": target_distance,
                "verified": ("verified: " if met else "NOT met even with every layer kept: ") + what}
    report.proposal = proposal
    return proposal


def write_layers_yaml(proposal: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """The proposal as a ``QUAN.qconfig.layers`` file (``layers: FILE`` in the config, or
    ``--set QUAN.qconfig.layers=FILE``)."""
    import yaml

    class _NoAliases(yaml.SafeDumper):  # fc's config reader refuses anchors and aliases
        def ignore_aliases(self, data: Any) -> bool:
            return True

    value: Any = "float" if proposal["keep"] == "float" else {"bits": int(proposal["keep"])}
    body = yaml.dump({n: value for n in proposal["layers"]}, Dumper=_NoAliases,
                     default_flow_style=False, sort_keys=False) if proposal["layers"] else "{}\n"
    head = (f"# fcc quant sensitivity: layers kept at {proposal['keep']} ({proposal['verified']})\n"
            "# use as QUAN.qconfig.layers: <this file>\n")
    with atomic_write(path, "w") as f:
        f.write(head + body)
    return Path(path)


# -- from a config ------------------------------------------------------------------------------

def config_evaluator(cfg: Any, graph: Graph, table: Any, *, progress: bool = True
                     ) -> tuple[Evaluator, bool]:
    """The evaluator of a config's images: ``EVALUATION.image_file`` (labelled, read by
    ``fc.quant.accuracy``) or ``EVALUATION.input_images`` (a folder, distance only); images
    are read once, in ``EVALUATION.batch_size`` batches. Returns (evaluator, labelled)."""
    from fc.quant import pipeline

    ev = "EVALUATION."
    bs = cfg[ev + "batch_size"]
    pre = pipeline.preprocess_for(cfg, graph)
    labels = None
    if cfg[ev + "image_file"]:
        from fc.quant.accuracy import _batches, check_classes, dataset_for

        ds = dataset_for(cfg)
        check_classes(ds, graph, cfg)
        xs = [x for _, x in _batches(ds, pre, bs, "read images", progress)]
        lab = np.asarray(ds.labels)
        labels = [lab[i:i + len(x)] for i, x in zip(np.cumsum([0] + [len(x) for x in xs]), xs)]
    else:
        xs = list(pipeline._image_batches(cfg, graph, cfg.require(ev + "input_images"), bs, None,
                                          "read images", progress))

    def build(layers: Mapping[str, LayerSetting]) -> Any:
        return pipeline.spec_for(cfg, graph, table, layers=dict(layers))

    return array_evaluator(graph, build, xs, labels, output=pipeline.output_tensor(cfg, graph)), \
        labels is not None


@dataclass(frozen=True)
class SensitivityTask:
    """One mix on one shard of the evaluation batches (picklable, for a pool or Dask)."""

    config_path: str
    overrides: tuple[tuple[str, Any], ...]
    table_path: str
    layers: tuple[tuple[str, LayerSetting], ...]
    shard: int
    shards: int


def run_sensitivity_task(task: SensitivityTask) -> tuple[list[Measure] | None, str]:
    """The per-batch measures of one task's mix on its shard, or (None, the error's line).
    The model, table, images and float outputs are read or computed once per worker."""
    from fc.quant import pipeline
    from fc.quant.calibration import CalibrationTable
    from fc.quant.config import load_config
    from fc.quant.sweep import _cached

    try:
        cfg = load_config(task.config_path, dict(task.overrides))
        g, tp = cfg.graph_path, Path(task.table_path)
        gkey = ("graph", str(g), g.stat().st_mtime_ns)
        graph = _cached(gkey, lambda: pipeline.load_model(cfg))
        tkey = ("table", str(tp), tp.stat().st_mtime_ns)
        table = _cached(tkey, lambda: CalibrationTable.read(tp))
        ev = _cached(("sensitivity", task.config_path, repr(task.overrides), gkey, tkey),
                     lambda: config_evaluator(cfg, graph, table, progress=False)[0])
        n = len(ev.batches)
        a, b = n * task.shard // task.shards, n * (task.shard + 1) // task.shards
        return ev.parts(dict(task.layers), a, b), ""
    except FcError as e:
        return None, str(e).splitlines()[0] if str(e) else repr(e)


def parallel_evaluator(config_path: str | os.PathLike, overrides: tuple[tuple[str, Any], ...],
                       table_path: str | os.PathLike, runner: Any, *, shards: int = 1,
                       progress: bool = True) -> Callable[[Sequence[Mix]], list[Measure]]:
    """``many`` for ``sensitivity``: every mix x ``shards`` parts of the batches as tasks on
    ``runner`` (``fc.quant.sweep.TaskRunner``); each mix's per-batch measures are folded in
    batch order, so the figures equal the in-process evaluator's to the bit."""
    from tqdm import tqdm

    path = str(Path(config_path).resolve())

    def many(mixes: Sequence[Mix]) -> list[Measure]:
        tasks = [SensitivityTask(path, overrides, str(table_path), tuple(sorted(m.items())), i,
                                 shards) for m in mixes for i in range(shards)]
        got: list[Any] = [None] * len(tasks)
        with tqdm(total=len(tasks), desc="sensitivity", unit="task", disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            for i, (parts, error) in runner.imap(run_sensitivity_task, tasks):
                if parts is None:
                    raise FcError(error)
                got[i] = parts
                bar.update()
        return [fold([p for k in range(shards) for p in got[j * shards + k]])
                for j in range(len(mixes))]

    return many


def run_sensitivity(cfg: Any, graph: Graph, args: Any, progress: bool,
                    overrides: Mapping[str, Any] | None = None) -> int:
    """``fcc quant sensitivity``: the report, and with a target the proposal and its
    layers file, under OUTPUT_DIR. With ``--jobs N`` or ``--dask ADDRESS`` the runs are tasks
    (mix x shard of the images) on ``fc.quant.sweep.TaskRunner``, the same figures."""
    from fc.quant import pipeline
    from fc.quant.sweep import TaskRunner

    if args.target_drop is not None and args.target_distance is not None:
        raise FcError("--target-drop and --target-distance: give one")
    table, reused = pipeline.table_for(cfg, graph, progress=progress)
    print(f"calibration table: {cfg.table_path} ({'reused' if reused else 'calibrated now'})")
    labelled = bool(cfg["EVALUATION.image_file"])
    if args.target_drop is not None and not labelled:
        raise FcError(f"{cfg.path}: --target-drop needs EVALUATION.image_file (labels); "
                      "use --target-distance")
    with TaskRunner(getattr(args, "jobs", 1) or 1, getattr(args, "dask", None)) as runner:
        many = None
        if runner.local:
            evaluate, labelled = config_evaluator(cfg, graph, table, progress=progress)
        else:
            if labelled:  # the list's mistakes as one line here, before any task
                from fc.quant.accuracy import check_classes, dataset_for

                check_classes(dataset_for(cfg), graph, cfg)
            shards = getattr(args, "shards", None) or 1
            frozen = tuple(sorted((k, cfg[k]) for k in (overrides or {}) if k in cfg.values))
            many = parallel_evaluator(cfg.path, frozen, cfg.table_path, runner, shards=shards,
                                      progress=progress)

            def evaluate(mix: Mapping[str, LayerSetting]) -> Measure:
                return many([dict(mix)])[0]

        report = sensitivity(graph, evaluate,
                             strategy=f"{cfg.strategy}/{cfg['QUAN.qconfig.weight_quan']}",
                             keep=args.keep, labelled=labelled, progress=progress, many=many)
        stem = f"sensitivity_{cfg.strategy}_{cfg['QUAN.qconfig.weight_quan']}"
        paths = []
        if args.target_drop is not None or args.target_distance is not None:
            prop = propose(report, evaluate, target_drop=args.target_drop,
                           target_distance=args.target_distance, progress=progress)
            cfg.output_dir.mkdir(parents=True, exist_ok=True)
            paths.append(write_layers_yaml(prop, cfg.output_dir / f"{stem}_layers.yml"))
    print("\n".join(report.lines()))
    paths = report.write(cfg.output_dir, stem) + paths
    for p in paths:
        print(f"wrote {p}")
    print(f"(tasks ran {runner.describe()})")
    return 0
