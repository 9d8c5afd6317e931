"""fcc checklist: every step of a model release on one model (or a list), one table row each.

    fcc checklist FRAMEWORK MODEL [--params FILE] [--config C.yml] [-o DIR]
    fcc checklist --models MODELS.yml [-o DIR] [--dask ADDRESS]

Writes ``DIR/checklist.md`` (the seed's table and a section per step) and
``DIR/checklist.json``; each model's files go into ``DIR/<name>/``. Exit status 0 when no
step failed (a skipped step lacked data; its key is named), 1 when one did, 2 for a usage
error. The steps and columns are ``fc.checklist``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser(
        "checklist", parents=[common], help="run every release step on a model; write the table",
        description="Compile MODEL, measure its complexity, rebuild it in torch and TF, and (with "
                    "a quantization config) report its quantization error and accuracy; write "
                    "DIR/checklist.md (one table row per model, a section per step) and "
                    "DIR/checklist.json. A failed step is 'no' with its reason and the others "
                    "still run; exit 1 if any failed.")
    c.add_argument("framework", nargs="?", help="the model's framework (as for fcc compile)")
    c.add_argument("model", nargs="?", help="a model file or zoo name (as for fcc compile)")
    c.add_argument("--models", metavar="FILE",
                   help="a YAML list of models (framework, model, params, config, input_shape, "
                        "seed, name, orig_top1, training_date): one row each")
    c.add_argument("-o", "--output", default="checklist",
                   help="output directory (default ./checklist)")
    c.add_argument("--params", help="weights file (as for fcc compile)")
    c.add_argument("--config", help="quantization config (configs/*.yml): enables the "
                                    "quantization steps")
    c.add_argument("--input-shape", action="append", metavar="[NAME=]1,3,224,224",
                   help="override an input's shape (repeat for several inputs)")
    c.add_argument("--seed", type=int, default=0,
                   help="seed of random zoo weights and of the example input (default 0)")
    c.add_argument("--name", help="the row's name (default: from MODEL)")
    c.add_argument("--orig-top1", dest="orig_top1", type=float,
                   help="the source model's own top-1, copied into the table")
    c.add_argument("--training-date", dest="training_date", help="copied into the table")
    c.add_argument("--dask", metavar="ADDRESS",
                   help="run the models as tasks of this Dask scheduler (workers must see -o)")
    c.add_argument("--no-png", action="store_true", help="skip the Graphviz pictures")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from fc.api import parse_input_shapes
    from fc.checklist import ChecklistError, ModelEntry, load_models, run_checklist

    single = args.framework is not None or args.model is not None
    if args.models:
        if single:
            raise ChecklistError("give FRAMEWORK MODEL or --models FILE, not both")
        given = [f for f in ("params", "config", "input_shape", "name", "orig_top1",
                             "training_date") if getattr(args, f) is not None]
        if given:
            raise ChecklistError(f"--{given[0].replace('_', '-')} is per model: with --models, "
                                 "put it in the models file")
        entries = load_models(args.models)
    else:
        if args.framework is None or args.model is None:
            raise ChecklistError("give FRAMEWORK MODEL (e.g. mxnet resnet50v1b) or --models FILE")
        entries = [ModelEntry(args.framework, args.model, params=args.params, config=args.config,
                              input_shapes=parse_input_shapes(args.input_shape), seed=args.seed,
                              name=args.name, orig_top1=args.orig_top1,
                              training_date=args.training_date)]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results, written = run_checklist(
        entries, args.output, draw=not args.no_png,
        progress=not args.no_progress and sys.stderr.isatty(), report=say, dask=args.dask)
    for r in results:
        failed = [s.key for s in r.steps if s.status == "no"]
        skipped = [f"{s.key} ({s.reason})" for s in r.steps if s.status == "skipped"]
        print(f"{r.name}: " + ("all steps passed" if not failed else f"failed: {', '.join(failed)}")
              + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    for p in written:
        print(f"wrote {p}")
    return 0 if all(r.passed for r in results) else 1
