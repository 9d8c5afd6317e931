"""fcc complexity: nnz, sparsity, dense and sparse FLOPs per layer."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    x = sub.add_parser("complexity", parents=[common], help="nnz, sparsity, dense and sparse FLOPs per layer")
    x.add_argument("--graph-json", "--graph_json", dest="graph_json", required=True)
    x.add_argument("--params-file", "--params_file", dest="params_file", required=True)
    x.add_argument("--csv", help="write the per-layer table as CSV")
    x.add_argument("--json", help="write the per-layer table and totals as JSON")
    x.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    x.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.ir.complexity import complexity, format_table, summary_line, write_csv, write_json

    graph = ir.load(args.graph_json, args.params_file)
    report = complexity(graph)
    if not args.quiet:
        print(format_table(report))
    print(summary_line(report))
    if args.csv:
        write_csv(report, args.csv)
    if args.json:
        write_json(report, args.json)
    return 0
