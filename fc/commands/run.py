"""fcc run: execute an IR with the golden executor."""

from __future__ import annotations

import argparse

import numpy as np

from fc.commands._io import load_inputs, summary

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser("run", parents=[common], help="run an IR with the numpy golden executor",
                       description="Run an IR with the numpy golden executor. Inputs and outputs "
                                   "are in the source model's layout (NHWC for a Keras model; "
                                   "`fcc info` shows it).")
    r.add_argument("--graph", required=True, help="*_graph.json")
    r.add_argument("--params", help="*_params.npz (default: beside the graph)")
    r.add_argument("--input_npy", "--input-npy", dest="input_npy", help="input array (.npy)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="a named input")
    r.add_argument("--output_npy", "--output-npy", dest="output_npy",
                   help="write the output (.npy; .npz when the graph has several outputs)")
    r.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.api import run
    from fc.limits import check_graph

    graph = ir.load(args.graph, args.params)
    inputs = load_inputs(graph, args.graph, args.input_npy, args.input)
    check_graph(graph, inputs, args.graph)
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
