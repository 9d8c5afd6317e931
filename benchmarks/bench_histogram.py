#!/usr/bin/env python3
"""The calibration histogram's counting cost per value: the C kernel (quant/_histogram.c, each
instruction set this CPU runs) against numpy's loop, on ReLU-like data (about half exact
zeros) and signed data, one thread (``parallel=False``: the calibrator's worker) and the
pool (``parallel=True``: every core), for 32K-value arrays (one chunk: the per-call costs)
and whole tensors of ResNet-50's sizes at batch 8 (the arrays are not in cache: each round
counts a fresh tensor of a set larger than L3, as the executor's outputs arrive).

A figure is ``TensorStats.update`` of a histogram whose range already holds the data (the
steady state of a calibration: min and max per chunk, no growth), in ns per value, the least
of ``--repeat`` rounds, kernels alternated within each round: one thread in CPU time (the
process's: robust to other processes on a shared machine) and wall time, the pool in wall
time (what splitting buys).

    python benchmarks/bench_histogram.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import machine_line, print_table

from fc.quant import calibration
from fc.quant.calibration import TensorStats, histogram_kernel

# (label, values): one chunk, and ResNet-50 activations at batch 8 (layer1 256x56x56,
# layer3 1024x14x14, layer4 2048x7x7)
SIZES = [("32K chunk", 1 << 15), ("8x256x56x56", 8 * 256 * 56 * 56),
         ("8x1024x14x14", 8 * 1024 * 14 * 14), ("8x2048x7x7", 8 * 2048 * 7 * 7)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="rounds (the least counts)")
    args = p.parse_args()
    print(machine_line())
    print(f"histogram kernel: {histogram_kernel()}")
    C = calibration._histogram  # the module (calibration uses it with a vector ISA only)
    kernels = ([f"C {isa}" for isa in C.ISAS[::-1]] if C is not None else []) + ["numpy"]
    in_use = calibration._C
    rng = np.random.default_rng(0)
    rows = []
    for kind in ("relu", "signed"):
        for label, size in SIZES:
            # enough distinct arrays to pass the 48 MiB L3 between two uses of one
            copies = max(1, min(64, (160 << 20) // (4 * size))) if size > (1 << 15) else 1
            data = []
            for _ in range(copies):
                x = rng.standard_normal(size).astype(np.float32)
                data.append(np.maximum(x, 0) if kind == "relu" else x)
            best: dict[tuple[str, str], float] = {}
            for r in range(args.repeat):
                for parallel in (False, True):
                    for k in kernels if r % 2 == 0 else kernels[::-1]:
                        calibration._C = None if k == "numpy" else C
                        if C is not None and k != "numpy":
                            C.set_isa(k.split()[1])
                        st = TensorStats()
                        st.update(data[0] * np.float32(1.2))  # the range holds the data
                        n = 0
                        t, c = time.perf_counter(), time.process_time()
                        for x in data:
                            st.update(x, parallel=parallel)
                            n += x.size
                        t, c = time.perf_counter() - t, time.process_time() - c
                        figures = {"pool": t} if parallel else {"cpu": c, "wall": t}
                        for what, sec in figures.items():
                            best[k, what] = min(best.get((k, what), np.inf), sec / n * 1e9)
            calibration._C = in_use
            if C is not None:
                C.set_isa(C.ISAS[-1])
            for k in kernels:
                rows.append([kind, label, k, *(f"{best[k, w]:.3f}" for w in ("cpu", "wall", "pool"))])
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print_table(f"TensorStats.update, ns per value (least of {args.repeat} rounds)",
                ["data", "array", "kernel", "one thread (CPU)", "one thread (wall)", "pool (wall)"], rows)
    print(f"load average {load} at the end")


if __name__ == "__main__":
    main()
