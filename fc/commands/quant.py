"""fcc quant: calibrate, quantize, and report the error of a quantized model (config-driven).

    fcc quant calibrate --config configs/resnet50_v1b.yml [--method entropy]
    fcc quant quantize  --config C.yml      # IR_quantized_for_CModel_* beside the fused IR
    fcc quant error     --config C.yml      # per-layer report (+ the quantized IR)
    fcc quant accuracy  --config C.yml [--jobs N | --dask ADDRESS]   # top-1/top-5 table
    fcc quant sensitivity --config C.yml [--target-drop 0.5] [--jobs N | --dask ADDRESS]

Flags override the config's keys (``--set QUAN.qconfig.bits=6`` for any key).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run_command"]

# flag dest -> config key
_FLAGS = {
    "strategy": "QUAN.strategy",
    "weight_quan": "QUAN.qconfig.weight_quan",
    "method": "QUAN.qconfig.method",
    "table": "QUAN.qconfig.table",
    "image_path": "QUAN.qconfig.image_path",
    "batch_size": "QUAN.qconfig.batch_size",
    "num_images": "QUAN.qconfig.num_images",
    "bits": "QUAN.qconfig.bits",
    "output_dir": "OUTPUT_DIR",
    "save_path": "SAVE_PATH",
}
_PATH_FLAGS = {"table", "image_path", "output_dir", "save_path"}


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    q = sub.add_parser("quant", parents=[common], help="calibrate and quantize a fused IR",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    qs = q.add_subparsers(dest="quant_command", metavar="STEP")
    qs.required = True
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--config", required=True, help="the YAML config (configs/*.yml)")
    opts.add_argument("--strategy", help="null, minmax, scale_shift, symmetry_max, ..._t")
    opts.add_argument("--weight-quan", dest="weight_quan", choices=("perlayer", "perchannel"))
    opts.add_argument("--method", choices=("max", "percentile", "entropy", "mse"),
                      help="calibration method")
    opts.add_argument("--table", help="calibration table JSON")
    opts.add_argument("--image-path", dest="image_path", help="calibration image folder")
    opts.add_argument("--batch-size", dest="batch_size", type=int)
    opts.add_argument("--num-images", dest="num_images", type=int)
    opts.add_argument("--bits", type=int, help="bit width of weights and activations (2..16)")
    opts.add_argument("--output-dir", dest="output_dir", help="where reports go")
    opts.add_argument("--save-path", dest="save_path", help="the quantized frozen .pb")
    opts.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override any config key (VALUE is YAML)")
    opts.add_argument("--no-progress", action="store_true", help="no progress bars")
    opts.add_argument("--no-png", action="store_true", help="skip the graph picture")
    opts.add_argument("--dump", metavar="DIR", help="_t strategies: write every layer's integer "
                                                     "output (first batch) as DIR/<tensor>.npy")
    opts.add_argument("--dump-accumulators", dest="dump_accumulators", action="store_true",
                      help="with --dump: also each Conv/Gemm's int32 accumulators (bias "
                           "included) as DIR/<its output tensor>.acc.npy")
    for name, help_ in (("calibrate", "run the float IR over the calibration images, write the "
                                      "table (JSON + text)"),
                        ("quantize", "write IR_quantized_for_CModel_* beside the fused IR"),
                        ("error", "per-layer error report (accumulated and isolated), final "
                                  "distance")):
        p = qs.add_parser(name, parents=[common, opts], help=help_)
        p.set_defaults(func=run_command)
    p = qs.add_parser("accuracy", parents=[common, opts],
                      help="top-1/top-5 of every strategy (per-layer and per-channel weights) on "
                           "EVALUATION.image_file; table as CSV/JSON/Markdown + PNG")
    p.add_argument("--strategies", help="comma-separated (default: all); null is always run")
    p.add_argument("--weight-modes", dest="weight_modes", default="perlayer,perchannel",
                   help="comma-separated weight quantizations (default: perlayer,perchannel)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes")
    p.add_argument("--dask", metavar="ADDRESS", help="run the tasks on this Dask scheduler")
    p.add_argument("--shards", type=int, help="parts of the list per configuration (default: "
                                              "1, or the number of workers)")
    p.add_argument("--skip-missing", dest="skip_missing", action="store_true",
                   help="drop malformed lines, missing images and unknown labels (counted)")
    p.set_defaults(func=run_command)
    p = qs.add_parser("sensitivity", parents=[common, opts],
                      help="per layer: only it quantized, and all but it; final distance and "
                           "top-1 drop; sorted CSV, JSON, PNG; --target-drop proposes a mix")
    p.add_argument("--target-drop", dest="target_drop", type=float,
                   help="top-1 points: keep the fewest layers at --keep-precision to meet it")
    p.add_argument("--target-distance", dest="target_distance", type=float,
                   help="the same with an output rel-L2 target (no labels needed)")
    p.add_argument("--keep-precision", dest="keep", default="16", choices=("16", "float"),
                   help="precision of the layers kept (default 16 bits)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes")
    p.add_argument("--dask", metavar="ADDRESS", help="run the tasks on this Dask scheduler")
    p.add_argument("--shards", type=int, help="parts of the images per run (default 1)")
    p.set_defaults(func=run_command)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    import os

    import yaml

    from fc.quant.config import ConfigError
    from fc.yamlio import safe_load

    out: dict[str, Any] = {}
    for dest, key in _FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            out[key] = os.path.abspath(v) if dest in _PATH_FLAGS else v
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: VALUE is not valid YAML") from None
    return out


def run_command(args: argparse.Namespace) -> int:
    from fc.quant import pipeline
    from fc.quant.config import ConfigError, load_config

    progress = not args.no_progress and sys.stderr.isatty()
    if args.dump and args.quant_command != "error":
        raise ConfigError(f"--dump: `fcc quant error` with a _t strategy writes the layers' "
                          f"integers, `fcc quant {args.quant_command}` does not")
    if args.quant_command == "accuracy":
        return _accuracy(args, progress)
    overrides = _overrides(args)
    if getattr(args, "dump_accumulators", False) and not args.dump:
        raise ConfigError("--dump-accumulators needs --dump DIR")
    cfg = load_config(args.config, overrides)
    if args.dump and not cfg.strategy_object().integer:
        raise ConfigError(f"--dump: strategy {cfg['QUAN.strategy']!r} is simulated in float; the "
                          "layers' integers come from a _t strategy (symmetry_max_t, scale_shift_t)")
    graph = pipeline.load_model(cfg)
    if args.quant_command == "sensitivity":
        from fc.quant.sensitivity import run_sensitivity

        return run_sensitivity(cfg, graph, args, progress, overrides)
    step = args.quant_command
    if step == "calibrate":
        table = pipeline.calibrate(cfg, graph, progress=progress)
        print(f"calibrated {len(table.entries)} tensors on {table.meta['images']} images "
              f"(method {table.method})")
        from fc.quant.calibration import HISTOGRAM_METHODS, histogram_kernel

        if table.method in HISTOGRAM_METHODS:
            print(f"histogram kernel: {histogram_kernel()}")
        print(f"wrote {cfg.table_path} and {cfg.table_path.with_suffix('.txt')}")
        return 0
    table, reused = pipeline.table_for(cfg, graph, progress=progress)
    print(f"calibration table: {cfg.table_path} ({'reused' if reused else 'calibrated now'})")
    spec = pipeline.spec_for(cfg, graph, table)
    for p in pipeline.write_quantized(cfg, graph, spec, draw=not args.no_png):
        print(f"wrote {p}")
    if step == "quantize":
        return 0
    pb = pipeline.write_pb(cfg, graph, spec)
    if pb is not None:
        print(f"wrote {pb}")
    report = pipeline.error(cfg, graph, spec, progress=progress)
    print("\n".join(report.lines()))
    if spec.strategy.integer:
        hist = pipeline.integer_check(cfg, graph, spec, dump=args.dump, progress=progress,
                                      accumulators=args.dump_accumulators)
        total = sum(hist.values())
        within = sum(c for k, c in hist.items() if abs(k) <= 1)
        print(f"integer run vs simulation, output differences in steps: {hist} "
              f"({within / total:.2%} within one step)")
        if args.dump:
            print(f"wrote the integer layer outputs to {args.dump}")
    stem = f"error_{spec.strategy.name}_{cfg['QUAN.qconfig.weight_quan']}"
    for p in report.write(cfg.output_dir, stem):
        print(f"wrote {p}")
    return 0


def _accuracy(args: argparse.Namespace, progress: bool) -> int:
    from fc.errors import FcError
    from fc.quant.config import load_config
    from fc.quant.sweep import configurations, sweep

    overrides = _overrides(args)
    cfg = load_config(args.config, overrides)
    if args.jobs < 1:
        raise FcError(f"--jobs {args.jobs}: must be at least 1")
    names = None if args.strategies is None else [s.strip() for s in args.strategies.split(",")
                                                  if s.strip()]
    modes = [m.strip() for m in args.weight_modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("perlayer", "perchannel"):
            raise FcError(f"--weight-modes: {m!r} is not perlayer or perchannel")
    shards = args.shards or (args.jobs if args.dask is None else 2)
    table = sweep(args.config, overrides, configs=configurations(names, modes), shards=shards,
                  jobs=args.jobs, dask=args.dask, skip_missing=args.skip_missing,
                  progress=progress)
    print(f"calibration table: {table.table or '(none needed)'} "
          f"({'reused' if table.table_reused else 'calibrated now'})")
    if table.skipped:
        print(f"skipped {table.skipped} line(s) of {table.source} (--skip-missing)")
    print("\n".join(table.lines()))
    for p in table.write(cfg.output_dir, "accuracy", png=not args.no_png):
        print(f"wrote {p}")
    return 0
