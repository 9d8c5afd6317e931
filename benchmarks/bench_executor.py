"""ResNet-50 inference: fc's golden executor vs onnxruntime vs torch eager, on this machine.

fc's torch zoo ResNet-50 (seeded random weights) is exported to ONNX once into a temporary
directory, imported with ``fc.frontend.onnx.import_onnx`` and run through:

* ``fc reconstruct``: ``fc.np_ops.run`` on the imported IR (BatchNormalization kept),
* ``fc fused``:       ``fc.np_ops.run`` on the IR from ``fc.passes.pipeline.compile_graph``,
* ``onnxruntime``:    the same .onnx file, CPUExecutionProvider, default session options,
* ``torch eager``:    the torch module itself, under ``torch.no_grad()``.

and against the limit a numpy executor has, its **GEMM floor**: numpy's own sgemm timed in this
run on every GEMM shape of the fused graph's convolutions and its classifier (M = output
channels, K = C*kh*kw, N = batch*Ho*Wo), each shape the fastest of: one GEMM in either operand
order, the second operand C-contiguous or a transposed view, or one GEMM per image; the floor
is the sum of those medians. ``fc/floor`` is the
executor's time over it (the time spent outside BLAS, or in BLAS at worse shapes). Beside it,
the **network-order floor**: the same GEMMs once each in one pass, every layer with its own
weights, so that they come from memory as in a forward pass (``measure_network_floor``); the
per-shape floor repeats one GEMM and finds its weights in cache, which no forward pass does
at batch 1. The targets keep the per-shape floor as denominator.

Timing: every engine in this one process, one after the other (never interleaved: an engine's
spinning thread pool slows the next one down, see ``_common.time_runs``), each after a short
pause, one warm-up run then N timed runs; ``--rounds R`` repeats the whole sequence (floor,
then each engine) R times and takes the medians over all rounds' runs, so that load from
other processes drifting during the run hits every engine alike.
Peak memory: each engine again in a fresh spawned process (see ``_common.PeakRSS``). The
outputs are compared (relative L2 against torch eager, the source framework). Targets (issue
13): fc fused <= 1.2x its GEMM floor at batch 1 and 8; images/s at batch 8 >= 1.3x batch 1;
fc fused <= 1.5x onnxruntime at batch 1 and <= 2x at batch 8, and faster than torch eager;
a MISS is printed, never raised. The batch-8 / batch-1 gain is also measured interleaved
(``interleaved_gain``: 8 runs at batch 1, then one at batch 8, each round), since the two
batches' medians above are minutes apart and the host's speed drifts between them.

The BLAS kernel numpy runs is printed (threadpoolctl); fc never sets ``OPENBLAS_CORETYPE``.
So are the codes running fc's conv GEMMs (``C (avx512)``: ``fc.np_ops._gemm`` on packed
weights, else ``numpy``) and its conv epilogue: ``C (avx512)`` where ``fc.np_ops._epilogue`` was
built at install, else ``numpy``.
``--coretype-unset`` measures fc and its floor once more in a child process whose environment
lacks that variable (OpenBLAS then detects the CPU itself), for comparison.

    python benchmarks/bench_executor.py [--batch 1 8] [--repeat N] [--rounds R] [--no-memory]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import (
    PeakRSS,
    Timing,
    blas_info,
    export_resnet50_onnx,
    fmt_mib,
    machine_line,
    numpy_blas_threads,
    print_table,
    run_isolated,
    time_runs,
    verdict,
)

from fc.ir.complexity import complexity
from fc.testing import rel_l2

ENGINES = ("fc reconstruct", "fc fused", "onnxruntime", "torch eager")
FC_ENGINES = ENGINES[:2]
#: targets from issue 13, per batch: fc fused / onnxruntime, fc fused / torch eager, fc fused /
#: its GEMM floor; and images/s at the largest batch over images/s at batch 1
MAX_VS_ORT = {1: 1.5, 8: 2.0}
MAX_VS_TORCH = 1.0
MAX_VS_FLOOR = 1.2
MIN_BATCH_GAIN = 1.3

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


def fused_graph(onnx_path: str, batch: int):
    from fc.frontend.onnx import import_onnx
    from fc.passes.pipeline import compile_graph

    graph, _ = compile_graph(import_onnx(onnx_path, input_shapes={"input": (batch, 3, 224, 224)}))
    return graph


def gemm_shapes(graph, batch: int) -> list[tuple[int, int, int, int]]:
    """(M, K, pixels per image, count) of every Conv (group 1) and Gemm of ``graph``."""
    shapes: dict[tuple[int, int, int], int] = {}
    for node in graph:
        if node.op_type == "Conv" and node.attrs["group"] == 1:
            m, cg, kh, kw = node.inputs[1].shape
            ho, wo = node.outputs[0].shape[2:]
            key = (m, cg * kh * kw, ho * wo)
        elif node.op_type == "Gemm":
            w = node.inputs[1].shape
            key = (w[0], w[1], 1) if node.attrs["transB"] else (w[1], w[0], 1)
        else:
            continue
        shapes[key] = shapes.get(key, 0) + 1
    return [(m, k, p, c) for (m, k, p), c in sorted(shapes.items())]


def _median_time(fn: Callable[[], object], repeat: int,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def _gemm_time(m: int, k: int, n: int, repeat: int, rng: np.random.Generator,
               clock: Callable[[], float] = time.perf_counter) -> tuple[float, str]:
    """Median seconds of the fastest way numpy multiplies an (M, K) x (K, N) float32 product:
    (N, K) @ (K, M) (channels-last) or (M, K) @ (K, N) (NCHW), the second operand either
    C-contiguous or the transposed view of a C-contiguous array (``.T``, which BLAS takes as
    is; fc's Conv hands its weights over so, and OpenBLAS runs that much faster with few
    rows)."""
    w = rng.standard_normal((m, k), dtype=np.float32)
    cols = rng.standard_normal((n, k), dtype=np.float32)
    w_t, cols_t = np.ascontiguousarray(w.T), np.ascontiguousarray(cols.T)
    ways = {"(N,K)@(K,M)": lambda: cols @ w_t, "(N,K)@(M,K).T": lambda: cols @ w.T,
            "(M,K)@(K,N)": lambda: w @ cols_t, "(M,K)@(N,K).T": lambda: w @ cols.T}
    times = {way: _median_time(fn, repeat, clock) for way, fn in ways.items()}
    way = min(times, key=times.get)
    return times[way], way


def measure_floor(shapes: list[tuple[int, int, int, int]], batch: int, repeat: int,
                  clock: Callable[[], float] = time.perf_counter) -> tuple[float, list[list]]:
    """Seconds of numpy sgemm for ``shapes`` at ``batch``, each shape the fastest way (one
    GEMM in either operand order and layout, or one GEMM per image), and a table row per
    shape."""
    rng = np.random.default_rng(0)
    total, rows = 0.0, []
    for m, k, p, count in shapes:
        n = batch * p
        t, way = _gemm_time(m, k, n, repeat, rng, clock)
        if batch > 1:
            t_one, way_one = _gemm_time(m, k, p, repeat, rng, clock)
            if batch * t_one < t:
                t, way = batch * t_one, f"per image {way_one}"
        total += count * t
        rows.append([batch, m, k, n, count, f"{t * 1e3:.2f}", f"{2 * m * k * n / t / 1e9:.0f}",
                     way])
    return total, rows


def measure_network_floor(shapes: list[tuple[int, int, int, int]], batch: int, repeat: int,
                          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of the same GEMMs run back to back in one pass, each layer with weights of its
    own (``count`` arrays per shape, as the network has), so that each GEMM reads its weights
    from wherever a forward pass finds them: at batch 1 the late layers' weights (2.4 MB each
    for a 512-channel 3x3) come from memory, not from the cache the per-shape floor warms by
    repeating one GEMM. One activation matrix per shape, reused (kinder than a real pass).
    Printed beside the per-shape floor, which stays the target's denominator."""
    rng = np.random.default_rng(1)
    layers = []
    for m, k, p, count in shapes:
        cols = rng.standard_normal((batch * p, k), dtype=np.float32)
        layers += [(cols, rng.standard_normal((m, k), dtype=np.float32)) for _ in range(count)]

    def one_pass() -> None:  # the layout fc's Conv uses: weights (M, K), transposed views
        for cols, w in layers:
            cols @ w.T

    return _median_time(one_pass, repeat, clock)


