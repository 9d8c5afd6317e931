#!/usr/bin/env python3
"""Quantization speed and memory on ResNet-50 (issue 10 targets), against the float executor
measured in the same run:

- calibration of N images (streaming observer, method max and entropy) <= 1.3x the time of N
  float forward passes of the executor;
- the quantized simulation (IR_quantized_for_CModel through the golden executor) <= 1.3x the
  float run;
- the peak memory of each (tracemalloc: numpy arrays included).

    python benchmarks/bench_quant.py [--images 100] [--batch 8]

The images are seeded random arrays (speed does not depend on content). Weights: fc's torch
zoo ResNet-50 (seeded), exported to ONNX and compiled, as bench_executor does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import export_resnet50_onnx, fmt_mib, machine_line, print_table, tracemalloc_peak, verdict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    print(machine_line())

    from fc.frontend.onnx import import_onnx
    from fc.np_ops import Interpreter
    from fc.passes.pipeline import compile_graph
    from fc.quant.calibration import Calibrator
    from fc.quant.plan import make_plan
    from fc.quant.quantize import build_spec, quantized_graph
    from fc.quant.simulate import SimInterpreter
    from fc.quant.strategies import get_strategy

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.fspath(export_resnet50_onnx(Path(tmp) / "resnet50.onnx"))
        graph, _ = compile_graph(import_onnx(onnx_path, input_shapes={"input": (1, 3, 224, 224)}))
    name = graph.inputs[0].name
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((min(args.batch, args.images - i), 3, 224, 224), np.float32)
               for i in range(0, args.images, args.batch)]
    print(f"ResNet-50 fused IR: {len(graph)} nodes; {args.images} images in batches of {args.batch}")

    def timed(fn):
        start = time.perf_counter()
        peak, out = tracemalloc_peak(fn)
        return time.perf_counter() - start, peak, out

    float_run = Interpreter(graph)

    def run_float():
        for x in batches:
            float_run.run({name: x})

    def calibrate(method):
        def go():
            cal = Calibrator(make_plan(graph).calibrated, method=method)
            runner = Interpreter(graph, observer=cal)
            for x in batches:
                cal.observe_inputs({name: x})
                runner.run({name: x})
            return cal.table()
        return go

    run_float()  # warm-up (page in the weights, thread pools)
    t_float, m_float, _ = timed(run_float)
    rows = [["float forward", f"{t_float:.2f}", f"{args.images / t_float:.1f}", "1.00", fmt_mib(m_float), ""]]
    table = None
    for method in ("max", "entropy"):
        t, m, table_m = timed(calibrate(method))
        table = table if table is not None else table_m
        rows.append([f"calibration ({method})", f"{t:.2f}", f"{args.images / t:.1f}",
                     f"{t / t_float:.2f}", fmt_mib(m), verdict(t / t_float <= 1.3)])
    spec = build_spec(graph, table, get_strategy("symmetry_max"))
    sim = SimInterpreter(quantized_graph(graph, spec))
    sim.run({name: batches[0]})  # the dequantized weights are cached on the first batch

    def run_sim():
        for x in batches:
            sim.run({name: x})

    t, m, _ = timed(run_sim)
    rows.append(["quantized simulation", f"{t:.2f}", f"{args.images / t:.1f}", f"{t / t_float:.2f}",
                 fmt_mib(m), verdict(t / t_float <= 1.3)])
    print_table("ResNet-50, fc golden executor (target: ratio <= 1.3)",
                ["run", "seconds", "images/s", "ratio to float", "peak MiB (tracemalloc)", "target"],
                rows)


if __name__ == "__main__":
    main()
