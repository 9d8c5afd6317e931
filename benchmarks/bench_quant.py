#!/usr/bin/env python3
"""Quantization speed and memory on ResNet-50 (issue 10 targets), against the float executor
measured in the same run:

- calibration of N images (streaming observer; every method: max, percentile, entropy, mse)
  <= 1.3x the time of N float forward passes of the executor;
- the quantized simulation (IR_quantized_for_CModel through the golden executor) <= 1.3x the
  float run;
- the peak memory of each (peak RSS increase over the phase, VmHWM reset per phase: no
  slowdown, unlike tracemalloc, which is not used while timing).

    python benchmarks/bench_quant.py [--images 100] [--batch 8]

The images are real photos: the 16 colour photos that ship in pip packages
(``fc.quant.testing.PHOTOS``: scikit-image, scikit-learn, matplotlib), each cut into seeded
random crops (40-100 % of the short side, random position and mirror) resized to 224 x 224 and
normalized with the ImageNet mean/std, so the activations have photo statistics (the
histograms grow as batches with larger values arrive). Weights: fc's torch zoo ResNet-50
(seeded), exported to ONNX and compiled, as bench_executor does.

The histogram methods share one collection pass (what ``Calibrator`` does per batch does not
depend on the method); each method's figure is that pass plus its own threshold search over
the collected histograms. Times are wall and CPU (process, both threads); the float run is
measured before and after the calibrations and the mean of the two is the reference, which
cancels most of the drift of a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import PeakRSS, export_resnet50_onnx, fmt_mib, machine_line, print_table, verdict

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def photo_crops(count: int, size: int = 224, seed: int = 0) -> np.ndarray:
    from PIL import Image

    from fc.quant.testing import sample_photos

    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    out = np.empty((count, 3, size, size), np.float32)
    for k in range(count):
        im = photos[k % len(photos)]
        w, h = im.size
        side = int(min(w, h) * rng.uniform(0.4, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        a = np.asarray(crop, np.float32).transpose(2, 0, 1) / 255.0
        out[k] = (a - MEAN) / STD
    return out


class Phase:
    """Wall time, CPU time and peak RSS increase of one block."""

    def __enter__(self) -> Phase:
        self.mem = PeakRSS().__enter__()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.mem.__exit__(*exc)


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
    images = photo_crops(args.images)
    batches = [images[i:i + args.batch] for i in range(0, args.images, args.batch)]
    tensors = make_plan(graph).calibrated
    print(f"ResNet-50 fused IR: {len(graph)} nodes, {len(tensors)} calibrated tensors; "
          f"{args.images} photo crops (16 photos from pip packages) in batches of {args.batch}")

    float_run = Interpreter(graph)

    def run_float():
        for x in batches:
            float_run.run({name: x})

    def collect(method):
        cal = Calibrator(tensors, method=method)
        runner = Interpreter(graph, observer=cal)
        for x in batches:
            cal.observe_inputs({name: x})
            runner.run({name: x})
        return cal

    float_run.run({name: batches[0]})  # warm-up (page in the weights, thread pools)
    with Phase() as f1:
        run_float()
    phases = {}
    with Phase() as ph:
        cal = collect("max")
        table = cal.table()
    phases["max"] = (ph, ph)
    with Phase() as hist_ph:
        cal = collect("entropy")
    for method in ("percentile", "entropy", "mse"):
        cal.method = method
        with Phase() as t:
            cal.table()
        phases[method] = (hist_ph, t)
    with Phase() as f2:
        run_float()
    t_wall, t_cpu = (f1.wall + f2.wall) / 2, (f1.cpu + f2.cpu) / 2

    spec = build_spec(graph, table, get_strategy("symmetry_max"))
    sim = SimInterpreter(quantized_graph(graph, spec))
    sim.run({name: batches[0]})  # the dequantized weights are cached on the first batch

    def run_sim():
        for x in batches:
            sim.run({name: x})

    with Phase() as sp:
        run_sim()

    rows = [["float forward (mean of before/after)", f"{t_wall:.2f}", f"{t_cpu:.2f}",
             f"{args.images / t_wall:.2f}", "1.00", "1.00",
             fmt_mib(max(f1.mem.increase_mib, f2.mem.increase_mib)), ""]]
    ratios = {}
    for method, (coll, thr) in phases.items():
        wall = coll.wall + (thr.wall if thr is not coll else 0)
        cpu = coll.cpu + (thr.cpu if thr is not coll else 0)
        rw, rc = wall / t_wall, cpu / t_cpu
        ratios[method] = (rw, rc)
        extra = "" if thr is coll else f" (threshold search {thr.wall:.2f} s)"
        rows.append([f"calibration {method}{extra}", f"{wall:.2f}", f"{cpu:.2f}",
                     f"{args.images / wall:.2f}", f"{rw:.2f}", f"{rc:.2f}",
                     fmt_mib(coll.mem.increase_mib), verdict(rc <= 1.3)])
    rw, rc = sp.wall / t_wall, sp.cpu / t_cpu
    rows.append(["quantized simulation (symmetry_max)", f"{sp.wall:.2f}", f"{sp.cpu:.2f}",
                 f"{args.images / sp.wall:.2f}", f"{rw:.2f}", f"{rc:.2f}",
                 fmt_mib(sp.mem.increase_mib), verdict(rc <= 1.3)])
    print_table("ResNet-50, fc golden executor (target: ratio <= 1.3; float runs "
                f"{f1.wall:.2f} s and {f2.wall:.2f} s wall)",
                ["run", "wall s", "CPU s", "images/s", "ratio wall", "ratio CPU",
                 "peak RSS increase", "target"], rows)
    worst = max(ratios, key=lambda k: ratios[k][1])
    print(f"calibration / float (CPU): worst method {worst} {ratios[worst][1]:.2f}x "
          f"(wall {ratios[worst][0]:.2f}x); quantized simulation / float: CPU {rc:.2f}x, wall "
          f"{rw:.2f}x. The verdict is on CPU time (robust to the other processes of a shared "
          "machine); wall ratios are printed beside it.")
    print(f"peak RSS of the process: {PeakRSS.process_peak_mib(f1.mem, hist_ph.mem, sp.mem):.0f} MiB "
          f"({f1.mem.method})")


if __name__ == "__main__":
    main()