def measure_kernel_floor(shapes: list[tuple[int, int, int, int]], batch: int, repeat: int
                        ) -> float | None:
    """Seconds of fc's own GEMM (``fc.np_ops._gemm``, what fc's convolutions run where it is
    built) on the same shapes: each shape's (N, K) x (K, M) product by tiles over fc's pool,
    as ``conv._conv_tiles`` hands them out, the median per shape times its count; None where
    fc runs numpy's matmul instead. Beside numpy's floor, it says how much of fc's time is
    spent outside its own GEMMs."""
    from fc.np_ops import conv

    if not conv._C_GEMM:
        return None
    rng = np.random.default_rng(2)
    total = 0.0
    for m, k, p, count in shapes:
        n = batch * p
        a = rng.standard_normal((n, k), dtype=np.float32)
        packed = conv._pack_panels(rng.standard_normal((m, k), dtype=np.float32))
        out = np.empty((n, m), dtype=np.float32)
        total += count * _median_time(
            functools.partial(conv._run_tiles, a, None, packed, out, n, m, 2 * n * k * m), repeat)
    return total


def measure_kernel_rate(repeat: int = 7) -> float | None:
    """FLOP/s of fc's own GEMM on one thread with its operands in cache (a 192 x 256 x 128
    product, ~0.4 MB in all, repeated): the fastest any of fc's convolutions can run per
    thread. None where fc runs numpy's matmul instead."""
    from fc.np_ops import conv

    if not conv._C_GEMM:
        return None
    rng = np.random.default_rng(3)
    rows, k, m, calls = 192, 256, 128, 20
    a = rng.standard_normal((rows, k), dtype=np.float32)
    packed = conv._pack_panels(rng.standard_normal((m, k), dtype=np.float32))
    out = np.empty((rows, m), dtype=np.float32)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            conv._gemm_c.gemm(a, packed, out)
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * rows * k * m / best


