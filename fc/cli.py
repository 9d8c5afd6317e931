"""The ``fc`` / ``fcc`` command line (``fc`` is a bash/zsh builtin, hence the second name).

Every user mistake is an ``FcError``: one line on stderr, exit status 2. ``--debug`` shows the
traceback and fc's debug log (e.g. why a fusion refused).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import numpy as np

from fc import __version__
from fc.errors import FcError

__all__ = ["main", "build_parser"]


def _cmd_compile(args: argparse.Namespace) -> int:
    from fc.api import compile_model, parse_input_shapes

    summary = compile_model(args.framework, args.model, args.output,
                            input_shapes=parse_input_shapes(args.input_shape), params=args.params,
                            seed=args.seed, draw=not args.no_png)
    for line in summary.lines():
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return 0


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FcError(f"{path}: {what} file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise FcError(f"{path}: not a readable .npy array ({str(e).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray):
        raise FcError(f"{path}: expected a single .npy array, got an archive")
    return arr


def _summary(name: str, arr: np.ndarray) -> str:
    a = np.asarray(arr)
    stats = ""
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        stats = f" min {f.min():.6g} max {f.max():.6g} mean {f.mean():.6g} std {f.std():.6g}"
        if a.ndim == 2 and a.shape[1] > 1:
            stats += f" argmax {np.argmax(a, axis=1).tolist()[:8]}"
    return f"{name}: {a.dtype.name}{list(a.shape)}{stats}"


def _cmd_run(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.np_ops import run

    graph = ir.load(args.graph, args.params)
    inputs: dict[str, np.ndarray] = {}
    if args.input_npy:
        if len(graph.inputs) != 1:
            raise FcError(f"{args.graph}: graph has {len(graph.inputs)} inputs; use --input NAME=FILE.npy")
        inputs[graph.inputs[0].name] = _load_npy(args.input_npy, "input")
    for spec in args.input or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise FcError(f"--input {spec!r}: expected NAME=FILE.npy")
        inputs[name] = _load_npy(path, f"input {name!r}")
    if not inputs:
        raise FcError("no input given: use --input_npy FILE.npy or --input NAME=FILE.npy")
    outputs = run(graph, inputs)
    for name, arr in outputs.items():
        print(_summary(name, arr))
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


def _cmd_info(args: argparse.Namespace) -> int:
    import fc.ir as ir

    graph = ir.load(args.graph, args.params)
    print(f"graph: {graph.name} ({len(graph)} nodes)")
    for v in graph.inputs:
        print(f"input  {v.name}: {v.dtype}{list(v.shape or ())}")
    for v in graph.outputs:
        print(f"output {v.name}: {v.dtype}{list(v.shape or ())}")
    print("ops: " + ", ".join(f"{op} {n}" for op, n in graph.op_histogram().items()))
    print(f"parameters: {graph.num_params()} in {len(graph.initializers)} tensors")
    return 0


def _cmd_complexity(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcc",
        description="fc: a frontend compiler for neural-network accelerators "
                    "(installed as both `fc` and `fcc`; bash's builtin `fc` hides the first).")
    p.add_argument("--version", action="version", version=f"fc {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and fc's debug log")
    # --debug is accepted after the subcommand too (SUPPRESS keeps the global value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and fc's debug log")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("compile", parents=[common], help="import a model and write both IRs (+ PNGs)",
                       description="Import MODEL from FRAMEWORK, compile it, and write "
                                   "IR_for_reconstruct_* and IR_fused_for_CModel_* into OUT.")
    c.add_argument("framework", help="onnx or mxnet")
    c.add_argument("model", help="a model file (.onnx, PREFIX-symbol.json) or an mxnet zoo name "
                                 "such as resnet50v1b")
    c.add_argument("-o", "--output", default="fc_ir", help="output directory (default ./fc_ir)")
    c.add_argument("--input-shape", action="append", metavar="[NAME=]1,3,224,224",
                   help="override an input's shape (repeat for several inputs)")
    c.add_argument("--params", help="weights file (mxnet .params); default: beside the symbol "
                                    "file, or seeded random weights for a zoo name")
    c.add_argument("--seed", type=int, default=0, help="seed of random zoo weights (default 0)")
    c.add_argument("--no-png", action="store_true", help="skip the Graphviz pictures")
    c.set_defaults(func=_cmd_compile)

    r = sub.add_parser("run", parents=[common], help="run an IR with the numpy golden executor")
    r.add_argument("--graph", required=True, help="*_graph.json")
    r.add_argument("--params", help="*_params.npz (default: beside the graph)")
    r.add_argument("--input_npy", "--input-npy", dest="input_npy", help="input array (.npy)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="a named input")
    r.add_argument("--output_npy", "--output-npy", dest="output_npy",
                   help="write the output (.npy; .npz when the graph has several outputs)")
    r.set_defaults(func=_cmd_run)

    i = sub.add_parser("info", parents=[common], help="inputs, outputs, op histogram and parameter count")
    i.add_argument("--graph", required=True, help="*_graph.json")
    i.add_argument("--params", help="*_params.npz (default: beside the graph)")
    i.set_defaults(func=_cmd_info)

    x = sub.add_parser("complexity", parents=[common], help="nnz, sparsity, dense and sparse FLOPs per layer")
    x.add_argument("--graph-json", "--graph_json", dest="graph_json", required=True)
    x.add_argument("--params-file", "--params_file", dest="params_file", required=True)
    x.add_argument("--csv", help="write the per-layer table as CSV")
    x.add_argument("--json", help="write the per-layer table and totals as JSON")
    x.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    x.set_defaults(func=_cmd_complexity)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except FcError as e:
        if args.debug:
            raise
        print(f"fcc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fcc complexity ... | head`: the reader left, not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
