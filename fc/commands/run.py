"""fcc run: execute an IR with the golden executor."""

from __future__ import annotations

import argparse

import numpy as np

from fc.commands._io import load_npy, summary
from fc.errors import FcError

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser("run", parents=[common], help="run an IR with the numpy golden executor")
    r.add_argument("--graph", required=True, help="*_graph.json")
    r.add_argument("--params", help="*_params.npz (default: beside the graph)")
    r.add_argument("--input_npy", "--input-npy", dest="input_npy", help="input array (.npy)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="a named input")
    r.add_argument("--output_npy", "--output-npy", dest="output_npy",
                   help="write the output (.npy; .npz when the graph has several outputs)")
    r.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.np_ops import run

    graph = ir.load(args.graph, args.params)
    inputs: dict[str, np.ndarray] = {}
    if args.input_npy:
        if len(graph.inputs) != 1:
            raise FcError(f"{args.graph}: graph has {len(graph.inputs)} inputs; use --input NAME=FILE.npy")
        inputs[graph.inputs[0].name] = load_npy(args.input_npy, "input")
    for spec in args.input or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise FcError(f"--input {spec!r}: expected NAME=FILE.npy")
        inputs[name] = load_npy(path, f"input {name!r}")
    if not inputs:
        raise FcError("no input given: use --input_npy FILE.npy or --input NAME=FILE.npy")
    outputs = run(graph, inputs)
    for name, arr in outputs.items():
        print(summary(name, arr))
    if args.output_npy:
        from fc.ir.serialize import atomic_write

        if len(outputs) == 1:
            with atomic_write(args.output_npy) as f:
                np.save(f, next(iter(outputs.values())), allow_pickle=False)
        else:
            from fc.ir.serialize import write_npz

            write_npz(args.output_npy, outputs)
        print(f"wrote {args.output_npy}")
    return 0