def load_note() -> str:
    """The 1-minute load average now, printed next to each timing: above the core count, other
    processes took CPU from that measurement."""
    try:
        return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "load unknown"


def thread_note(name: str) -> str:
    if name in FC_ENGINES:
        from fc.np_ops import _parallel, conv

        if conv._C_GEMM:
            return f"fc pool {_parallel.num_workers()}, C GEMM"
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


def bench_batch(batch: int, onnx_path: str, args: argparse.Namespace,
                engines: tuple[str, ...] = ENGINES) -> dict[str, dict]:
    repeat = args.repeat or (5 if batch == 1 else 3)
    x = make_input(batch, args.seed)
    built = {name: build_engine(name, onnx_path, batch, args.seed) for name in engines}
    graph = fused_graph(onnx_path, batch)
    shapes, macs = gemm_shapes(graph, batch), complexity(graph).dense_flops
    results: dict[str, dict] = {name: {"times": [], "threads": thread_note(name)}
                                for name in engines}
    floors, floor_rows, net_floors, kernel_floors, kernel_rates = [], [], [], [], []
    for rnd in range(args.rounds):
        time.sleep(args.settle)
        rate = measure_kernel_rate()
        if rate is not None:
            kernel_rates.append(rate)
        floor, floor_rows = measure_floor(shapes, batch, repeat)
        floors.append(floor)
        print(f"  batch {batch} round {rnd + 1}: GEMM floor {floor * 1e3:8.1f} ms ({load_note()})",
              flush=True)
        net_floors.append(measure_network_floor(shapes, batch, repeat))
        print(f"  batch {batch} round {rnd + 1}: GEMM floor, network order "
              f"{net_floors[-1] * 1e3:8.1f} ms ({load_note()})", flush=True)
        kernel_floor = measure_kernel_floor(shapes, batch, repeat)
        if kernel_floor is not None:
            kernel_floors.append(kernel_floor)
            print(f"  batch {batch} round {rnd + 1}: fc's GEMM kernel on the same shapes "
                  f"{kernel_floor * 1e3:8.1f} ms ({load_note()})", flush=True)
        for name in engines:
            timing, out = time_runs(lambda e=built[name]: e(x), repeat=repeat,
                                    warmup=args.warmup, settle=args.settle)
            results[name]["times"] += timing.times
            results[name]["out"] = np.asarray(out)
            print(f"  batch {batch} round {rnd + 1}: {name:<15} median {timing.median_ms:8.1f} ms "
                  f"over {repeat} runs ({load_note()})", flush=True)
    for name in engines:
        results[name]["timing"] = Timing(results[name]["times"])
        results[name]["repeat"] = len(results[name]["times"])
    results["floor"] = {"median": statistics.median(floors), "rounds": floors, "rows": floor_rows,
                        "network": statistics.median(net_floors),
                        "kernel": statistics.median(kernel_floors) if kernel_floors else None,
                        "kernel_rate": max(kernel_rates, default=None),
                        "macs": macs}
    del built
    if not args.no_memory:
        for name in engines:
            results[name]["mem"] = run_isolated(measure_memory, name, onnx_path, batch, args.seed)
    return results


