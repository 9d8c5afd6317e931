"""ResNet-50 inference: fc's golden executor vs onnxruntime vs torch eager, on this machine.

fc's torch zoo ResNet-50 (seeded random weights) is exported to ONNX once into a temporary
directory, imported with ``fc.frontend.onnx.import_onnx`` and run through:

* ``fc reconstruct``: ``fc.np_ops.run`` on the imported IR (BatchNormalization kept),
* ``fc fused``:       ``fc.np_ops.run`` on the IR from ``fc.passes.pipeline.compile_graph``,
* ``onnxruntime``:    the same .onnx file, CPUExecutionProvider, default session options,
* ``torch eager``:    the torch module itself, under ``torch.no_grad()``.

Timing: every engine in this one process, one after the other (never interleaved: an engine's
spinning thread pool slows the next one down, see ``_common.time_runs``), each after a short
pause, one warm-up run then the median of N runs.
Peak memory: each engine again in a fresh spawned process (see ``_common.PeakRSS``). The
outputs are compared (relative L2 against torch eager, the source framework). Targets
(from the issue): the executor within 2x onnxruntime and faster than torch eager; a MISS is
printed, never raised.

    python benchmarks/bench_executor.py [--batch 1 8] [--repeat N] [--no-memory]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import (
    PeakRSS,
    export_resnet50_onnx,
    fmt_mib,
    machine_line,
    numpy_blas_threads,
    print_table,
    run_isolated,
    time_runs,
    verdict,
)

from fc.testing import rel_l2

ENGINES = ("fc reconstruct", "fc fused", "onnxruntime", "torch eager")
FC_ENGINES = ENGINES[:2]
#: targets from the issue: fc time / onnxruntime time, fc time / torch eager time
MAX_VS_ORT = 2.0
MAX_VS_TORCH = 1.0

Engine = Callable[[np.ndarray], np.ndarray]


def make_input(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)


def build_engine(name: str, onnx_path: str, batch: int, seed: int) -> Engine:
    """A function input -> logits for engine ``name``; heavy imports happen here, lazily, so
    a spawned child loads only its own engine's libraries."""
    if name in FC_ENGINES:
        from fc.frontend.onnx import import_onnx
        from fc.np_ops import run
        from fc.passes.pipeline import compile_graph

        graph = import_onnx(onnx_path, input_shapes={"input": (batch, 3, 224, 224)})
        if name == "fc fused":
            graph, _ = compile_graph(graph)
        in_name, out_name = graph.inputs[0].name, graph.outputs[0].name
        return lambda x: run(graph, {in_name: x})[out_name]
    if name == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {in_name: x})[0]
    if name == "torch eager":
        import torch

        from fc.zoo.torch import resnet50

        model = resnet50(seed)

        def forward(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        return forward
    raise ValueError(f"unknown engine {name!r}; engines are {ENGINES}")


def thread_note(name: str) -> str:
    if name in FC_ENGINES:
        return f"numpy/OpenBLAS {numpy_blas_threads()}"
    if name == "onnxruntime":
        return "ORT default (intra_op=0)"
    import torch

    return f"torch {torch.get_num_threads()}"


def measure_memory(name: str, onnx_path: str, batch: int, seed: int) -> dict[str, float | str]:
    """Run in a fresh spawned process: load the engine, then the peak RSS added by its first
    two inferences (the first one grows every allocator and arena to its working size)."""
    logging.disable(logging.WARNING)
    x = make_input(batch, seed)
    engine = build_engine(name, onnx_path, batch, seed)
    with PeakRSS() as mem:
        engine(x)
        engine(x)
    return {"loaded_mib": mem.base_mib, "increase_mib": mem.increase_mib, "method": mem.method}


def bench_batch(batch: int, onnx_path: str, args: argparse.Namespace) -> dict[str, dict]:
    repeat = args.repeat or (5 if batch == 1 else 3)
    x = make_input(batch, args.seed)
    results: dict[str, dict] = {}
    for name in ENGINES:
        engine = build_engine(name, onnx_path, batch, args.seed)
        timing, out = time_runs(lambda e=engine: e(x), repeat=repeat, warmup=args.warmup,
                                settle=args.settle)
        results[name] = {"timing": timing, "out": np.asarray(out), "threads": thread_note(name),
                         "repeat": repeat}
        print(f"  batch {batch}: {name:<15} median {timing.median_ms:8.1f} ms over {repeat} runs",
              flush=True)
        del engine
    if not args.no_memory:
        for name in ENGINES:
            results[name]["mem"] = run_isolated(measure_memory, name, onnx_path, batch, args.seed)
    return results


def report(all_results: dict[int, dict[str, dict]], memory: bool) -> None:
    rows = []
    for batch, res in all_results.items():
        ref = res["torch eager"]["out"]
        for name in ENGINES:
            r = res[name]
            mem = r.get("mem")
            rows.append([
                batch, name, r["threads"], f"{r['timing'].median_ms:.1f}", r["timing"].spread(),
                r["repeat"], f"{rel_l2(r['out'], ref):.2e}",
                fmt_mib(mem["loaded_mib"]) if mem else "-",
                fmt_mib(mem["increase_mib"]) if mem else "-",
                fmt_mib(mem["loaded_mib"] + mem["increase_mib"]) if mem else "-",
            ])
    print_table("ResNet-50, float32, 224x224 (times in ms; rel-L2 of the logits vs torch eager)",
                ["batch", "engine", "threads", "median", "min-max", "runs", "rel-L2",
                 "RSS loaded MiB", "peak +MiB", "total MiB"], rows)
    if memory:
        method = next(iter(next(iter(all_results.values())).values()))["mem"]["method"]
        print(f"memory: each engine in a fresh spawned process; 'RSS loaded' = resident set after "
              f"imports and model load, 'peak +' = peak RSS added by its first two inferences "
              f"({method}), 'total' = their sum, the resident set at the inference peak. "
              f"Memory an engine freed "
              f"while loading but kept (malloc, ORT's arena) counts in 'loaded' and can be "
              f"reused by inference without adding to 'peak +'.")

    rows = []
    for batch, res in all_results.items():
        ort, tch = res["onnxruntime"]["timing"], res["torch eager"]["timing"]
        for name in FC_ENGINES:
            fc = res[name]["timing"]
            vs_ort, vs_torch = fc.median / ort.median, fc.median / tch.median
            rows.append([batch, name, f"{fc.median_ms:.1f}",
                         f"{vs_ort:.2f}", verdict(vs_ort <= MAX_VS_ORT),
                         f"{vs_torch:.2f}", verdict(vs_torch < MAX_VS_TORCH),
                         f"{min(fc.times) / min(ort.times):.2f}",
                         f"{min(fc.times) / min(tch.times):.2f}",
                         f"{rel_l2(res[name]['out'], res['onnxruntime']['out']):.2e}"])
    print_table(f"targets: fc/ORT <= {MAX_VS_ORT:g}, fc/torch < {MAX_VS_TORCH:g} on medians "
                "(reported, not enforced); the same ratios on the fastest runs for comparison",
                ["batch", "fc IR", "fc ms", "fc/ORT", "<=2x ORT", "fc/torch", "<torch",
                 "fc/ORT min", "fc/torch min", "rel-L2 vs ORT"], rows)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (on {os.cpu_count()} "
          "cores; above the core count, other processes took CPU from these runs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--repeat", type=int, default=0,
                   help="timed runs per engine (default 5 at batch 1, 3 otherwise)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds of pause before each engine, so the previous engine's threads "
                        "stop spinning (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument("--fold-bn-in-export", action="store_true",
                   help="let torch's exporter fold BN into Conv (default: keep BN in the ONNX)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    print(f"bench_executor: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="fc_bench_") as tmp:
        onnx_path = os.fspath(export_resnet50_onnx(Path(tmp) / "resnet50.onnx", seed=args.seed,
                                                   keep_bn=not args.fold_bn_in_export))
        print(f"exported torch zoo resnet50(seed={args.seed}) to ONNX "
              f"({'BN folded by torch' if args.fold_bn_in_export else 'BN kept'})", flush=True)
        all_results = {b: bench_batch(b, onnx_path, args) for b in args.batch}
    report(all_results, memory=not args.no_memory)


if __name__ == "__main__":
    main()
