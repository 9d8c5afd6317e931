"""Compile-side costs of fc: a real model end to end, scaling with graph size, and the CLI.

(a) ResNet-50 from ONNX (fc's torch zoo model, exported once): ``fc.api.compile_model("onnx",
    ...)`` with ``draw=True`` and ``draw=False``, each in a fresh spawned process: import /
    compile / write seconds (medians), the peak RSS added by the first call (VmHWM reset
    before it) and how much of it stays resident after the call (before and after
    ``gc.collect()``), the process's whole-life peak RSS, and the tracemalloc peak of a
    separate, untimed call.
(b) Linear scaling: synthetic graphs of 2k-20k nodes (Conv -> BatchNormalization -> Relu
    blocks, a residual Add every 3 blocks, 8 channels, 8x8 maps) built with the fc.ir API:
    ``compile_graph`` (also with Python's cyclic GC off) and ``fc.ir.save`` time per node, and
    t(largest)/t(smallest), which is ~ the size ratio when linear (flagged past 1.5x that).
(c) ``fcc compile mxnet`` on resnet50_v1b, from exported files and from the zoo name, in a
    child process: its wall time and peak RSS, and where the time goes: framework imports
    (``-X importtime``), mxnet building the zoo net (timed inside the same run), the rest is
    fc's.
(t) PyTorch: ``fcc compile torch resnet50`` split into torch.export, the decompositions and
    fc's own conversion, with ``torch.onnx.export`` of the same module as the peer; then both
    IRs rebuilt as torch modules (``fc.reconstruct.torch``): build time and distances.

(f) TensorFlow: ``fcc compile tf resnet50`` split into the Keras build (keras.applications,
    then fc's seeded weights), freezing (trace + captured variables) and fc's own conversion,
    with TF's ``convert_variables_to_constants_v2`` of the same concrete function as the peer of
    the freezing; then both IRs reconstructed as frozen GraphDefs (``fc.reconstruct.tf``):
    seconds, distances, and Transposes in the .pb; and the Transposes left in the fused IR of
    each Keras application the issue names.

    python benchmarks/bench_compile.py [--parts a b c t f] [--sizes 2000 5000 10000 20000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    REPORT_PEAK_RSS,
    PeakRSS,
    export_resnet50_onnx,
    fmt_mib,
    machine_line,
    print_table,
    rss_kib,
    run_child,
    run_isolated,
    tracemalloc_peak,
    verdict,
)

#: top-level packages whose import time is "framework", not fc's (attributed with all they import)
FRAMEWORKS = ("numpy", "onnx", "onnxruntime", "mxnet", "torch", "tensorflow", "graphviz",
              "scipy", "PIL", "google", "requests")
#: a t(largest)/t(smallest) above this many times the size ratio is flagged as non-linear
NONLINEAR_FACTOR = 1.5


# -- (a) ResNet-50 through compile_model --------------------------------------------------------


def compile_resnet_child(onnx_path: str, draw: bool, repeat: int) -> dict:
    """In a fresh process: fc's modules imported first (their import is not the model's), then
    one call under PeakRSS, the RSS it leaves behind before and after ``gc.collect()``,
    ``repeat`` timed calls (each after a ``gc.collect()``), one call under tracemalloc."""
    import fc.api
    import fc.frontend.onnx  # noqa: F401  (pre-imported: module import is not model import)
    import fc.ir.draw  # noqa: F401
    import fc.passes.pipeline  # noqa: F401

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="fc_bench_compile_"))
    try:
        with PeakRSS() as mem:
            first = fc.api.compile_model("onnx", onnx_path, tmp / "first", draw=draw)
        kept = rss_kib() / 1024 - mem.base_mib
        gc.collect()
        kept_after_gc = rss_kib() / 1024 - mem.base_mib
        runs = []
        for i in range(repeat):
            gc.collect()
            start = time.perf_counter()
            s = fc.api.compile_model("onnx", onnx_path, tmp / f"run{i}", draw=draw)
            runs.append((s.import_seconds, s.compile_seconds, s.write_seconds,
                         time.perf_counter() - start))
        traced, _ = tracemalloc_peak(
            lambda: fc.api.compile_model("onnx", onnx_path, tmp / "traced", draw=draw))
        sizes = {p.name: p.stat().st_size for p in (tmp / "first").iterdir()}
        return {
            "import": statistics.median(r[0] for r in runs),
            "compile": statistics.median(r[1] for r in runs),
            "write": statistics.median(r[2] for r in runs),
            "total": statistics.median(r[3] for r in runs),
            "base_mib": mem.base_mib, "increase_mib": mem.increase_mib, "method": mem.method,
            "process_peak_mib": PeakRSS.process_peak_mib(mem), "kept_mib": kept,
            "kept_after_gc_mib": kept_after_gc,
            "tracemalloc_mib": traced, "nodes": (first.nodes_before, first.nodes_after),
            "warnings": first.warnings, "bytes": sum(sizes.values()), "files": len(sizes),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def part_a(args: argparse.Namespace, tmp: Path) -> None:
    onnx_path = os.fspath(export_resnet50_onnx(tmp / "resnet50.onnx", seed=args.seed))
    rows, notes = [], []
    for draw in (True, False):
        r = run_isolated(compile_resnet_child, onnx_path, draw, args.repeat)
        rows.append([f"draw={draw}", f"{r['nodes'][0]} -> {r['nodes'][1]}",
                     f"{r['import']:.3f}", f"{r['compile']:.3f}", f"{r['write']:.3f}",
                     f"{r['total']:.3f}", f"{r['bytes'] / 2**20:.1f} ({r['files']})",
                     *(fmt_mib(r[k]) for k in ("base_mib", "increase_mib", "kept_mib",
                                               "kept_after_gc_mib", "process_peak_mib",
                                               "tracemalloc_mib"))])
        notes += r["warnings"]
        method = r["method"]
    print_table(f"(a) ResNet-50 (torch zoo, ONNX, BN kept): fc.api.compile_model('onnx', ...), "
                f"seconds = median of {args.repeat}",
                ["run", "nodes", "import s", "compile s", "write s", "total s", "out MiB (files)",
                 "RSS before MiB", "peak +MiB", "kept +MiB", "after gc +MiB", "process peak MiB",
                 "tracemalloc MiB"], rows)
    print(f"each row in a fresh spawned process with fc's modules imported beforehand ('RSS "
          f"before'); 'peak +' = RSS added by the first call ({method}); 'kept +' = RSS still added "
          f"after it returned, 'after gc +' = the same after gc.collect(); process peak = the "
          f"process's VmHWM over its life (imports, all calls; not ru_maxrss, which a spawned "
          f"child inherits from its parent); tracemalloc = Python-heap peak of one more, "
          f"untimed call. draw=True runs Graphviz 'dot' as a subprocess: its time is in 'write', "
          f"its memory in no column.")
    for w in dict.fromkeys(notes):
        print(f"warning from fc: {w}")


# -- (b) scaling on synthetic graphs ------------------------------------------------------------


def synthetic_graph(n_nodes: int, *, channels: int = 8, hw: int = 8, seed: int = 0):
    """Conv(3x3) -> BatchNormalization -> Relu blocks with a residual Add every 3 blocks, until
    the graph has at least ``n_nodes`` nodes (10 nodes per 3 blocks)."""
    from fc.ir import Graph

    rng = np.random.default_rng(seed)
    c = channels
    g = Graph(f"synthetic_{n_nodes}")
    cur = skip = g.add_input("x", (1, c, hw, hw))
    i = 0
    while len(g) < n_nodes:
        w = g.add_const(f"conv{i}_w", (rng.standard_normal((c, c, 3, 3)) * (2 / (9 * c)) ** 0.5)
                        .astype(np.float32))
        b = g.add_const(f"conv{i}_b", rng.normal(0, 0.1, c).astype(np.float32))
        y = g.add_node("Conv", [cur, w, b], {"pads": (1, 1, 1, 1)}, name=f"conv{i}").output
        bn = [g.add_const(f"bn{i}_{k}", v.astype(np.float32)) for k, v in (
            ("scale", rng.uniform(0.5, 1.5, c)), ("bias", rng.normal(0, 0.1, c)),
            ("mean", rng.normal(0, 0.1, c)), ("var", rng.uniform(0.5, 1.5, c)))]
        y = g.add_node("BatchNormalization", [y, *bn], name=f"bn{i}").output
        cur = g.add_node("Relu", [y], name=f"relu{i}").output
        i += 1
        if i % 3 == 0:
            cur = skip = g.add_node("Add", [cur, skip], name=f"add{i // 3}").output
    g.outputs.append(cur)
    return g


def _timed(fn: Callable[..., Any], *args: Any, gc_enabled: bool = True, **kwargs: Any
           ) -> tuple[float, Any]:
    """Seconds of one call ``fn(*args, **kwargs)`` and its result, after collecting earlier
    garbage (fc's graphs are reference cycles, so the previous run's graphs would otherwise
    still be on the heap)."""
    gc.collect()
    if not gc_enabled:
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def part_b(args: argparse.Namespace, tmp: Path) -> None:
    import fc.ir as ir
    from fc.passes.pipeline import compile_graph

    logging.disable(logging.WARNING)
    rows, res = [], []
    for n in args.sizes:
        t: dict[str, list[float]] = {"build": [], "compile": [], "compile_nogc": [], "save": []}
        # at least --scale-repeat runs, more for small graphs (until ~2 s spent): a 0.1 s
        # figure is the denominator of the scaling ratio and must not be one noisy sample
        while len(t["compile"]) < args.scale_repeat or (
                sum(map(sum, t.values())) < 2.0 and len(t["compile"]) < 25):
            g = fused = None
            dt, g = _timed(synthetic_graph, n, seed=args.seed)
            t["build"].append(dt)
            dt, (fused, report) = _timed(compile_graph, g)
            t["compile"].append(dt)
            fused = None
            dt, (fused, report) = _timed(compile_graph, g, gc_enabled=False)
            t["compile_nogc"].append(dt)
            dt, _ = _timed(ir.save, fused, tmp / f"synthetic_{n}")
            t["save"].append(dt)
        med = {k: statistics.median(v) for k, v in t.items()}
        res.append((len(g), t))
        rows.append([len(g), len(fused), report.iterations, len(t["compile"]), f"{med['build']:.3f}",
                     *(f"{med[k]:.3f} ({med[k] / len(g) * 1e6:.0f})"
                       for k in ("compile", "compile_nogc", "save"))])
        print(f"  {len(g)} nodes: compile {med['compile']:.2f} s, save {med['save']:.2f} s", flush=True)
        g = fused = None
    print_table("(b) synthetic Conv-BN-Relu(+Add) graphs, 8 channels 8x8, built with the fc.ir API: "
                "median seconds (us per node) of compile_graph, of compile_graph with Python's "
                "cyclic GC off, of fc.ir.save (fused graph)",
                ["nodes", "fused", "pass iters", "runs", "build s", "compile s (us/node)",
                 "gc off s (us/node)", "save s (us/node)"], rows)
    (n0, t0), (n1, t1) = res[0], res[-1]
    size_ratio = n1 / n0
    limit = NONLINEAR_FACTOR * size_ratio
    for key, what in (("compile", "compile_graph"), ("compile_nogc", "compile_graph, gc off"),
                      ("save", "save")):
        ratio = statistics.median(t1[key]) / statistics.median(t0[key])
        flag = "ok (about linear)" if ratio <= limit else "FLAG: worse than linear"
        print(f"{what}: t({n1})/t({n0}) = {ratio:.1f} on medians "
              f"({min(t1[key]) / min(t0[key]):.1f} on minimums) for {size_ratio:.1f}x the nodes "
              f"-> {flag} (flag above {limit:.0f})")


# -- (c) the fcc command line on mxnet resnet50_v1b ----------------------------------------------


def export_zoo_child(name: str, prefix: str, seed: int) -> str:
    from fc.zoo.mxnet import export_model

    return export_model(name, prefix, seed=seed)[0]


#: what the ``fcc`` console script runs (``sys.exit(fc.cli.main())``), plus a timer around
#: ``zoo.export_model``: for a zoo name, fc's import phase first has mxnet build, calibrate
#: and export the net, and that is mxnet's work, not fc's.
FCC_DRIVER = REPORT_PEAK_RSS + """
import sys, time
import fc.zoo.mxnet as zoo
_export = zoo.export_model
def _timed(*args, **kwargs):
    from fc.frontend.mxnet._mx import import_mxnet
    import_mxnet()  # its import time is counted by -X importtime, not here
    start = time.perf_counter()
    try:
        return _export(*args, **kwargs)
    finally:
        print(f"BENCH mxnet_export {time.perf_counter() - start:.6f}", file=sys.stderr)
