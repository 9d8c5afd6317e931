"""The model-release checklist: every step of the seed's table on one model, one row each.

The seed's users filled one Markdown table per model release by running six steps by hand
(compile, complexity, torch reconstruction, TF reconstruction, quantization error, quantized
accuracy) and copying numbers into the columns of :data:`COLUMNS` (model, acc top1, orig
model top1, training date, input_shape, compiler pass, nnz/sparsity, flops dense/sp M,
torch rt, tf rt, quantacc (fpga/asic)).

:func:`run_checklist` does it for a list of models. A **step** (:class:`Step`) is a function
of a :class:`Job` (one model's state: its entry, its output folder, the results so far)
that calls the library API of its feature — ``compile_model``, ``complexity``,
``reconstruct.backends.check``, ``fc.quant`` — and returns its figures and the files it
wrote. A step that raises is marked ``no`` with a one-line reason and the rest still run; a
step that needs data the user did not give raises :class:`Skip` naming the key that would
enable it; a step whose prerequisite failed is ``no`` ("needs compile"). Table cells are
functions of a model's results (:data:`COLUMNS`), so a new step is one function and one
entry in :data:`STEPS`, and a new column one entry in :data:`COLUMNS`.

Everything one model writes goes into ``DIR/<name>/``; ``DIR/checklist.json`` holds every
figure and ``DIR/checklist.md`` is rendered from it: the table (one row per model; a second
run into the same DIR replaces the rows of the models it ran and keeps the others), then a
section per model with each step's figures, the equivalent ``fcc`` command and the files.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError

__all__ = ["ModelEntry", "StepResult", "ModelResult", "Step", "Job", "Skip", "Failed", "STEPS",
           "COLUMNS", "OK", "FAILED", "SKIPPED", "run_model", "run_checklist", "load_models",
           "write_checklist", "read_checklist", "render_markdown", "example_inputs",
           "ChecklistError"]

log = logging.getLogger("fc.checklist")

OK, FAILED, SKIPPED = "ok", "no", "skipped"
FORMAT, VERSION = "fc-checklist", 1


class ChecklistError(FcError):
    """A models file or checklist output that cannot be used."""


class Skip(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a step whose data was not given: ``key`` is what would enable it."""

    def __init__(self, key: str):
        super().__init__(f"needs {key}")
        self.key = key


