"""fcc info: inputs, outputs, op histogram and parameter count of an IR."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    i = sub.add_parser("info", parents=[common], help="inputs, outputs, op histogram and parameter count")
    i.add_argument("--graph", required=True, help="*_graph.json")
    i.add_argument("--params", help="*_params.npz (default: beside the graph)")
    i.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir

    graph = ir.load(args.graph, args.params)
    print(f"graph: {graph.name} ({len(graph)} nodes)")
    for kind, values in (("input ", graph.inputs), ("output", graph.outputs)):
        for v in values:
            layout = graph.layouts.get(v.name)
            fed = f" (fed and returned as {layout})" if layout else ""
            print(f"{kind} {v.name}: {v.dtype}{list(v.shape or ())}{fed}")
    print("ops: " + ", ".join(f"{op} {n}" for op, n in graph.op_histogram().items()))
    print(f"parameters: {graph.num_params()} in {len(graph.initializers)} tensors")
    return 0