def interleaved_gain(onnx_path: str, batch: int, rounds: int, seed: int) -> tuple[float, float]:
    """Median seconds of fc fused at batch 1 and at ``batch``, measured interleaved: each round
    ``batch`` runs at batch 1, then one at ``batch``, so that the host's speed drifting
    between the two halves of the benchmark (minutes apart) does not move their ratio. The
    same engine twice: no other pool spins between them."""
    one, big = build_engine("fc fused", onnx_path, 1, seed), build_engine("fc fused", onnx_path,
                                                                          batch, seed)
    x1, xb = make_input(1, seed), make_input(batch, seed)
    t1, tb = [], []
    for rnd in range(rounds):
        t1 += time_runs(lambda: one(x1), repeat=batch, warmup=int(rnd == 0))[0].times
        tb += time_runs(lambda: big(xb), repeat=1, warmup=int(rnd == 0))[0].times
    return statistics.median(t1), statistics.median(tb)


def report(all_results: dict[int, dict[str, dict]], memory: bool, engines: tuple[str, ...],
           verbose: bool, interleaved: dict[int, tuple[float, float]] | None = None) -> None:
    rows = []
    for batch, res in all_results.items():
        ref = res["torch eager"]["out"] if "torch eager" in res else res["fc fused"]["out"]
        for name in engines:
            r = res[name]
            mem = r.get("mem")
            rows.append([
                batch, name, r["threads"], f"{r['timing'].median_ms:.1f}", r["timing"].spread(),
                r["repeat"], f"{batch / r['timing'].median:.1f}", f"{rel_l2(r['out'], ref):.2e}",
                fmt_mib(mem["loaded_mib"]) if mem else "-",
                fmt_mib(mem["increase_mib"]) if mem else "-",
                fmt_mib(mem["loaded_mib"] + mem["increase_mib"]) if mem else "-",
            ])
        fl = res["floor"]
        rows.append([batch, "GEMM floor", "numpy/OpenBLAS " + numpy_blas_threads(),
                     f"{fl['median'] * 1e3:.1f}",
                     "-".join(f"{min(fl['rounds']) * 1e3:.0f} {max(fl['rounds']) * 1e3:.0f}".split()),
                     len(fl["rounds"]), "-", "-", "-", "-", "-"])
        rows.append([batch, "GEMM floor, network order", "numpy/OpenBLAS " + numpy_blas_threads(),
                     f"{fl['network'] * 1e3:.1f}", "-", len(fl["rounds"]), "-", "-", "-", "-",
                     "-"])
        if fl["kernel"] is not None:
            rows.append([batch, "fc's GEMM kernel, same shapes", thread_note("fc fused"),
                         f"{fl['kernel'] * 1e3:.1f}", "-", len(fl["rounds"]), "-", "-", "-",
                         "-", "-"])
    print_table("ResNet-50, float32, 224x224 (times in ms; rel-L2 of the logits vs torch eager)",
                ["batch", "engine", "threads", "median", "min-max", "runs", "img/s", "rel-L2",
                 "RSS loaded MiB", "peak +MiB", "total MiB"], rows)
    if memory:
        method = next(iter(next(iter(all_results.values())).values()))["mem"]["method"]
        print(f"memory: each engine in a fresh spawned process; 'RSS loaded' = resident set after "
              f"imports and model load, 'peak +' = peak RSS added by its first two inferences "
              f"({method}), 'total' = their sum, the resident set at the inference peak. "
              f"Memory an engine freed "
              f"while loading but kept (malloc, ORT's arena) counts in 'loaded' and can be "
              f"reused by inference without adding to 'peak +'.")
    if verbose:
        print_table("GEMM floor per shape (last round): the fastest of one GEMM in either order "
                    "and layout or one per image",
                    ["batch", "M", "K", "N", "count", "ms each", "GFLOP/s", "fastest"],
                    [r for res in all_results.values() for r in res["floor"]["rows"]])

    rows = []
    for batch, res in all_results.items():
        floor = res["floor"]["median"]
        for name in FC_ENGINES:
            if name not in res:
                continue
            fc = res[name]["timing"]
            kernel = res["floor"]["kernel"]
            row = [batch, name, f"{fc.median_ms:.1f}", f"{fc.median / floor:.2f}",
                   verdict(fc.median / floor <= MAX_VS_FLOOR) if name == "fc fused" else "",
                   f"{fc.median / res['floor']['network']:.2f}",
                   f"{fc.median / kernel:.2f}" if kernel else "-"]
            if "onnxruntime" in res:
                ort, tch = res["onnxruntime"]["timing"], res["torch eager"]["timing"]
                vs_ort, vs_torch = fc.median / ort.median, fc.median / tch.median
                target = MAX_VS_ORT.get(batch, max(MAX_VS_ORT.values()))
                row += [f"{vs_ort:.2f}", verdict(vs_ort <= target) if name == "fc fused" else "",
                        f"{vs_torch:.2f}", verdict(vs_torch < MAX_VS_TORCH)
                        if name == "fc fused" else "",
                        f"{floor / ort.median:.2f}",
                        f"{rel_l2(res[name]['out'], res['onnxruntime']['out']):.2e}"]
            rows.append(row)
    headers = ["batch", "fc IR", "fc ms", "fc/floor", "<=1.2x floor", "fc/network floor",
               "fc/own GEMM"]
    if any("onnxruntime" in res for res in all_results.values()):
        headers += ["fc/ORT", "<=1.5x|2x ORT", "fc/torch", "<torch", "floor/ORT",
                    "rel-L2 vs ORT"]
    print_table(f"targets on medians (reported, not enforced): fc fused <= {MAX_VS_FLOOR:g}x its GEMM "
                f"floor, <= {MAX_VS_ORT[1]:g}x ORT at batch 1 and <= {MAX_VS_ORT[8]:g}x at batch 8, "
                "< torch eager; floor/ORT > the ORT target means the target is out of reach of "
                "numpy's BLAS here", headers, rows)
    batches = sorted(all_results)
    if 1 in all_results and len(batches) > 1:
        t1 = all_results[1]["fc fused"]["timing"].median
        for b in batches[1:]:
            gain = (b / all_results[b]["fc fused"]["timing"].median) / (1 / t1)
            floor_gain = (b / all_results[b]["floor"]["median"]) / (1 / all_results[1]["floor"]["median"])
            print(f"fc fused images/s at batch {b} / batch 1: {gain:.2f} (target >= "
                  f"{MIN_BATCH_GAIN:g}: {verdict(gain >= MIN_BATCH_GAIN)}); the GEMM floor's own "
                  f"gain: {floor_gain:.2f}")
            if interleaved and b in interleaved:
                i1, ib = interleaved[b]
                print(f"  the same, batch 1 and batch {b} interleaved ({b} runs at batch 1, then "
                      f"one at batch {b}, each round): {i1 * 1e3:.1f} / {ib * 1e3:.1f} ms, gain "
                      f"{b * i1 / ib:.2f} ({verdict(b * i1 / ib >= MIN_BATCH_GAIN)}; the two "
                      "halves above are minutes apart, so host drift moves their ratio)")
            # batch 1's time from the interleaved measurement where there is one (see above)
            note = gain_needs_note(all_results, b, interleaved[b][0]
                                   if interleaved and b in interleaved else t1)
            if note:
                print("  " + note)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (on {os.cpu_count()} "
          "cores; above the core count, other processes took CPU from these runs)")


