#!/usr/bin/env python3
"""Speed of ``fcc quant accuracy`` (issue 12) on ResNet-50, against peers measured in the same
run:

- images/s of every configuration of the table (float/null, each strategy with per-layer and
  per-channel weights; preprocessing of the files included, as the command does it);
- onnxruntime's float images/s on the same preprocessed images and batch size (the ONNX model
  fc compiled), with and without the same preprocessing;
- the speed-up of a Dask ``LocalCluster`` (2 worker processes, 1 thread each) over one process
  on the same sweep (wall time of the whole sweep, the table identical).

    python benchmarks/bench_accuracy.py [--images 16] [--batch 8] [--strategies a,b]

Weights are fc's torch zoo ResNet-50 (seeded random), so top-1 figures mean nothing here; the
images are real photos (``fc.quant.testing.sample_photos``) cut into seeded 224 x 224 crops,
written as PNG files with a labelled list, as ``fcc quant accuracy`` reads them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import export_resnet50_onnx, machine_line, print_table


def _write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    from PIL import Image

    from fc.quant.testing import sample_photos

    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    folder.mkdir(parents=True)
    lines = []
    for k in range(count):
        im = photos[k % len(photos)]
        w, h = im.size
        side = int(min(w, h) * rng.uniform(0.5, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((256, 256), Image.BILINEAR)
        crop.save(folder / f"{k:04d}.png")
        lines.append(f"{k:04d}.png {k % 1000}\n")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--strategies", help="comma-separated (default: all)")
    p.add_argument("--no-dask", action="store_true")
    args = p.parse_args()
    print(machine_line())

    import onnxruntime as ort

    from fc.frontend.onnx import import_onnx
    from fc.ir import save
    from fc.passes.pipeline import compile_graph
    from fc.quant.accuracy import dataset_for
    from fc.quant.config import load_config
    from fc.quant.images import batches
    from fc.quant.pipeline import preprocess_for
    from fc.quant.sweep import configurations, sweep

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = export_resnet50_onnx(tmp / "resnet50.onnx")
        graph, _ = compile_graph(import_onnx(os.fspath(onnx_path),
                                             input_shapes={"input": (1, 3, 224, 224)}))
        save(graph, tmp / "IR_fused_for_CModel")
        lines = _write_images(tmp / "val", args.images)
        (tmp / "val.list").write_text("".join(lines))
        _write_images(tmp / "cal", 8, seed=1)
        cfg_path = tmp / "r50.yml"
        cfg_path.write_text(f"""MODEL:
    graph: 'IR_fused_for_CModel_graph.json'
QUAN:
    qconfig:
        image_path: 'cal'
        batch_size: {args.batch}
PREPROCESS:
    resize: 256
    crop: 224
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
EVALUATION:
    input_images: 'val'
    image_file: 'val.list'
    batch_size: {args.batch}
""")
        cfg = load_config(cfg_path)
        names = None if args.strategies is None else args.strategies.split(",")
        configs = configurations(names)
        print(f"ResNet-50 fused IR: {len(graph)} nodes; {args.images} photo crops, batch "
              f"{args.batch}; {len(configs)} configurations")
        sweep(cfg_path, configs=configs[:1], progress=False, graph=graph)  # warm-up
        t0 = time.perf_counter()
        one = sweep(cfg_path, configs=configs, progress=False, graph=graph)
        one_wall = time.perf_counter() - t0

        # onnxruntime on the same images and batches
        ds = dataset_for(cfg)
        pre = preprocess_for(cfg, graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(os.fspath(onnx_path), opts, providers=["CPUExecutionProvider"])
        xs = [x for _, x in batches(ds.files, pre, args.batch, progress=False)]
        sess.run(None, {"input": xs[0]})
        t0 = time.perf_counter()
        for _, x in batches(ds.files, pre, args.batch, progress=False):
            sess.run(None, {"input": x})
        ort_pre = args.images / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for x in xs:
            sess.run(None, {"input": x})
        ort_only = args.images / (time.perf_counter() - t0)

        rows = [[d["config"], f"{d['images_per_s']:.2f}" if not d["error"] else "failed",
                 f"{d['images_per_s'] / ort_pre:.3f}" if not d["error"] else d["error"][:40]]
                for d in one.dicts()]
        print_table("fcc quant accuracy, images/s per configuration (preprocessing included)",
                    ["configuration", "images/s", "x onnxruntime float (with preprocessing)"],
                    rows)
        print(f"onnxruntime float: {ort_pre:.2f} images/s with preprocessing, {ort_only:.2f} "
              f"images/s on preprocessed arrays (2 threads)")
        print(f"whole sweep, one process: {one_wall:.1f} s wall")

        if not args.no_dask:
            from dask.distributed import LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                sweep(cfg_path, configs=configs[:1], shards=2, dask=cluster.scheduler_address,
                      progress=False)  # warm-up: workers import fc, read the model
                t0 = time.perf_counter()
                two = sweep(cfg_path, configs=configs, shards=2, dask=cluster.scheduler_address,
                            progress=False)
                dask_wall = time.perf_counter() - t0
            same = [{k: v for k, v in d.items() if k != "images_per_s"} for d in two.dicts()] == \
                [{k: v for k, v in d.items() if k != "images_per_s"} for d in one.dicts()]
            print(f"Dask LocalCluster (2 workers x 1 thread): {dask_wall:.1f} s wall, speed-up "
                  f"over one process {one_wall / dask_wall:.2f}x; same table: {same}")


if __name__ == "__main__":
    main()
