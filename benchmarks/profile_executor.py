"""Per-node profile of fc's golden executor on the fused ResNet-50: where the time outside the
GEMMs goes.

The graph is bench_executor's (fc's torch zoo ResNet-50, seeded weights, exported to ONNX,
imported and compiled). Runs go back to back, as the benchmark times them; for every node the
table gives the minimum over the runs of its wall time (the kernel call, the fused forms
included: the stem's Conv + MaxPool, a Conv with its residual Add), and, from the same run,
the seconds its GEMM calls took (fc's kernel, ``fc.np_ops._gemm.tiles``, whose calls include
the fused epilogue and gather the im2col by blocks, or numpy's matmul), summed over the threads
that ran them. Two estimates of the time outside the GEMMs: the wall
time minus that sum divided by the pool's threads (exact when the GEMMs kept each one busy,
too low when the other thread got no core), and the wall time minus the calling thread's own
GEMM seconds (the caller works through tiles like the pool's threads; this includes waiting
for the last tile, so too high when the tiles are few; a GEMM on BLAS's own threads counts
whole, on the caller). Between them: padding, im2col, epilogues, pooling, Python. The
nodes' figures are summed per kind, and the interpreter's own time between the kernels
comes last. The instrumentation (a wrapper per kernel and per GEMM call, a few
microseconds each) is inside the figures.

    python benchmarks/profile_executor.py [--batch 1 8] [--runs N] [-v]

It wraps fc.np_ops internals (``Interpreter.kernel_for``, ``_run_conv_residual``,
``nn.conv_max_pool``, ``conv._gemm_c``, the ``np`` of conv and nn) for its own process only;
a change there that it no longer matches raises at start, naming what moved.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import blas_info, export_resnet50_onnx, machine_line, print_table


class _Recorder:
    """GEMM seconds (all threads, and the calling thread's) and node wall times, for the run
    in progress."""

    def __init__(self) -> None:
        self.gemm = 0.0
        self.own = 0.0  # the calling (main) thread's GEMM seconds
        self.main = threading.get_ident()
        self.lock = threading.Lock()
        # name, kind, wall, GEMM seconds of all threads, of the calling thread
        self.nodes: list[tuple[str, str, float, float, float]] = []

    def timed_gemm(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def gemm(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                with self.lock:
                    self.gemm += dt
                    if threading.get_ident() == self.main:
                        self.own += dt
        return gemm

    def timed_node(self, name: str, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def node(*a: Any, **k: Any) -> Any:
            g0, o0, t0 = self.gemm, self.own, time.perf_counter()
            out = fn(*a, **k)
            self.nodes.append((name, kind, time.perf_counter() - t0, self.gemm - g0,
                               self.own - o0))
            return out
        return node


def _kind(node) -> str:
    if node.op_type != "Conv":
        return "other ops"
    kh, kw = node.inputs[1].shape[2:]
    return f"{kh}x{kw} conv"


def instrument(rec: _Recorder) -> None:
    """Wrap the executor's kernels and GEMM calls (this process only)."""
    import fc.np_ops.conv as conv_mod
    import fc.np_ops.nn as nn_mod
    from fc.np_ops import interpreter as it

    for mod, names in ((it.Interpreter, ("kernel_for", "_run_conv_residual")),
                       (nn_mod, ("conv_max_pool",)), (conv_mod, ("_gemm_c", "np")),
                       (nn_mod, ("np",))):
        for name in names:
            if not hasattr(mod, name):
                raise SystemExit(f"profile_executor: {getattr(mod, '__name__', mod)}.{name} is "
                                 "gone; update the instrumentation")
    kernel_for = it.Interpreter.kernel_for

    def timed_kernel_for(self, node):
        return rec.timed_node(node.name, _kind(node), kernel_for(self, node))

    it.Interpreter.kernel_for = timed_kernel_for
    res = it.Interpreter._run_conv_residual

    def timed_res(node, *a, **k):
        return rec.timed_node(node.name, "1x1 conv + residual", res)(node, *a, **k)

    it.Interpreter._run_conv_residual = staticmethod(timed_res)
    nn_mod.conv_max_pool = rec.timed_node("stem", "stem (Conv + MaxPool)", nn_mod.conv_max_pool)
    if conv_mod._gemm_c is not None:
        conv_mod._gemm_c = types.SimpleNamespace(**{k: getattr(conv_mod._gemm_c, k)
                                                    for k in dir(conv_mod._gemm_c)
                                                    if not k.startswith("__")})
        conv_mod._gemm_c.gemm = rec.timed_gemm(conv_mod._gemm_c.gemm)
        # a whole convolution per pool thread, its epilogue fused: counted as GEMM seconds
        conv_mod._gemm_c.tiles = rec.timed_gemm(conv_mod._gemm_c.tiles)
    shim = types.ModuleType("numpy_timed_matmul")
    shim.__getattr__ = lambda k: getattr(np, k)
    shim.matmul = rec.timed_gemm(np.matmul)
    conv_mod.np = nn_mod.np = shim


def profile(onnx_path: str, batch: int, runs: int, rec: _Recorder) -> dict[str, Any]:
    from bench_executor import fused_graph, make_input

    from fc.np_ops import run

    graph = fused_graph(onnx_path, batch)
    feed = {graph.inputs[0].name: make_input(batch, 0)}
    for _ in range(2):
        run(graph, feed)
    per: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    kinds: dict[tuple[int, str], str] = {}
    walls, loops = [], []
    for _ in range(runs):
        rec.nodes.clear()
        gc.collect()
        t0 = time.perf_counter()
        run(graph, feed)
        walls.append(time.perf_counter() - t0)
        loops.append(walls[-1] - sum(n[2] for n in rec.nodes))
        for i, (name, kind, wall, gemm, own) in enumerate(rec.nodes):
            per.setdefault((i, name), []).append((wall, gemm, own))
            kinds[(i, name)] = kind
    return {"per": per, "kinds": kinds, "walls": walls, "loops": loops}


def report(batch: int, res: dict[str, Any], verbose: bool) -> None:
    from fc.np_ops import _parallel

    workers = _parallel.num_workers()
    rows: list[list] = []
    groups: dict[str, list] = {}
    for (i, name), samples in res["per"].items():
        wall, gemm, own = min(samples)  # the run with the node's least wall time
        kind = res["kinds"][(i, name)]
        g = groups.setdefault(kind, [0, 0.0, 0.0, 0.0, 0.0])
        g[0] += 1
        g[1] += wall
        g[2] += gemm
        g[3] += max(0.0, wall - gemm / workers)
        g[4] += wall - own
        rows.append([i, name[-40:], kind, f"{wall * 1e3:.3f}", f"{gemm * 1e3:.3f}",
                     f"{own * 1e3:.3f}", f"{max(0.0, wall - gemm / workers) * 1e3:.3f}",
                     f"{(wall - own) * 1e3:.3f}"])
    if verbose:
        print_table(f"batch {batch}: per node, the run with its least wall time of "
                    f"{len(res['walls'])} (ms)",
                    ["#", "node", "kind", "wall", "GEMM, all threads", "GEMM, caller",
                     f"wall - GEMM/{workers}", "wall - caller's GEMM"], rows)
    table = [[kind, n, *(f"{v * 1e3:.1f}" for v in vals)]
             for kind, (n, *vals) in groups.items()]
    table.append(["all nodes", sum(g[0] for g in groups.values()),
                  *(f"{sum(g[k] for g in groups.values()) * 1e3:.1f}" for k in (1, 2, 3, 4))])
    loop = f"{min(res['loops']) * 1e3:.2f}"
    table.append(["interpreter between nodes (min)", "-", loop, "-", loop, loop])
    print_table(f"batch {batch}: node minima summed by kind (ms); whole run min "
                f"{min(res['walls']) * 1e3:.1f}, median {statistics.median(res['walls']) * 1e3:.1f}"
                f" over {len(res['walls'])} runs; load {os.getloadavg()[0]:.1f}",
                ["kind", "nodes", "wall", "GEMM, all threads", f"wall - GEMM/{workers}",
                 "wall - caller's GEMM"], table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--runs", type=int, default=0, help="timed runs (default 15 at b1, 5 else)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every node")
    args = p.parse_args()
    import fc.np_ops.conv as conv_mod

    print(f"profile_executor: {machine_line()}")
    print(blas_info())
    print(f"fc's conv GEMM: {conv_mod.gemm_kernel()}, epilogue: {conv_mod.epilogue_kernel()}")
    rec = _Recorder()
    instrument(rec)
    with tempfile.TemporaryDirectory(prefix="fc_profile_") as tmp:
        onnx_path = os.fspath(export_resnet50_onnx(Path(tmp) / "resnet50.onnx", seed=0))
        for batch in args.batch:
            runs = args.runs or (15 if batch == 1 else 5)
            report(batch, profile(onnx_path, batch, runs, rec), args.verbose)


if __name__ == "__main__":
    main()