def gain_needs_note(all_results: dict[int, dict[str, dict]], batch: int, t1: float) -> str:
    """What the batch gain target asks of this host: batch ``batch`` in at most
    ``batch * t1 / MIN_BATCH_GAIN`` seconds (``t1``: fc fused at batch 1), as the share of fc's
    kernel's in-cache rate on every thread at which all of that batch's FLOPs must then run,
    nothing else taking any time (no im2col, no memory traffic, no other op); beside it the
    share each engine reached at that batch in this run, and the peers' own gains."""
    res = all_results[batch]
    rates = [r["floor"]["kernel_rate"] for r in all_results.values() if r["floor"]["kernel_rate"]]
    peers = [name for name in ("onnxruntime", "torch eager") if name in res]
    gains = ", ".join(f"{name} {batch * all_results[1][name]['timing'].median / t:.2f}"
                      for name in peers for t in [res[name]["timing"].median])
    gains = f"the peers' own gains: {gains}" if gains else ""
    if not rates:
        return gains
    from fc.np_ops import _parallel

    threads, flops = _parallel.num_workers(), 2 * res["floor"]["macs"]
    at_rate = flops / (threads * max(rates))  # seconds with every FLOP at the in-cache rate
    budget = batch * t1 / MIN_BATCH_GAIN
    reached = ", ".join(f"{name} {at_rate / res[name]['timing'].median:.2f}"
                        for name in ("fc fused", *peers))
    return (f"the target asks batch {batch} in <= {budget * 1e3:.0f} ms: its {flops / 1e9:.1f} "
            f"GFLOP at {at_rate / budget:.2f} of fc's kernel's in-cache rate ({max(rates) / 1e9:.0f} "
            f"GFLOP/s per thread, {threads} threads) with nothing else taking time; reached at "
            f"batch {batch}: {reached}" + (f"; {gains}" if gains else ""))