zoo.export_model = _timed
from fc.cli import main
sys.exit(main(sys.argv[1:]))
"""
_EXPORT_LINE = re.compile(r"^BENCH mxnet_export ([\d.]+)$", re.MULTILINE)


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def import_breakdown(stderr: str) -> dict[str, float]:
    """Seconds of import time by owner, from ``-X importtime`` lines: a module belongs to a
    framework when it or any module importing it is a framework package (so numpy's own
    imports count as numpy's), else to fc when it or an importer is ``fc``, else to "other"
    (the standard library, site). Lines come children-first, indented by nesting level."""
    lines = []
    for raw in stderr.splitlines():
        m = _IMPORT_LINE.match(raw)
        if m:
            lines.append((int(m.group(1)), (len(m.group(3)) - 1) // 2, m.group(4)))
    out = {"framework": 0.0, "fc": 0.0, "other": 0.0}
    by_framework: dict[str, float] = {}
    stack: list[tuple[int, str]] = []  # ancestors of the current line (reversed walk = preorder)
    for self_us, level, name in reversed(lines):
        while stack and stack[-1][0] >= level:
            stack.pop()
        chain = [n for _, n in stack] + [name]
        tops = [n.split(".")[0] for n in chain]
        framework = next((t for t in tops if t in FRAMEWORKS), None)
        if framework:
            out["framework"] += self_us / 1e6
            by_framework[framework] = by_framework.get(framework, 0.0) + self_us / 1e6
        elif "fc" in tops:
            out["fc"] += self_us / 1e6
        else:
            out["other"] += self_us / 1e6
        stack.append((level, name))
    out.update({f"  {k}": v for k, v in sorted(by_framework.items(), key=lambda kv: -kv[1])})
    return out


_NODES_LINE = re.compile(r"nodes: (\d+) \(IR for reconstruct\) -> (\d+)")
_TIME_LINE = re.compile(r"time: import ([\d.]+)s, compile ([\d.]+)s, write ([\d.]+)s")


def part_c(args: argparse.Namespace, tmp: Path) -> None:
    name = "resnet50_v1b"
    sym = run_isolated(export_zoo_child, name, os.fspath(tmp / "mx" / name), args.seed)
    print(f"  exported zoo {name} (seed {args.seed}) to {Path(sym).name} + .params", flush=True)
    py_start = statistics.median(run_child([sys.executable, "-c", "pass"]).wall for _ in range(3))
    fc_cli = statistics.median(
        run_child([sys.executable, "-c", "import fc.cli"]).wall for _ in range(3))

    extra = [] if args.png else ["--no-png"]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    rows, by_framework = [], []
    for label, model in (("files", sym), ("zoo name", "resnet50v1b")):
        runs = []
        for i in range(args.cli_repeat):
            out = tmp / f"out_{label.replace(' ', '_')}_{i}"
            r = run_child([sys.executable, "-c", FCC_DRIVER, "compile", "mxnet", model,
                           "-o", os.fspath(out), *extra], env=env)
            if r.returncode != 0:
                tail = (r.stderr.strip().splitlines() or ["(no stderr)"])[-1]
                print(f"  fcc compile mxnet {label}: FAILED (exit {r.returncode}): {tail}")
                break
            runs.append(r)
        if len(runs) < args.cli_repeat:
            rows.append([label, "failed"] + [""] * 9)
            continue
        r = sorted(runs, key=lambda x: x.wall)[len(runs) // 2]  # the median run
        m = _TIME_LINE.search(r.stdout)
        phases = "/".join(m.groups()) if m else "?"
        n = _NODES_LINE.search(r.stdout)
        nodes = f"{n.group(1)} -> {n.group(2)}" if n else "?"
        imports = import_breakdown(r.stderr)
        mx = _EXPORT_LINE.search(r.stderr)
        mxnet_work = float(mx.group(1)) if mx else 0.0
        not_fc = imports["framework"] + mxnet_work
        peak = fmt_mib(r.peak_rss_mib) if r.peak_rss_mib is not None else "?"
        rows.append([label, nodes, f"{r.wall:.2f}", peak, f"{imports['framework']:.2f}",
                     f"{mxnet_work:.2f}", f"{imports['fc']:.2f}", f"{imports['other']:.2f}", phases,
                     f"{r.wall - not_fc:.2f}", f"{(r.wall - not_fc) / r.wall:.0%}"])
        by_framework.append((label, {k.strip(): v for k, v in imports.items() if k.startswith("  ")}))
    print_table(f"(c) fcc compile mxnet resnet50_v1b ({'with' if args.png else 'without'} PNGs), "
                f"median of {args.cli_repeat} run(s); seconds",
                ["model", "nodes", "wall", "peak RSS MiB", "fw imports", "mxnet work", "fc imports",
                 "other imports", "fcc: import/compile/write", "fc", "fc share"], rows)
    for label, fw in by_framework:
        print(f"framework imports ({label}): " + ", ".join(f"{k} {v:.2f}s" for k, v in fw.items()))
    print(f"python start-up alone: {py_start:.2f}s; `python -c 'import fc.cli'`: {fc_cli:.2f}s (wall)")
    print("each run: `python -c DRIVER compile mxnet MODEL -o OUT`, DRIVER = what the fcc script "
          "runs (fc.cli.main) plus a timer around zoo.export_model and a report of the child's "
          "VmHWM at exit = 'peak RSS' (Graphviz's dot not included; not ru_maxrss/"
          "RUSAGE_CHILDREN, which start at the parent's RSS). Imports from -X importtime, each "
          "module attributed to the framework that imported it. 'mxnet work' = zoo.export_model "
          "(mxnet builds, calibrates and exports the net; inside fcc's import phase for the zoo "
          "name). 'fcc: import/compile/write' as fcc prints it (its import phase includes lazy "
          "imports). fc = wall - fw imports - mxnet work (fc's own imports and work, plus python "
          "start-up); fc share = fc / wall.")


# -- (t) PyTorch: fcc compile torch resnet50, and its reconstruction ---------------------------


def torch_compile_child(repeat: int, seed: int) -> dict:
    """In a fresh process: ResNet-50 from fc's torch zoo through fc's torch route, split into
    torch.export, the decompositions and fc's own conversion (the first call of each apart:
    torch compiles lazily), and ``torch.onnx.export`` of the same module as the peer."""
    import warnings

    import torch

    import fc.zoo.torch as zoo
    from fc.frontend.torch.export import decompose, trace
    from fc.frontend.torch.importer import import_program

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    model = zoo.resnet50(seed=seed)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    phases: dict[str, list[float]] = {"export": [], "decompose": [], "convert": []}
    program = None
    for _ in range(repeat + 1):
        gc.collect()
        t = time.perf_counter()
        traced = trace(model, [x], source="resnet50")
        phases["export"].append(time.perf_counter() - t)
        t = time.perf_counter()
        program = decompose(traced.program, source="resnet50")
        phases["decompose"].append(time.perf_counter() - t)
        t = time.perf_counter()
        graph = import_program(program, traced.input_shapes, source="resnet50", name="resnet50")
        phases["convert"].append(time.perf_counter() - t)
    for _ in range(2 * repeat):  # fc's own part is the short one: more samples
        gc.collect()
        t = time.perf_counter()
        import_program(program, traced.input_shapes, source="resnet50", name="resnet50")
        phases["convert"].append(time.perf_counter() - t)
    onnx_times = []
    with tempfile.TemporaryDirectory(prefix="fc_bench_onnx_") as tmp:
        for i in range(repeat + 1):
            gc.collect()
            t = time.perf_counter()
            torch.onnx.export(model, (x,), os.path.join(tmp, f"r{i}.onnx"), dynamo=False,
                              opset_version=17, dynamic_axes={"input": {0: "N"}},
                              input_names=["input"])
            onnx_times.append(time.perf_counter() - t)
    return {"phases": phases, "onnx": onnx_times, "nodes": len(graph),
            "ops": graph.op_histogram()}


def torch_reconstruct_child(repeat: int, seed: int) -> dict:
    """In a fresh process: ResNet-50 imported from the torch zoo and compiled; each IR rebuilt
    as a torch module (first build apart from the median: it imports the lowerings) and run;
    distances to the golden executor and to the source module."""
    import warnings

    import torch

    import fc.zoo.torch as zoo
    from fc.frontend.torch import import_torch
    from fc.np_ops import run
    from fc.passes.pipeline import compile_graph
    from fc.reconstruct.torch import reconstruct, run_numpy
    from fc.testing import rel_l2

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    graph = import_torch("resnet50", seed=seed).graph
    fused, _ = compile_graph(graph)
    x = np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        source = zoo.resnet50(seed=seed)(torch.from_numpy(x)).numpy()
    out = {}
    for tag, g in (("IR_for_reconstruct", graph), ("IR_fused_for_CModel", fused)):
        times = []
        for _ in range(repeat + 1):
            gc.collect()
            t = time.perf_counter()
            module = reconstruct(g)
            times.append(time.perf_counter() - t)
        golden = run(g, x)["output"]
        got = run_numpy(module, x)["output"]
        out[tag] = {"times": times, "nodes": len(g), "vs_golden": rel_l2(got, golden),
                    "vs_source": rel_l2(got, source),
                    "golden_vs_source": rel_l2(golden, source),
                    "params": sum(p.numel() for p in module.parameters())}
    return out


def part_torch(args: argparse.Namespace, tmp: Path) -> None:
    """(t) ``fcc compile torch resnet50`` split into its phases, torch.onnx.export as the peer."""
    res = run_isolated(torch_compile_child, args.repeat, args.seed)
    med = {k: statistics.median(v[1:]) for k, v in res["phases"].items()}
    first = {k: v[0] for k, v in res["phases"].items()}
    onnx_med = statistics.median(res["onnx"][1:])
    rows = [(k, f"{first[k]:.3f}", f"{med[k]:.3f}") for k in ("export", "decompose", "convert")]
    rows.append(("total (fc's route)", f"{sum(first.values()):.3f}", f"{sum(med.values()):.3f}"))
    rows.append(("peer: torch.onnx.export", f"{res['onnx'][0]:.3f}", f"{onnx_med:.3f}"))
    print_table(f"(t) PyTorch ResNet-50 -> IR ({res['nodes']} nodes): seconds, first call and "
                f"median of {args.repeat} (convert: {3 * args.repeat})",
                ("phase", "first", "median"), rows)
    print(f"fc's own conversion {med['convert']:.3f}s: target <= 0.5s {verdict(med['convert'] <= 0.5)}"
          f"; fc's whole route / torch.onnx.export = {sum(med.values()) / onnx_med:.2f}x")

    rec = run_isolated(torch_reconstruct_child, args.repeat, args.seed)
    rows = []
    for tag, r in rec.items():
        m = statistics.median(r["times"][1:])
        rows.append((tag, r["nodes"], f"{r['times'][0]:.3f}", f"{m:.3f}", verdict(m <= 1.0),
                     f"{r['vs_golden']:.2e}", f"{r['vs_source']:.2e}", f"{r['golden_vs_source']:.2e}"))
    print_table(f"(t) ResNet-50 reconstructed as torch modules (fc.reconstruct.torch): build seconds, "
                f"first and median of {args.repeat}; target <= 1 s; distances (rel-L2) at batch 1",
                ("IR", "nodes", "first", "median", "<=1s", "vs golden", "vs source",
                 "golden vs source"), rows)


# -- (f) TensorFlow: fcc compile tf resnet50, and its reconstruction ------------------------


def tf_compile_child(repeat: int, seed: int) -> dict:
    """In a fresh process: Keras ResNet-50 through fc's TF route, split into the Keras build,
    fc's zoo weights, freezing and fc's own conversion (``repeat`` conversions of the frozen
    graph), and TF's own freezing (convert_variables_to_constants_v2) as the peer."""
    from fc._tf import import_tf

    tf = import_tf()
    import keras
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from fc.frontend.tf import import_frozen, load_source
    from fc.passes.pipeline import compile_graph
    from fc.zoo.tf import randomize, sample_input

    logging.disable(logging.WARNING)
    t = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(weights=None)
    build = time.perf_counter() - t
    t = time.perf_counter()
    randomize(model, seed, sample_input("resnet50", (8, 224, 224, 3), seed + 1))
    weights = time.perf_counter() - t
    t = time.perf_counter()
    frozen = load_source(model)
    freeze = time.perf_counter() - t
    converts, converts_cpu = [], []
    for _ in range(repeat):
        graph = None  # the last conversion's IR goes first: each conversion allocates afresh
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        graph = import_frozen(frozen)
        converts.append(time.perf_counter() - t)
        converts_cpu.append(time.process_time() - c)
    fused, _ = compile_graph(graph)
    t = time.perf_counter()
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, 224, 224, 3], tf.float32))
    trace = time.perf_counter() - t
    t = time.perf_counter()
    convert_variables_to_constants_v2(concrete)
    peer = time.perf_counter() - t
    return {"build": build, "weights": weights, "freeze": freeze, "convert": converts,
            "convert_cpu": converts_cpu,
            "trace": trace, "peer_freeze": peer, "nodes": len(graph),
            "transposes": graph.op_histogram().get("Transpose", 0),
            "fused_transposes": fused.op_histogram().get("Transpose", 0)}