# -- what runs ------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One model of the checklist: how to compile it, its config, what the table copies.

    ``orig_top1`` (the source model's own top-1, from its training report) and
    ``training_date`` are the user's: fc cannot measure them and shows them as given."""

    framework: str
    model: str
    params: str | None = None
    config: str | None = None
    input_shapes: dict[str, tuple[int, ...]] | tuple[int, ...] | None = None
    seed: int = 0
    name: str | None = None
    orig_top1: float | None = None
    training_date: str | None = None

    @property
    def label(self) -> str:
        """The row's name and the model's folder under DIR."""
        if self.name:
            return _safe_name(self.name)
        stem = re.split(r"[:/\\]", str(self.model).rstrip("/\\"))[-1]
        for suffix in ("-symbol.json", ".json", ".onnx", ".pt2", ".pb", ".keras", ".h5", ".py"):
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
        return _safe_name(stem)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.input_shapes, dict):
            d["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        elif self.input_shapes is not None:
            d["input_shapes"] = list(self.input_shapes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelEntry:
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        shapes = d.get("input_shapes")
        if isinstance(shapes, dict):
            d["input_shapes"] = {k: tuple(v) for k, v in shapes.items()}
        elif shapes is not None:
            d["input_shapes"] = tuple(shapes)
        return cls(**d)


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"
    return name[:80]


@dataclass
class StepResult:
    """What one step gave: ``status`` ok / no / skipped, a one-line ``reason`` for the last
    two, its ``figures`` (JSON-safe), the ``files`` it wrote and its time."""

    key: str
    title: str
    status: str
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK

    def line(self) -> str:
        """The progress line: status, then the step's summary or the reason."""
        if self.status == OK:
            return f"ok: {_summary(self)} ({self.seconds:.1f}s)"
        return f"{self.status}: {self.reason}"


@dataclass
class ModelResult:
    """One model's row: its entry, folder and every step's result, in step order."""

    entry: ModelEntry
    out_dir: str
    steps: list[StepResult]

    @property
    def name(self) -> str:
        return self.entry.label

    @property
    def passed(self) -> bool:
        """No step failed (a skipped step lacked data, it did not fail)."""
        return all(s.status != FAILED for s in self.steps)

    def result(self, key: str) -> StepResult | None:
        return next((s for s in self.steps if s.key == key), None)

    def row(self) -> dict[str, str]:
        return {header: cell(self) for header, cell in COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({"name": self.name, "entry": self.entry.to_dict(),
                           "out_dir": self.out_dir, "passed": self.passed, "row": self.row(),
                           "steps": [asdict(s) for s in self.steps]})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelResult:
        return cls(ModelEntry.from_dict(d["entry"]), d["out_dir"],
                   [StepResult(**s) for s in d["steps"]])


class Job:
    """One model's state while its steps run: the entry, its folder, the results so far,
    and what steps share (the IRs, loaded once, and the example input)."""

    def __init__(self, entry: ModelEntry, out_dir: Path, *, draw: bool = True,
                 progress: bool = False):
        self.entry = entry
        self.out_dir = out_dir
        self.draw = draw
        self.progress = progress
        self.results: dict[str, StepResult] = {}
        #: what one step computes for later ones (e.g. the quantization overrides)
        self.cache: dict[str, Any] = {}
        self._graphs: dict[str, Any] = {}
        self._inputs: tuple[dict[str, np.ndarray], list[Path]] | None = None

    def path(self, prefix: str, suffix: str = "_graph.json") -> Path:
        return self.out_dir / f"{prefix}{suffix}"

    def graph(self, prefix: str) -> Any:
        """The IR ``prefix`` (``fc.api.RECONSTRUCT_PREFIX`` / ``FUSED_PREFIX``) as compile
        wrote it: the steps check the files a user gets."""
        if prefix not in self._graphs:
            import fc.ir

            self._graphs[prefix] = fc.ir.load(self.path(prefix), self.path(prefix, "_params.npz"))
        return self._graphs[prefix]

    def figures(self, key: str) -> dict[str, Any]:
        return self.results[key].figures

    def inputs(self) -> tuple[dict[str, np.ndarray], list[Path]]:
        """The seeded example input of the IR for reconstruct (source layout), written once as
        ``input.npy`` (``input_<i>.npy`` for several inputs) so each step's command reruns on
        the same arrays."""
        if self._inputs is None:
            from fc.api import RECONSTRUCT_PREFIX
            from fc.ir.serialize import atomic_write

            graph = self.graph(RECONSTRUCT_PREFIX)
            arrays = example_inputs(graph, self.entry.seed)
            paths = []
            for i, arr in enumerate(arrays.values()):
                p = self.out_dir / ("input.npy" if len(arrays) == 1 else f"input_{i}.npy")
                with atomic_write(p, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
                paths.append(p)
            self._inputs = (arrays, paths)
        return self._inputs

    def release(self) -> None:
        self._graphs.clear()
        self.cache.clear()
        self._inputs = None
        gc.collect()  # the IR's reference cycles would keep the model resident


@dataclass(frozen=True)
class Step:
    """A step: ``run(job) -> (figures, files)`` calls its feature's library API; a figure
    that fails the step's check is reported by raising ``Failed(reason, figures, files)``.
    ``after`` names the steps whose success it needs; ``lines(figures)`` gives the
    human-readable figures (the first is the progress summary)."""

    key: str
    title: str
    run: Callable[[Job], tuple[dict[str, Any], list[Path]]]
    lines: Callable[[dict[str, Any]], list[str]]
    after: tuple[str, ...] = ()


class Failed(Exception):  # noqa: N818 - a step outcome, caught by run_model
    """A step that measured its figures and found them wanting (e.g. a distance above tol)."""

    def __init__(self, reason: str, figures: dict[str, Any], files: Sequence[Path] = ()):
        super().__init__(reason)
        self.reason, self.figures, self.files = reason, figures, list(files)


def example_inputs(graph: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded N(0, 1) array per graph input, in the source model's layout (what
    ``fcc run``/``fcc reconstruct`` take), of the input's dtype."""
    from fc.ir.layout import to_source_layout

    rng = np.random.default_rng(seed)
    arrays = {}
    for v in graph.inputs:
        if v.shape is None or any(not isinstance(d, int) or d <= 0 for d in v.shape):
            raise FcError(f"input {v.name!r} has no static shape {v.shape}; cannot make an "
                          "example input")
        dtype = np.dtype(v.dtype)
        if dtype.kind == "f":
            arrays[v.name] = rng.standard_normal(v.shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[v.name] = rng.integers(0, 2, v.shape).astype(dtype)
        else:
            arrays[v.name] = rng.integers(0, 10, v.shape).astype(dtype)
    return to_source_layout(graph, arrays)


# -- the steps ------------------------------------------------------------------------------
def _compile(job: Job) -> tuple[dict[str, Any], list[Path]]:
    from fc.api import RECONSTRUCT_PREFIX, compile_model

    e = job.entry
    s = compile_model(e.framework, e.model, job.out_dir, input_shapes=e.input_shapes,
                      params=e.params, seed=e.seed, draw=job.draw)
    graph = job.graph(RECONSTRUCT_PREFIX)
    from fc.ir.layout import to_source_perm

    shapes = {}
    for v in graph.inputs:
        layout = graph.layouts.get(v.name)
        dims = list(v.shape or ())
        shapes[v.name] = [dims[i] for i in to_source_perm(layout)] if layout else dims
    figures = {
        "nodes_before": s.nodes_before, "nodes_after": s.nodes_after,
        "rewrites": {k: v for k, v in s.pass_counts.items() if v},
        "input_shapes": shapes, "notes": list(s.notes), "warnings": list(s.warnings),
        "command": _command("compile", e.framework, e.model, *_params_flags(e),
                            "-o", job.out_dir),
    }
    return figures, list(s.files)


def _compile_lines(f: dict[str, Any]) -> list[str]:
    rewrites = ", ".join(f"{k} {v}" for k, v in f["rewrites"].items()) or "none"
    shapes = ", ".join(f"{k} {_shape(v)}" for k, v in f["input_shapes"].items())
    return [f"nodes: {f['nodes_before']} (IR for reconstruct) -> {f['nodes_after']} "
            "(IR fused for CModel)", f"rewrites: {rewrites}", f"input: {shapes}",
            *f["notes"], *(f"warning: {w}" for w in f["warnings"])]


def _params_flags(e: ModelEntry) -> list[str]:
    out: list[str] = []
    if e.params:
        out += ["--params", e.params]
    shapes = e.input_shapes
    if isinstance(shapes, dict):
        for k, v in shapes.items():
            out += ["--input-shape", f"{k}={','.join(map(str, v))}"]
    elif shapes:
        out += ["--input-shape", ",".join(map(str, shapes))]
    if e.seed:
        out += ["--seed", str(e.seed)]
    return out


def _complexity(job: Job) -> tuple[dict[str, Any], list[Path]]:
    """The seed's command: complexity of IR_for_reconstruct (FLOPs are those of the fused IR
    too; nnz and params also count the batch-norm statistics)."""
    from fc.api import RECONSTRUCT_PREFIX
    from fc.ir.complexity import complexity, write_json

    c = complexity(job.graph(RECONSTRUCT_PREFIX))
    path = job.out_dir / "complexity.json"
    write_json(c, path)
    g, p = job.path(RECONSTRUCT_PREFIX), job.path(RECONSTRUCT_PREFIX, "_params.npz")
    return {"nnz": c.nnz, "params": c.params, "sparsity": c.sparsity,
            "dense_flops": c.dense_flops, "sparse_flops": c.sparse_flops,
            "command": _command("complexity", "--graph-json", g, "--params-file", p,
                                "--json", path)}, [path]


def _complexity_lines(f: dict[str, Any]) -> list[str]:
    from fc.ir.complexity import Complexity, summary_line

    c = Complexity([], f["nnz"], f["params"], f["sparsity"], f["dense_flops"], f["sparse_flops"])
    return [summary_line(c), f"params: {f['params']}",
            f"MFLOPs dense / sparse: {_mflops(f['dense_flops'])} / {_mflops(f['sparse_flops'])}"]


def _reconstruct(backend: str) -> Callable[[Job], tuple[dict[str, Any], list[Path]]]:
    def run(job: Job) -> tuple[dict[str, Any], list[Path]]:
        from fc.api import RECONSTRUCT_PREFIX
        from fc.reconstruct.backends import check

        graph = job.graph(RECONSTRUCT_PREFIX)
        inputs, paths = job.inputs()
        report, _ = check(backend, graph, inputs)
        w = report.worst
        if len(paths) == 1:
            feed = ["--input_npy", paths[0]]
        else:
            feed = [a for name, p in zip(inputs, paths) for a in ("--input", f"{name}={p}")]
        figures = {"distance": w.rel_l2, "max_abs": w.max_abs, "cosine": w.cosine,
                   "output": w.name, "tol": report.tol, "reference": report.reference,
                   "seconds": report.seconds,
                   "command": _command("reconstruct", backend, "--graph",
                                       job.path(RECONSTRUCT_PREFIX), *feed)}
        if not report.ok:
            raise Failed(f"distance {_dist(w.rel_l2)} above tol {report.tol:g} "
                         f"(output {w.name!r})", figures, paths)
        return figures, paths

    return run


def _reconstruct_lines(f: dict[str, Any]) -> list[str]:
    return [f"distance: {_dist(f['distance'])} (tol {f['tol']:g}, vs the {f['reference']})",
            f"max_abs: {_dist(f['max_abs'])}", f"cosine: {f['cosine']:.9f}"]


# -- quantization ---------------------------------------------------------------------------
def _quant_overrides(job: Job) -> dict[str, str]:
    """What the checklist changes in the model's quantization config: its MODEL is the IR
    this checklist compiled, and its outputs (calibration table, reports, .pb) go into the
    model's folder. Computed once per model."""
    if "quant" not in job.cache:
        if not job.entry.config:
            raise Skip(_option_config())
        from fc.api import FUSED_PREFIX
        from fc.quant.config import load_config

        base = {"MODEL.graph": str(job.path(FUSED_PREFIX)),
                "MODEL.params": str(job.path(FUSED_PREFIX, "_params.npz")),
                "OUTPUT_DIR": str(job.out_dir / "quant")}
        cfg = load_config(job.entry.config, base)
        if cfg["QUAN.qconfig.image_path"]:  # calibrated here (and reused when unchanged)
            base["QUAN.qconfig.table"] = str(job.out_dir / "calibration.json")
        elif not cfg.table_path.exists():
            raise Skip("QUAN.qconfig.image_path")
        if cfg["SAVE_PATH"]:
            base["SAVE_PATH"] = str(job.out_dir / Path(cfg["SAVE_PATH"]).name)
        job.cache["quant"] = base
    return job.cache["quant"]


def _quant_config(job: Job, strategy: str | None = None) -> Any:
    """The model's quantization config with the checklist's overrides (and ``strategy``)."""
    from fc.quant.config import load_config

    extra = {} if strategy is None else {"QUAN.strategy": strategy}
    return load_config(job.entry.config, {**_quant_overrides(job), **extra})


#: config key -> the ``fcc quant`` flag that sets it (others: ``--set KEY=VALUE``)
_QUANT_FLAGS = {"QUAN.qconfig.table": "--table", "OUTPUT_DIR": "--output-dir",
                "SAVE_PATH": "--save-path", "QUAN.strategy": "--strategy"}


def _quant_command(job: Job, sub: str, strategy: str | None = None) -> str:
    """The ``fcc quant SUB`` command computing what the step computed."""
    args: list[Any] = ["quant", sub, "--config", job.entry.config]
    overrides = dict(_quant_overrides(job))
    if strategy is not None:
        overrides["QUAN.strategy"] = strategy
    for key, value in overrides.items():
        flag = _QUANT_FLAGS.get(key)
        args += [flag, value] if flag else ["--set", f"{key}={value}"]
    return _command(*args, "--no-progress")


def _option_config() -> str:
    from fc.spelling import speaks_cli

    return "--config C.yml" if speaks_cli() else "config='C.yml'"


def _strategies() -> list[str]:
    from fc.quant.strategies import STRATEGIES

    return list(STRATEGIES)


def _quant_error(job: Job) -> tuple[dict[str, Any], list[Path]]:
    """``fcc quant error`` for every strategy: the final distance and SQNR, one report each
    (CSV/JSON/MD + PNG); the configured strategy's quantized IR (and .pb) as that command
    writes them."""
    from fc.quant import pipeline

    cfg = _quant_config(job)
    if not cfg["EVALUATION.input_images"]:
        raise Skip("EVALUATION.input_images")
    graph = pipeline.load_model(cfg)
    table, reused = pipeline.table_for(cfg, graph, progress=job.progress)
    files: list[Path] = [] if reused else [cfg.table_path, cfg.table_path.with_suffix(".txt")]
    per_strategy: dict[str, Any] = {}
    failures = []
    for name in _strategies():
        try:
            scfg = _quant_config(job, name)
            spec = pipeline.spec_for(scfg, graph, table)
            report = pipeline.error(scfg, graph, spec, progress=job.progress)
            stem = f"error_{name}_{scfg['QUAN.qconfig.weight_quan']}"
            files += report.write(scfg.output_dir, stem)
            if name == cfg.strategy:
                files += pipeline.write_quantized(scfg, graph, spec, draw=job.draw)
                pb = pipeline.write_pb(scfg, graph, spec)
                files += [pb] if pb is not None else []
            per_strategy[name] = {"command": _quant_command(job, "error", name),
                                  "final_distance": report.final_distance,
                                  "final_sqnr_db": report.final.sqnr_db,
                                  "top1_agreement": [report.top1_agree, report.top1_total],
                                  "worst": [r.name for r in report.worst(3)]}
        except FcError as e:
            per_strategy[name] = {"error": _one_line(e)}
            failures.append(f"{name}: {_one_line(e)}")
    figures = {"strategies": per_strategy, "weight_quan": cfg["QUAN.qconfig.weight_quan"],
               "method": table.method, "table": str(cfg.table_path), "table_reused": reused,
               "calibration_images": cfg["QUAN.qconfig.image_path"] or "(table given)",
               "images": str(cfg["EVALUATION.input_images"]),
               "command": _quant_command(job, "error")}
    if failures:
        raise Failed("; ".join(failures), figures, files)
    return figures, files


def _quant_error_lines(f: dict[str, Any]) -> list[str]:
    done = {k: v for k, v in f["strategies"].items() if "final_distance" in v}
    out = [", ".join(f"{k} {_dist(float(v['final_distance']))}" for k, v in done.items())
           + f" (final distance, {f['weight_quan']} weights)"]
    for k, v in f["strategies"].items():
        if k in done:
            agree, total = v["top1_agreement"]
            out.append(f"{k}: final distance {float(v['final_distance']):.6g}, SQNR "
                       f"{float(v['final_sqnr_db']):.2f} dB, top-1 agreement with float "
                       f"{agree}/{total}; worst layers {', '.join(v['worst'])}")
        else:
            out.append(f"{k}: failed: {v['error']}")
    out.append(f"calibration: {f['method']} on {f['calibration_images']}, table {f['table']} "
               f"({'reused' if f['table_reused'] else 'calibrated now'}); error on "
               f"{f['images']}")
    return out


def _quant_accuracy(job: Job) -> tuple[dict[str, Any], list[Path]]:
    """``fcc quant accuracy`` with the config's weight quantization: top-1/top-5 of the float
    model and every strategy on the config's labelled list (``EVALUATION.image_file`` under
    ``input_images``, classes in ``label_file``), the float predictions reused for each row's
    agreement (``fc.quant.sweep``); the table written as that command writes it."""
    cfg = _quant_config(job)
    for key in ("EVALUATION.image_file", "EVALUATION.label_file", "EVALUATION.input_images"):
        if not cfg[key]:
            raise Skip(key)
    from fc.quant.sweep import configurations, sweep

    wq = cfg["QUAN.qconfig.weight_quan"]
    table = sweep(job.entry.config, _quant_overrides(job), configs=configurations(weight_quan=[wq]),
                  progress=job.progress)
    files = table.write(cfg.output_dir, "accuracy", png=job.draw)
    rows, failures = [], []
    for d in table.dicts():
        if d["error"]:
            failures.append(f"{d['strategy']}: {d['error']}")
            continue
        rows.append({"strategy": d["strategy"], "weight_quan": d["weight_quan"], "top1": d["top1"],
                     "top5": d["top5"], "agreement": d["agreement"], "images": d["images"]})
    figures = {"rows": rows, "list": str(cfg["EVALUATION.image_file"]),
               "command": _quant_command(job, "accuracy") + f" --weight-modes {wq}"}
    if failures:
        raise Failed("; ".join(failures), figures, files)
    return figures, files


def _quant_accuracy_lines(f: dict[str, Any]) -> list[str]:
    out = [", ".join(f"{r['strategy']} {r['top1']:.4f}" for r in f["rows"]) + " (top-1)"]
    out += [f"{r['strategy']} ({r['weight_quan']} weights): top-1 {r['top1']:.4f}, top-5 "
            f"{r['top5']:.4f}, agreement with float {r.get('agreement', 1.0):.4f} on "
            f"{r['images']} images" for r in f["rows"]]
    return out


#: the steps, in the order they run; each calls its feature's library API
STEPS: tuple[Step, ...] = (
    Step("compile", "compile", _compile, _compile_lines),
    Step("complexity", "complexity", _complexity, _complexity_lines, after=("compile",)),
    Step("torch", "PyTorch reconstruction", _reconstruct("torch"), _reconstruct_lines,
         after=("compile",)),
    Step("tf", "TensorFlow reconstruction", _reconstruct("tf"), _reconstruct_lines,
         after=("compile",)),
    Step("quant_error", "quantization error", _quant_error, _quant_error_lines,
         after=("compile",)),
    Step("quant_accuracy", "quantized accuracy", _quant_accuracy, _quant_accuracy_lines,
         after=("compile",)),
)
_STEP_BY_KEY = {s.key: s for s in STEPS}


def _summary(r: StepResult) -> str:
    step = _STEP_BY_KEY.get(r.key)
    if step is None or not r.figures:
        return ""
    try:
        return step.lines(r.figures)[0]
    except (KeyError, IndexError, TypeError, ValueError):  # figures of an older checklist
        return ""


# -- running --------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(e, FcError) else f"{type(e).__name__}: {msg}".rstrip(": ")


def run_model(entry: ModelEntry, out_dir: str | os.PathLike, *,
              steps: Sequence[Step] | None = None, draw: bool = True, progress: bool = False,
              report: Callable[[str], None] | None = None) -> ModelResult:
    """Run every step (default :data:`STEPS`) on one model, writing into ``out_dir/<label>``.
    ``report`` gets a progress line before and after each step."""
    from fc import interrupt

    steps = STEPS if steps is None else steps
    job = Job(entry, Path(out_dir) / entry.label, draw=draw, progress=progress)
    say = report or (lambda line: None)
    for i, step in enumerate(steps, 1):
        say(f"[{entry.label} {i}/{len(steps)}] {step.title} ...")
        start = time.perf_counter()
        missing = [k for k in step.after if k not in job.results or not job.results[k].ok]
        if missing:
            result = StepResult(step.key, step.title, FAILED, f"needs {' and '.join(missing)}")
        else:
            try:
                figures, files = step.run(job)
                result = StepResult(step.key, step.title, OK, figures=_json_safe(figures),
                                    files=[str(p) for p in files])
            except Skip as s:
                result = StepResult(step.key, step.title, SKIPPED, str(s))
            except Failed as f:
                result = StepResult(step.key, step.title, FAILED, f.reason,
                                    figures=_json_safe(f.figures), files=[str(p) for p in f.files])
            except Exception as e:  # noqa: BLE001 - a failed step must not stop the others
                if interrupt.interrupted():
                    raise
                log.debug("step %s of %s failed", step.key, entry.label, exc_info=True)
                result = StepResult(step.key, step.title, FAILED, _one_line(e))
        result.seconds = time.perf_counter() - start
        job.results[step.key] = result
        say(f"[{entry.label} {i}/{len(steps)}] {step.title}: {result.line()}")
    job.release()
    return ModelResult(entry, str(job.out_dir), [job.results[s.key] for s in steps])


def _run_on_cluster(entries: Sequence[ModelEntry], out_dir: Path, address: str,
                    say: Callable[[str], None], **kw: Any) -> list[ModelResult]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise ChecklistError("--dask needs dask.distributed (pip install -e '.[quant]')") from None
    try:
        client = Client(address)  # waits distributed.comm.timeouts.connect (dask's config)
    except (OSError, TimeoutError, ValueError) as e:
        raise ChecklistError(f"--dask {address}: cannot reach the scheduler ({e})") from None
    with client:
        futures = {client.submit(run_model, e, out_dir, pure=False, key=f"checklist-{e.label}",
                                 **kw): i for i, e in enumerate(entries)}
        results: list[ModelResult | None] = [None] * len(entries)
        for fut in as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            verdict = "passed" if r.passed else "FAILED: " + ", ".join(
                s.key for s in r.steps if s.status == FAILED)
            say(f"[{r.name}] done on the cluster: {verdict}")
    return [r for r in results if r is not None]


def run_checklist(entries: Sequence[ModelEntry], out_dir: str | os.PathLike, *,
                  steps: Sequence[Step] | None = None, draw: bool = True, progress: bool = False,
                  report: Callable[[str], None] | None = None, dask: str | None = None
                  ) -> tuple[list[ModelResult], list[Path]]:
    """Run the checklist on every model (in turn, or as tasks of the Dask cluster at
    ``dask``: workers must see ``out_dir``), then write ``checklist.json`` and
    ``checklist.md`` into ``out_dir``, keeping rows of other models already there."""
    if not entries:
        raise ChecklistError("no models to check")
    labels = [e.label for e in entries]
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise ChecklistError(f"several models are named {dup[0]!r}; give each a distinct name")
    out = Path(out_dir).resolve()
    previous = read_checklist(out / "checklist.json") if (out / "checklist.json").exists() else []
    say = report or (lambda line: None)
    kw = {"steps": steps, "draw": draw, "progress": progress}
    if dask:
        results = _run_on_cluster(entries, out, dask, say, **kw)
    else:
        results = [run_model(e, out, report=say, **kw) for e in entries]
    fresh = {r.name: r for r in results}  # rerun models keep their place in the table
    merged = [fresh.pop(r.name, r) for r in previous] + list(fresh.values())
    return results, write_checklist(merged, out)


# -- the models file ------------------------------------------------------------------------
_ENTRY_KEYS = {"framework", "model", "params", "config", "input_shape", "input_shapes", "seed",
               "name", "orig_top1", "training_date"}


def load_models(path: str | os.PathLike) -> list[ModelEntry]:
    """A YAML list of models, one mapping each (``framework``, ``model`` required; ``params``,
    ``config``, ``input_shape`` "1,3,224,224" or {name: shape}, ``seed``, ``name``,
    ``orig_top1``, ``training_date``). Relative paths resolve against the file's folder (a
    ``model`` only when that file exists there: it may be a zoo name)."""
    import yaml

    from fc.yamlio import safe_load

    path = Path(path)
    try:
        doc = safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChecklistError(f"{path}: models file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ChecklistError(f"{path}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ChecklistError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if isinstance(doc, Mapping) and set(doc) == {"models"}:
        doc = doc["models"]
    if not isinstance(doc, list) or not doc:
        raise ChecklistError(f"{path}: expected a non-empty list of models (each a mapping "
                             "with framework and model)")
    base = path.resolve().parent
    return [_entry(item, f"{path}: model {i + 1}", base) for i, item in enumerate(doc)]


def _entry(item: Any, where: str, base: Path) -> ModelEntry:
    from fc.api import parse_input_shapes

    if not isinstance(item, Mapping):
        raise ChecklistError(f"{where}: expected a mapping, got {type(item).__name__}")
    unknown = sorted(set(map(str, item)) - _ENTRY_KEYS)
    if unknown:
        raise ChecklistError(f"{where}: unknown key {unknown[0]!r} (known: "
                             f"{', '.join(sorted(_ENTRY_KEYS))})")
    for key in ("framework", "model"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ChecklistError(f"{where}: {key} is required (a string)")

    def text(key: str) -> str | None:
        v = item.get(key)
        if v is not None and not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ChecklistError(f"{where}: {key}: expected a string, got {v!r}")
        return None if v is None else str(v)

    def resolved(key: str, must_exist: bool) -> str | None:
        v = text(key)
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        full = p if p.is_absolute() else base / p
        if full.exists() or must_exist:
            if must_exist and not full.exists():
                raise ChecklistError(f"{where}: {key}: file not found: {full}")
            return str(full)
        return v

    shapes_item = item.get("input_shapes", item.get("input_shape"))
    if shapes_item is None:
        shapes = None
    elif isinstance(shapes_item, str):
        shapes = parse_input_shapes([shapes_item])
    elif isinstance(shapes_item, list) and all(isinstance(d, int) for d in shapes_item):
        shapes = parse_input_shapes([",".join(map(str, shapes_item))])
    elif isinstance(shapes_item, Mapping):
        shapes = parse_input_shapes([f"{k}={v if isinstance(v, str) else ','.join(map(str, v))}"
                                     for k, v in shapes_item.items()])
    else:
        raise ChecklistError(f"{where}: input_shape: expected '1,3,224,224', a list or "
                             f"{{name: shape}}, got {shapes_item!r}")
    seed = item.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ChecklistError(f"{where}: seed: expected an integer, got {seed!r}")
    top1 = item.get("orig_top1")
    if top1 is not None and (not isinstance(top1, int | float) or isinstance(top1, bool)):
        raise ChecklistError(f"{where}: orig_top1: expected a number, got {top1!r}")
    return ModelEntry(framework=item["framework"], model=resolved("model", False) or "",
                      params=resolved("params", True), config=resolved("config", True),
                      input_shapes=shapes, seed=seed, name=text("name"),
                      orig_top1=None if top1 is None else float(top1),
                      training_date=text("training_date"))


# -- the table ------------------------------------------------------------------------------
def _dist(x: float | str) -> str:
    """A distance as ``fcc reconstruct`` prints it."""
    if isinstance(x, str):
        return x
    return f"{x:.3e}" if math.isfinite(x) else str(x)


def _mflops(x: float) -> str:
    return f"{x / 1e6:.2f}"


def _shape(dims: Iterable[int]) -> str:
    return "x".join(map(str, dims))


def _figure(m: ModelResult, key: str) -> StepResult | None:
    r = m.result(key)
    return r if r is not None and r.ok else None


def _status_cell(m: ModelResult, key: str) -> str:
    r = m.result(key)
    return "—" if r is None else ("no" if r.status == FAILED else r.status)


def _cell_compile(m: ModelResult) -> str:
    r = _figure(m, "compile")
    if r is None:
        return _status_cell(m, "compile")
    return f"yes ({r.figures['nodes_before']} → {r.figures['nodes_after']} nodes)"


def _cell_input_shape(m: ModelResult) -> str:
    r = m.result("compile")
    if r is None or not r.figures:
        return _status_cell(m, "compile")
    return ", ".join(_shape(v) for v in r.figures["input_shapes"].values())


def _cell_nnz(m: ModelResult) -> str:
    r = _figure(m, "complexity")
    return _status_cell(m, "complexity") if r is None else \
        f"{r.figures['nnz']} / {r.figures['sparsity']:.4f}"


def _cell_flops(m: ModelResult) -> str:
    r = _figure(m, "complexity")
    return _status_cell(m, "complexity") if r is None else \
        f"{_mflops(r.figures['dense_flops'])} / {_mflops(r.figures['sparse_flops'])}"


def _cell_rt(key: str) -> Callable[[ModelResult], str]:
    def cell(m: ModelResult) -> str:
        r = m.result(key)
        if r is None:
            return "—"
        if "distance" in r.figures:
            return f"{'yes' if r.ok else 'no'} ({_dist(r.figures['distance'])})"
        return _status_cell(m, key)

    return cell


#: the strategies of the "quantacc (fpga/asic)" column: the FPGA's power-of-two arithmetic and
#: the ASIC's symmetric int8, in integers when fc executes them so (the _t forms) — the first
#: of each pair the accuracy step measured
QUANTACC = (("scale_shift_t", "scale_shift"), ("symmetry_max_t", "symmetry_max"))


def _accuracy_rows(m: ModelResult) -> dict[str, dict[str, Any]] | None:
    r = _figure(m, "quant_accuracy")
    if r is None:
        return None
    # the config's weight quantization when the accuracy step measured both
    rows = {}
    for row in r.figures["rows"]:
        rows.setdefault(row["strategy"], row)
    return rows


def _cell_top1(m: ModelResult) -> str:
    rows = _accuracy_rows(m)
    if rows is None:
        return _status_cell(m, "quant_accuracy")
    return f"{rows['null']['top1']:.4f}" if "null" in rows else "—"


def _cell_quantacc(m: ModelResult) -> str:
    rows = _accuracy_rows(m)
    if rows is None:
        return _status_cell(m, "quant_accuracy")
    cells = []
    for choices in QUANTACC:
        name = next((n for n in choices if n in rows), None)
        cells.append("—" if name is None else f"{rows[name]['top1']:.4f}")
    return " / ".join(cells)


#: the seed's columns, each a function of one model's results
COLUMNS: tuple[tuple[str, Callable[[ModelResult], str]], ...] = (
    ("model", lambda m: m.name),
    ("acc top1", _cell_top1),
    ("orig model top1", lambda m: "—" if m.entry.orig_top1 is None else f"{m.entry.orig_top1:g}"),
    ("training date", lambda m: m.entry.training_date or "—"),
    ("input_shape", _cell_input_shape),
    ("compiler pass", _cell_compile),
    ("nnz/sparsity", _cell_nnz),
    ("flops dense/sp M", _cell_flops),
    ("torch rt", _cell_rt("torch")),
    ("tf rt", _cell_rt("tf")),
    ("quantacc (fpga/asic)", _cell_quantacc),
)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(models: Sequence[ModelResult]) -> str:
    """The table (one row per model), the legend, then a section per model and step."""
    headers = [h for h, _ in COLUMNS]
    out = ["# Model checklist", "", "| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    for m in models:
        row = m.row()
        out.append("| " + " | ".join(_md_cell(row[h]) for h in headers) + " |")
    out += ["", "`no`: the step failed (its reason is in the model's section); `skipped`: the "
            "data it needs was not given (the section names the key); `—`: not measured by "
            "fc (orig model top1 and training date come from the models file: `orig_top1`, "
            "`training_date`). nnz/sparsity and FLOPs are those of IR_for_reconstruct "
            "(`fcc complexity`), FLOPs in millions of multiply-accumulates; torch rt / tf rt "
            "give the reconstructed model's distance (rel-L2) to the golden executor; "
            "quantacc (fpga/asic) is the top-1 under scale_shift / symmetry_max (their "
            "integer `_t` forms when measured)."]
    for m in models:
        verdict = "all steps passed" if m.passed else "some steps failed"
        out += ["", f"## {m.name}", "",
                f"`{m.entry.framework}` model `{m.entry.model}`"
                + (f", config `{m.entry.config}`" if m.entry.config else "")
                + f"; files in `{m.out_dir}`; {verdict}.", "",
                "| step | status | summary | seconds |", "|---|---|---|---|"]
        for r in m.steps:
            text = _summary(r) if r.ok else r.reason
            out.append(f"| {r.title} | {'yes' if r.ok else r.status} | {_md_cell(text)} | "
                       f"{r.seconds:.1f} |")
        for r in m.steps:
            out += ["", f"### {r.title}: {'yes' if r.ok else r.status}", ""]
            if not r.ok:
                out.append(f"- {r.status}: {r.reason}")
            step = _STEP_BY_KEY.get(r.key)
            if r.figures and step is not None:
                try:
                    out += [f"- {line}" for line in step.lines(r.figures)]
                except (KeyError, IndexError, TypeError, ValueError) as e:  # an older fc's
                    out.append(f"- (cannot show these figures: {type(e).__name__} {e}; see "
                               "checklist.json)")
                if "command" in r.figures:
                    out.append(f"- command: `{r.figures['command']}`")
            if r.files:
                out.append(f"- files (in `{m.out_dir}`): " + ", ".join(
                    f"`{_relative(f, m.out_dir)}`" for f in r.files))
    return "\n".join(out) + "\n"


def _relative(path: str, folder: str) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return path


def _command(*parts: Any) -> str:
    import shlex

    return "fcc " + " ".join(shlex.quote(str(p)) for p in parts)


def _json_safe(x: Any) -> Any:
    """JSON has no inf/nan (written as strings) and no numpy scalars or tuples."""
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else str(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_checklist(models: Sequence[ModelResult], out_dir: str | os.PathLike) -> list[Path]:
    """``checklist.json`` (every figure) and ``checklist.md`` (rendered from it)."""
    from fc.ir.serialize import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "version": VERSION, "columns": [h for h, _ in COLUMNS],
           "models": [m.to_dict() for m in models]}
    paths = [out / "checklist.json", out / "checklist.md"]
    with atomic_write(paths[0], "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with atomic_write(paths[1], "w") as f:
        f.write(render_markdown(models))
    return paths


def read_checklist(path: str | os.PathLike) -> list[ModelResult]:
    """The models of an earlier ``checklist.json`` (to keep their rows)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChecklistError(f"{path}: not a readable checklist ({e}); remove it or write "
                             "elsewhere") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ChecklistError(f"{path}: not an fc checklist (format {FORMAT} v{VERSION}); remove "
                             "it or write elsewhere")
    try:
        return [ModelResult.from_dict(m) for m in doc["models"]]
    except (KeyError, TypeError) as e:
        raise ChecklistError(f"{path}: malformed checklist entry ({e}); remove it or write "
                             "elsewhere") from None
