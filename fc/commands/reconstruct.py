"""fcc reconstruct: rebuild an IR in another framework and print its distance.

``fcc reconstruct torch|tf --graph G --params P --input_npy IN.npy [--result_npy OUT.npy]``
prints ``distance: <rel-L2>`` on its own line (then max-abs and cosine) between the rebuilt
model's output and OUT.npy, or the golden executor's output without ``--result_npy``, and
exits 1 when the distance is above ``--tol`` (the seed's 1e-3). The backends are
``fc.reconstruct.backends.BACKENDS``. Inputs and results are in the source model's layout
(NHWC for a Keras model, as ``fcc run`` takes and writes them).
"""

from __future__ import annotations

import argparse
import sys

from fc.reconstruct.backends import BACKENDS
from fc.reconstruct.compare import DEFAULT_TOL

__all__ = ["add_parser", "run_command"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser(
        "reconstruct", parents=[common],
        help="rebuild an IR in torch/TF and print its distance to the golden executor",
        description="Rebuild the IR in FRAMEWORK, run it on the input and print "
                    "'distance: <rel-L2>' (then max_abs, cosine) against --result_npy or the "
                    "golden executor; exit 1 above --tol.")
    r.add_argument("framework", choices=sorted(BACKENDS), help="the framework to rebuild in")
    r.add_argument("--graph", required=True, help="*_graph.json")
    r.add_argument("--params", help="*_params.npz (default: beside the graph)")
    r.add_argument("--input_npy", "--input-npy", dest="input_npy", help="input array (.npy)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="a named input")
    r.add_argument("--result_npy", "--result-npy", dest="result_npy",
                   help="expected output (.npy; .npz by output name for several outputs); "
                        "default: the golden executor's")
    r.add_argument("--tol", type=float, default=DEFAULT_TOL,
                   help=f"largest acceptable distance (default {DEFAULT_TOL:g}); exit 1 above")
    r.add_argument("--save_path", "--save-path", dest="save_path",
                   help="write the rebuilt model in the framework's format (torch: .pt2, "
                        "tf: frozen GraphDef .pb)")
    r.add_argument("--save_py", "--save-py", dest="save_py",
                   help="write standalone source of the model (.py, weights beside it)")
    r.add_argument("--per-layer", "--per_layer", dest="per_layer", action="store_true",
                   help="distance of every IR value to the golden executor; name the first "
                        "node above --tol")
    r.add_argument("--json", help="write the report as JSON")
    r.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import fc.ir as ir
    from fc.commands._io import load_inputs, load_outputs
    from fc.errors import FcError
    from fc.reconstruct.backends import check

    if not args.tol >= 0:
        raise FcError(f"--tol {args.tol}: must be a non-negative number")
    graph = ir.load(args.graph, args.params)
    inputs = load_inputs(graph, args.graph, args.input_npy, args.input)
    reference = load_outputs(graph, args.result_npy) if args.result_npy else None
    report, written = check(args.framework, graph, inputs, reference=reference,
                            reference_name=args.result_npy or "", tol=args.tol,
                            per_layer=args.per_layer, save_path=args.save_path,
                            save_py=args.save_py)
    for line in report.lines():
        print(line)
    times = ", ".join(f"{k} {v:.3f}s" for k, v in report.seconds.items())
    print(f"time: {times}")
    if args.json:
        report.write_json(args.json)
        written.append(args.json)
    for path in written:
        print(f"wrote {path}")
    sys.stdout.flush()
    return 0 if report.ok else 1