def tf_reconstruct_child(repeat: int, seed: int) -> dict:
    """In a fresh process: Keras ResNet-50 imported and compiled; each IR frozen to a GraphDef
    ``repeat`` times (the first apart: it imports TF's function machinery) and run by plain
    TensorFlow against the golden executor and Keras itself."""
    from fc._tf import import_tf

    import_tf()
    import fc.api
    from fc.frontend.tf import import_tf as import_keras
    from fc.passes.pipeline import compile_graph
    from fc.reconstruct.tf import freeze
    from fc.testing import rel_l2
    from fc.zoo.tf import get_model, sample_input

    logging.disable(logging.WARNING)
    model = get_model("resnet50", seed=seed, logits=True)
    x = sample_input("resnet50", (1, 224, 224, 3), seed + 2)
    source = np.asarray(model(x, training=False))
    graph = import_keras(model)
    fused, _ = compile_graph(graph)
    out = {}
    for tag, g in (("reconstruct", graph), ("fused", fused)):
        times = []
        for _ in range(repeat):
            gc.collect()
            t = time.perf_counter()
            fz = freeze(g)
            times.append(time.perf_counter() - t)
        got = next(iter(fz.run([x]).values()))
        golden = next(iter(fc.api.run(g, x).values()))
        out[tag] = {"times": times, "nodes": len(g), "vs_golden": rel_l2(got, golden),
                    "vs_source": rel_l2(got, source), "golden_vs_source": rel_l2(golden, source),
                    "pb_transposes": sum(n.op == "Transpose" for n in fz.graph_def.node),
                    "pb_bytes": len(fz.serialize())}
    return out


