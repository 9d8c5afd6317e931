"""fcc compile: import a model and write both IRs (and their pictures)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser("compile", parents=[common], help="import a model and write both IRs (+ PNGs)",
                       description="Import MODEL from FRAMEWORK, compile it, and write "
                                   "IR_for_reconstruct_* and IR_fused_for_CModel_* into OUT.")
    c.add_argument("framework", help="onnx, mxnet, torch or tf")
    c.add_argument("model", help="a model file (.onnx, PREFIX-symbol.json, .pt2, .keras/.h5, a "
                                 "frozen .pb), a SavedModel directory, a torch "
                                 "package.module:factory, or a zoo name such as resnet50v1b "
                                 "(mxnet) or resnet50 (torch, tf)")
    c.add_argument("-o", "--output", default="fc_ir", help="output directory (default ./fc_ir)")
    c.add_argument("--input-shape", action="append", metavar="[NAME=]1,3,224,224",
                   help="override an input's shape (repeat for several inputs)")
    c.add_argument("--params", help="weights file (mxnet .params); default: beside the symbol "
                                    "file, or seeded random weights for a zoo name")
    c.add_argument("--seed", type=int, default=0, help="seed of random zoo weights (default 0)")
    c.add_argument("--no-png", action="store_true", help="skip the Graphviz pictures")
    c.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from fc.api import compile_model, parse_input_shapes

    summary = compile_model(args.framework, args.model, args.output,
                            input_shapes=parse_input_shapes(args.input_shape), params=args.params,
                            seed=args.seed, draw=not args.no_png)
    for line in summary.lines():
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return 0