def one_core_cpu_times(onnx_path: str, batches: list[int], repeat: int, seed: int
                       ) -> dict[int, tuple[float, float]]:
    """In a spawned process pinned to one CPU, with numpy's BLAS limited to one thread
    (threadpoolctl, in this benchmark process only) and so fc's pool too: median CPU seconds
    of fc fused and of its GEMM floor per batch. The CPU time of a single-threaded process
    hardly depends on other processes' load, unlike wall time."""
    from threadpoolctl import threadpool_limits

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    threadpool_limits(1, user_api="blas")
    out = {}
    for batch in batches:
        load_before = os.getloadavg()[0]
        x = make_input(batch, seed)
        engine = build_engine("fc fused", onnx_path, batch, seed)
        shapes = gemm_shapes(fused_graph(onnx_path, batch), batch)
        engine(x)
        fc_times = []
        for _ in range(repeat):
            start = time.process_time()
            engine(x)
            fc_times.append(time.process_time() - start)
        floor, _ = measure_floor(shapes, batch, repeat, clock=time.process_time)
        out[batch] = (statistics.median(fc_times), floor, max(load_before, os.getloadavg()[0]))
    return out


def report_one_core(times: dict[int, tuple[float, float, float]]) -> None:
    print_table("one core, CPU time (a spawned process pinned to one CPU; robust to other "
                "processes' load, though a load far above the core count still inflates CPU "
                "time through shared caches): fc fused over its GEMM floor",
                ["batch", "fc fused CPU ms", "floor CPU ms", "fc/floor", "img/s per core",
                 "load (1 min, max)"],
                [[b, f"{t * 1e3:.1f}", f"{f * 1e3:.1f}", f"{t / f:.2f}", f"{b / t:.1f}",
                  f"{ld:.1f}"] for b, (t, f, ld) in times.items()])


