"""Accuracy sweeps: configurations x image shards as independent tasks, and the table.

A configuration is (strategy, weight quantization); the float baseline is the ``null``
strategy. The calibration table is made (or reused, ``pipeline.table_for``: same graph,
images and settings) once, before any task, since no strategy changes what it observes.
Each task evaluates one configuration on one shard of the labelled list and returns its
top-k predictions; the shards are merged in order, then every row's agreement with the float
row is counted, so the float outputs are computed once and reused.

Tasks run on a ``TaskRunner``: in turn (``jobs=1``), in a local process pool
(``concurrent.futures``), or on a Dask cluster (``dask.distributed.Client(address)``); workers
must see the config's files. ``fcc quant sensitivity`` runs its per-layer tasks on the same
runner. The
table is the same whichever way the tasks ran (the tests hold it to that).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.quant.accuracy import Accuracy, config_name, dataset_for, evaluate

__all__ = ["Config", "configurations", "SweepRow", "AccuracyTable", "sweep", "TaskRunner"]

WEIGHT_QUAN = ("perlayer", "perchannel")


@dataclass(frozen=True)
class Config:
    strategy: str
    weight_quan: str

    @property
    def name(self) -> str:
        return config_name(self.strategy, self.weight_quan)


def configurations(strategies: Sequence[str] | None = None,
                   weight_quan: Sequence[str] = WEIGHT_QUAN) -> list[Config]:
    """``null`` once (the float baseline), then each strategy with each weight mode."""
    from fc.quant.strategies import STRATEGIES

    names = list(STRATEGIES) if strategies is None else list(strategies)
    for n in names:
        if n not in STRATEGIES:
            raise FcError(f"unknown strategy {n!r}; fc has {', '.join(STRATEGIES)}")
    out = [Config("null", "perchannel")]
    out += [Config(s, w) for s in names if s != "null" for w in weight_quan]
    return out


# -- the task ----------------------------------------------------------------------------------
_WORKER_CACHE: dict[Any, Any] = {}


def _cached(key: Any, make: Callable[[], Any]) -> Any:
    if key not in _WORKER_CACHE:
        if len(_WORKER_CACHE) > 8:
            _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = make()
    return _WORKER_CACHE[key]


@dataclass(frozen=True)
class Task:
    config_path: str
    overrides: tuple[tuple[str, Any], ...]
    table_path: str | None
    config: Config
    shard: int
    shards: int
    skip_missing: bool


@dataclass
class TaskResult:
    config: Config
    shard: int
    accuracy: Accuracy | None
    error: str = ""


def run_task(task: Task, progress: bool = False) -> TaskResult:
    """One configuration on one shard (a top-level function: picklable for pools and Dask).
    The model, list and table are read once per worker process."""
    from fc.quant import pipeline
    from fc.quant.calibration import CalibrationTable
    from fc.quant.config import load_config

    cfg = load_config(task.config_path, dict(task.overrides))
    g = cfg.graph_path
    graph = _cached(("graph", str(g), g.stat().st_mtime_ns), lambda: pipeline.load_model(cfg))
    ds = _cached(("list", task.config_path, repr(task.overrides), task.skip_missing),
                 lambda: dataset_for(cfg, skip_missing=task.skip_missing))
    table = None
    if task.table_path is not None:
        tp = Path(task.table_path)
        table = _cached(("table", str(tp), tp.stat().st_mtime_ns),
                        lambda: CalibrationTable.read(tp))
    c = task.config
    try:
        acc = evaluate(graph, cfg, c.strategy, c.weight_quan, ds.shard(task.shard, task.shards),
                       table=table, progress=progress)
    except FcError as e:
        return TaskResult(c, task.shard, None, str(e).splitlines()[0] if str(e) else repr(e))
    acc.name = c.name
    return TaskResult(c, task.shard, acc)


# -- the table ---------------------------------------------------------------------------------
@dataclass
class SweepRow:
    config: Config
    accuracy: Accuracy | None
    error: str = ""
    float_top1: float | None = None
    float_top5: float | None = None

    def as_dict(self) -> dict[str, Any]:
        a = self.accuracy
        d: dict[str, Any] = {"config": self.config.name, "strategy": self.config.strategy,
                             "weight_quan": self.config.weight_quan}
        if a is None:
            return {**d, "top1": None, "top5": None, "drop_top1": None, "drop_top5": None,
                    "agreement": None, "images": 0, "images_per_s": None, "error": self.error}
        return {**d, "top1": round(a.top1, 6), "top5": round(a.top5, 6),
                "drop_top1": None if self.float_top1 is None else round(100 * (self.float_top1 - a.top1), 4),
                "drop_top5": None if self.float_top5 is None else round(100 * (self.float_top5 - a.top5), 4),
                "agreement": None if a.agreement is None else round(a.agreement, 6),
                "images": a.images, "images_per_s": round(a.images_per_s, 2), "error": ""}


_COLUMNS = ("config", "top1", "top5", "drop_top1", "drop_top5", "agreement", "images",
            "images_per_s")


@dataclass
class AccuracyTable:
    rows: list[SweepRow]
    graph: str = ""
    source: str = ""
    skipped: int = 0
    table: str = ""
    table_reused: bool = False
    k: int = 5

    def row(self, name: str) -> SweepRow:
        for r in self.rows:
            if r.config.name == name:
                return r
        raise KeyError(name)

    def dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rows]

    def lines(self) -> list[str]:
        """The printed table; the figures the checklist test reads."""
        n = self.rows[0].accuracy.images if self.rows and self.rows[0].accuracy else 0
        out = [f"accuracy on {self.source} ({n} images"
               + (f", {self.skipped} skipped" if self.skipped else "") + f") of {self.graph}",
               f"{'configuration':<28} {'top-1':>7} {'top-' + str(self.k):>7} {'drop-1':>7} "
               f"{'drop-' + str(self.k):>7} {'agree':>7} {'img/s':>8}"]
        for d in self.dicts():
            if d["error"]:
                out.append(f"{d['config']:<28} failed: {d['error']}")
                continue
            out.append(f"{d['config']:<28} {d['top1']:>7.4f} {d['top5']:>7.4f} "
                       f"{d['drop_top1']:>7.2f} {d['drop_top5']:>7.2f} {d['agreement']:>7.4f} "
                       f"{d['images_per_s']:>8.1f}")
        out.append("drop: points against float (null); agree: top-1 equal to float's")
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[*_COLUMNS, "strategy", "weight_quan", "error"],
                           lineterminator="\n")
        w.writeheader()
        for d in self.dicts():
            w.writerow(d)
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({"graph": self.graph, "list": self.source, "skipped": self.skipped,
                           "table": self.table, "table_reused": self.table_reused, "k": self.k,
                           "rows": self.dicts()}, indent=1) + "\n"

    def to_markdown(self, png: str | None = None) -> str:
        head = ["configuration", "top-1", f"top-{self.k}", "drop top-1 (pts)",
                f"drop top-{self.k} (pts)", "agreement with float", "images/s"]
        out = [f"# Accuracy of {self.graph}", "", f"List: {self.source}", "",
               "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in self.dicts():
            if d["error"]:
                out.append(f"| {d['config']} | failed: {d['error']} |" + " |" * (len(head) - 2))
            else:
                out.append(f"| {d['config']} | {d['top1']:.4f} | {d['top5']:.4f} | "
                           f"{d['drop_top1']:.2f} | {d['drop_top5']:.2f} | {d['agreement']:.4f} | "
                           f"{d['images_per_s']:.1f} |")
        if png:
            out += ["", f"![top-1 per configuration]({png})"]
        return "\n".join(out) + "\n"

    def plot(self, path: str | os.PathLike) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ok = [d for d in self.dicts() if not d["error"]]
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(ok) + 2), 4))
        xs = np.arange(len(ok))
        ax.bar(xs - 0.2, [d["top1"] for d in ok], 0.4, label="top-1")
        ax.bar(xs + 0.2, [d["agreement"] for d in ok], 0.4, label="agreement with float")
        ax.set_xticks(xs, [d["config"] for d in ok], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(f"accuracy per configuration ({self.graph})", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def write(self, out_dir: str | os.PathLike, stem: str = "accuracy", *, png: bool = True
              ) -> list[Path]:
        """``stem``.csv/.json/.md (+ .png), each written atomically."""
        from fc.ir.serialize import atomic_write

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        if png:
            p = out_dir / f"{stem}.png"
            tmp = out_dir / f".{stem}.tmp.png"
            self.plot(tmp)
            os.replace(tmp, p)
            paths.append(p)
        for suffix, text in (("csv", self.to_csv()), ("json", self.to_json()),
                             ("md", self.to_markdown(f"{stem}.png" if png else None))):
            p = out_dir / f"{stem}.{suffix}"
            with atomic_write(p, "w") as f:
                f.write(text)
            paths.append(p)
        return paths


# -- running the tasks -------------------------------------------------------------------------
def _bars(configs: Sequence[Config], totals: Mapping[Config, int], progress: bool) -> dict:
    from tqdm import tqdm

    return {c: tqdm(total=totals[c], desc=c.name, unit="img", disable=not progress,
                    leave=False, dynamic_ncols=True) for c in configs}


class TaskRunner:
    """Runs independent tasks (a picklable top-level function over picklable arguments) in
    turn, in a local process pool (``jobs`` > 1, spawned processes) or on the Dask cluster at
    ``dask`` (``dask.distributed.Client(address)``); one pool or client for the runner's
    life (``with TaskRunner(...) as r``). ``imap`` yields ``(index, result)`` as tasks finish.
    The accuracy sweep and ``fcc quant sensitivity`` both run on it."""

    def __init__(self, jobs: int = 1, dask: str | None = None):
        if jobs < 1:
            raise FcError(f"--jobs {jobs}: must be at least 1")
        self.jobs, self.dask = jobs, dask
        self._pool: Any = None
        self._client: Any = None

    @property
    def local(self) -> bool:
        """True when tasks run in this process, one after another."""
        return self.dask is None and self.jobs <= 1

    def describe(self) -> str:
        if self.dask is not None:
            return f"on the Dask cluster at {self.dask}"
        return "in this process, one after another" if self.local else \
            f"in {self.jobs} local worker processes"

    def __enter__(self) -> TaskRunner:
        if self.dask is not None:
            try:
                from dask.distributed import Client
            except ImportError:
                raise FcError("--dask needs dask.distributed (pip install -e '.[quant]')") from None
            try:
                self._client = Client(self.dask)
            except (OSError, TimeoutError) as e:
                raise FcError(f"--dask {self.dask}: cannot reach the scheduler ({e})") from None
        elif not self.local:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def imap(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterable[tuple[int, Any]]:
        if self._client is not None:
            from dask.distributed import as_completed

            futures = self._client.map(fn, list(tasks), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
        elif self._pool is not None:
            from concurrent.futures import as_completed

            futs = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
            for fut in as_completed(futs):
                yield futs[fut], fut.result()
        else:
            for i, t in enumerate(tasks):
                yield i, fn(t)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        """The results in the order of ``tasks``."""
        out: list[Any] = [None] * len(tasks)
        for i, r in self.imap(fn, tasks):
            out[i] = r
        return out


def _execute(tasks: Sequence[Task], jobs: int, dask: str | None, progress: bool,
             sizes: Mapping[tuple[Config, int], int]) -> Iterable[TaskResult]:
    configs = list(dict.fromkeys(t.config for t in tasks))
    if dask is None and jobs <= 1:
        for t in tasks:  # in turn: each configuration's own bar over its images
            yield run_task(t, progress)
        return
    totals = {c: sum(n for (cc, _), n in sizes.items() if cc == c) for c in configs}
    bars = _bars(configs, totals, progress)
    try:
        with TaskRunner(jobs, dask) as runner:
            for _, r in runner.imap(run_task, tasks):
                bars[r.config].update(sizes[(r.config, r.shard)])
                yield r
    finally:
        for b in bars.values():
            b.close()


def sweep(config_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *,
          configs: Sequence[Config] | None = None, shards: int = 1, jobs: int = 1,
          dask: str | None = None, skip_missing: bool = False, progress: bool = True,
          graph: Any = None) -> AccuracyTable:
    """The accuracy table of ``configs`` (default: every strategy x perlayer/perchannel and
    the float baseline) on the config's labelled list; ``shards`` parts of the list per
    configuration, run as ``jobs`` local processes or on the Dask cluster at ``dask``."""
    from fc.quant import pipeline
    from fc.quant.accuracy import check_classes
    from fc.quant.config import load_config

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cfg = load_config(config_path, overrides)
    configs = list(configs or configurations())
    if not any(c.strategy == "null" for c in configs):
        configs.insert(0, Config("null", "perchannel"))
    if graph is None:
        graph = pipeline.load_model(cfg)
    ds = dataset_for(cfg, skip_missing=skip_missing)
    check_classes(ds, graph, cfg)
    table_path, reused = None, False
    if any(c.strategy != "null" for c in configs):
        _, reused = pipeline.table_for(cfg, graph, progress=progress)
        table_path = str(cfg.table_path)
    shards = max(1, min(shards, len(ds)))
    # absolute paths: the config's overrides as load_config resolved them
    frozen = tuple(sorted((k, cfg[k]) for k in overrides))
    tasks = [Task(str(Path(config_path).resolve()), frozen, table_path, c, i, shards,
                  skip_missing) for c in configs for i in range(shards)]
    sizes = {(c, i): len(ds.shard(i, shards)) for c in configs for i in range(shards)}
    parts: dict[Config, dict[int, TaskResult]] = {c: {} for c in configs}
    for r in _execute(tasks, jobs, dask, progress, sizes):
        parts[r.config][r.shard] = r
    rows = []
    for c in configs:
        got = [parts[c][i] for i in range(shards)]
        errors = [r.error for r in got if r.accuracy is None]
        if errors:
            rows.append(SweepRow(c, None, errors[0]))
            continue
        acc = got[0].accuracy
        for r in got[1:]:
            acc = acc.merge(r.accuracy)
        acc.name = c.name
        rows.append(SweepRow(c, acc))
    base = next(r for r in rows if r.config.strategy == "null")
    if base.accuracy is None:
        raise FcError(f"the float run failed: {base.error}")
    f1 = base.accuracy.predictions[:, 0]
    for r in rows:
        r.float_top1, r.float_top5 = base.accuracy.top1, base.accuracy.top5
        if r.accuracy is not None:
            r.accuracy.agree = int(np.sum(r.accuracy.predictions[:, 0] == f1))
    return AccuracyTable(rows, graph.name, str(ds.source), ds.skipped,
                         "" if table_path is None else table_path, reused,
                         int(cfg["EVALUATION.top_k"]))
