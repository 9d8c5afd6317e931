"""fcc export onnx: write either IR as an ONNX model.

    fcc export onnx --graph G_graph.json [--params G_params.npz] -o model.onnx

The model passes ``onnx.checker``'s full check before it is written (atomically: on any
error no file appears); fc's node names and provenance ride along as node names and
``metadata_props`` (``fc.reconstruct.onnx``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    e = sub.add_parser("export", parents=[common], help="write an IR in another format (onnx)",
                       description="Export an fc IR (for reconstruct, or fused for CModel).")
    es = e.add_subparsers(dest="format", metavar="FORMAT")
    es.required = True
    o = es.add_parser("onnx", parents=[common], help="an ONNX model (opset 17) onnxruntime runs")
    o.add_argument("--graph", "--graph-json", "--graph_json", dest="graph", required=True,
                   help="*_graph.json")
    o.add_argument("--params", "--params-file", "--params_file", dest="params",
                   help="*_params.npz (default: beside the graph)")
    o.add_argument("-o", "--out", required=True, metavar="MODEL.onnx")
    o.add_argument("--no-check", action="store_true", help="skip onnx.checker's full check")
    o.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.reconstruct.onnx import OPSET, export_onnx

    graph = ir.load(args.graph, args.params)
    model = export_onnx(graph, args.out, check=not args.no_check)
    print(f"{args.out}: {len(model.graph.node)} ONNX nodes (opset {OPSET}) from "
          f"{len(graph)} IR nodes, {len(graph.initializers)} weights")
    return 0