def coretype_unset_child(args: argparse.Namespace) -> None:
    """This script once more, fc fused and its floor only, without OPENBLAS_CORETYPE in the
    child's environment (the variable is removed for that command only)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    cmd = [sys.executable, os.path.abspath(__file__), "--fc-only", "--no-memory",
           "--batch", *map(str, args.batch), "--rounds", str(args.rounds),
           "--settle", str(args.settle), "--seed", str(args.seed)]
    if args.repeat:
        cmd += ["--repeat", str(args.repeat)]
    print("\n--- the same fc measurement with OPENBLAS_CORETYPE unset (child process) ---",
          flush=True)
    subprocess.run(cmd, env=env, check=False)


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
    p.add_argument("--no-interleaved", action="store_true",
                   help="skip the interleaved batch-1 / batch-8 measurement of fc fused's gain")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the floor + engines sequence this many times (default 1)")
    p.add_argument("--fc-only", action="store_true",
                   help="time fc fused and its GEMM floor only (no peers)")
    p.add_argument("--coretype-unset", action="store_true",
                   help="then measure fc fused and its floor again in a child process without "
                        "OPENBLAS_CORETYPE in its environment")
    p.add_argument("--one-core", action="store_true",
                   help="also: CPU time of fc fused and its floor in a process pinned to one "
                        "CPU (load-robust)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the floor per GEMM shape")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    engines = ("fc fused",) if args.fc_only else ENGINES

    print(f"bench_executor: {machine_line()}")
    print(blas_info())
    from fc.np_ops.conv import epilogue_kernel, gemm_kernel

    print(f"fc's conv epilogue (bias, residual, relu): {epilogue_kernel()}")
    print(f"fc's convolution GEMMs: {gemm_kernel()}")
    with tempfile.TemporaryDirectory(prefix="fc_bench_") as tmp:
        onnx_path = os.fspath(export_resnet50_onnx(Path(tmp) / "resnet50.onnx", seed=args.seed,
                                                   keep_bn=not args.fold_bn_in_export))
        print(f"exported torch zoo resnet50(seed={args.seed}) to ONNX "
              f"({'BN folded by torch' if args.fold_bn_in_export else 'BN kept'})", flush=True)
        all_results = {b: bench_batch(b, onnx_path, args, engines) for b in args.batch}
        interleaved = {}
        if 1 in args.batch and not args.no_interleaved:
            for b in sorted(set(args.batch) - {1}):
                interleaved[b] = interleaved_gain(onnx_path, b, 4 * args.rounds, args.seed)
        one_core = (run_isolated(one_core_cpu_times, onnx_path, args.batch, args.repeat or 3,
                                 args.seed) if args.one_core else None)
    report(all_results, memory=not args.no_memory, engines=engines, verbose=args.verbose,
           interleaved=interleaved)
    if one_core:
        report_one_core(one_core)
    if args.coretype_unset and "OPENBLAS_CORETYPE" in os.environ:
        coretype_unset_child(args)


if __name__ == "__main__":
    main()