#: the Keras applications whose fused IR must have no Transpose (issue 9), and a small size
TF_APPS = (("resnet50", 96), ("mobilenet_v2", 96), ("efficientnet_b0", 96), ("densenet121", 96),
           ("inception_v3", 96), ("vgg16", 96))


def tf_transposes_child(name: str, size: int, seed: int) -> dict:
    from fc._tf import import_tf

    import_tf()
    from fc.frontend.tf import import_tf as import_keras
    from fc.passes.pipeline import compile_graph
    from fc.zoo.tf import get_model

    logging.disable(logging.WARNING)
    graph = import_keras(get_model(name, seed=seed, input_shape=(size, size, 3)))
    fused, _ = compile_graph(graph)
    return {"ir": graph.op_histogram().get("Transpose", 0),
            "fused": fused.op_histogram().get("Transpose", 0), "nodes": len(fused),
            "ops": ", ".join(f"{k} {v}" for k, v in fused.op_histogram().items())}


def part_tf(args: argparse.Namespace, tmp: Path) -> None:
    """(f) ``fcc compile tf resnet50`` split into its phases, TF's own freezing as the peer."""
    res = run_isolated(tf_compile_child, args.repeat, args.seed)
    first, first_cpu = res["convert"][0], res["convert_cpu"][0]
    later = res["convert"][1:] or res["convert"]
    later_cpu = res["convert_cpu"][1:] or res["convert_cpu"]
    rows = [("Keras build (keras.applications.ResNet50)", f"{res['build']:.3f}", ""),
            ("fc zoo weights (seeded, BN calibrated)", f"{res['weights']:.3f}", ""),
            ("freezing (trace + captured variables)", f"{res['freeze']:.3f}", ""),
            ("fc's own conversion, first (fresh memory)", f"{first:.3f}", f"{first_cpu:.3f}"),
            (f"fc's own conversion, median of the next {len(later)}",
             f"{statistics.median(later):.3f}", f"{statistics.median(later_cpu):.3f}"),
            ("peer: trace alone", f"{res['trace']:.3f}", ""),
            ("peer: convert_variables_to_constants_v2", f"{res['peer_freeze']:.3f}", "")]
    print_table(f"(f) Keras ResNet-50 -> IR ({res['nodes']} nodes, {res['transposes']} Transposes; "
                f"fused IR: {res['fused_transposes']}): seconds (wall; CPU = process time, all "
                f"threads)", ("phase", "wall", "CPU"), rows)
    print(f"fc's own conversion {first:.3f}s wall, {first_cpu:.3f}s CPU (the first: the one "
          f"`fcc compile tf` pays): target <= 0.5s {verdict(first <= 0.5)}; fc's freezing / "
          f"TF's (trace + convert_variables_to_constants_v2) = "
          f"{res['freeze'] / (res['trace'] + res['peer_freeze']):.2f}x")

    rec = run_isolated(tf_reconstruct_child, args.repeat, args.seed)
    rows = []
    for tag, r in rec.items():
        m = statistics.median(r["times"][1:] or r["times"])
        rows.append((tag, r["nodes"], f"{r['times'][0]:.3f}", f"{m:.3f}", verdict(m <= 3.0),
                     r["pb_transposes"], f"{r['pb_bytes'] / 2**20:.1f}",
                     f"{r['vs_golden']:.2e}", f"{r['vs_source']:.2e}",
                     f"{r['golden_vs_source']:.2e}"))
    print_table(f"(f) ResNet-50 reconstructed as a frozen GraphDef (fc.reconstruct.tf.freeze): "
                f"seconds, first and median of {args.repeat}; target <= 3 s; Transposes in the "
                f".pb; distances (rel-L2 of the logits, batch 1)",
                ("IR", "nodes", "first", "median", "<=3s", "Transposes", "MiB", "vs golden",
                 "vs Keras", "golden vs Keras"), rows)

    rows = []
    for name, size in TF_APPS:
        r = run_isolated(tf_transposes_child, name, size, args.seed)
        rows.append((name, size, r["ir"], r["fused"], verdict(r["fused"] == 0), r["nodes"],
                     r["ops"]))
    print_table("(f) Transposes left in the Keras applications' IRs (input size S)",
                ("model", "S", "IR for reconstruct", "IR fused", "none", "fused nodes",
                 "fused ops"), rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=("a", "b", "c", "t", "f"),
                   default=["a", "b", "c", "t", "f"],
                   help="which parts to run (default all)")
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000],
                   help="synthetic graph sizes in nodes for (b)")
    p.add_argument("--repeat", type=int, default=3, help="timed compile_model calls in (a)")
    p.add_argument("--scale-repeat", type=int, default=3, help="runs per graph size in (b)")
    p.add_argument("--cli-repeat", type=int, default=3, help="fcc runs per model in (c)")
    p.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                   help="let fcc in (c) draw the PNGs, as by default (--no-png: skip)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    print(f"bench_compile: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="fc_bench_") as tmp:
        for part in ("a", "b", "c", "t", "f"):
            if part in args.parts:
                {"a": part_a, "b": part_b, "c": part_c, "t": part_torch,
                 "f": part_tf}[part](args, Path(tmp))


if __name__ == "__main__":
    main()
