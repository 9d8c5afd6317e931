"""fcc compress: structured pruning, thinning, sensitivity analysis, low-rank decomposition.

    fcc compress prune --graph G -o OUT --config ratios.yaml [--criterion fpgm] [--thin]
    fcc compress thin --graph G -o OUT
    fcc compress sensitivity --graph G --data val.npz --ratios 0.1,0.3,0.5,0.7 --csv S.csv
        --plot S.png [--max-drop 0.01 --yaml ratios.yaml]
    fcc compress lowrank --graph G -o OUT (--energy 0.9 | --flops 0.5 | --rank 8 | --config Y)

Every subcommand reads an IR (``--graph``, ``--params`` beside it by default), works on any
stage of it (for reconstruct, or fused for CModel) and, where it rewrites, writes
``OUT_graph.json`` and ``OUT_params.npz`` and prints the dense FLOPs before and after
(``fc.ir.complexity``'s convention).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fc.errors import FcError

__all__ = ["add_parser", "run_command"]


def _graph_args(p: argparse.ArgumentParser, *, out: bool = True) -> None:
    p.add_argument("--graph", "--graph-json", "--graph_json", dest="graph", required=True,
                   help="*_graph.json")
    p.add_argument("--params", "--params-file", "--params_file", dest="params",
                   help="*_params.npz (default: beside the graph)")
    if out:
        p.add_argument("-o", "--out", required=True, metavar="PREFIX",
                       help="write PREFIX_graph.json and PREFIX_params.npz")


def _ratio_list(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ratios like 0.1,0.3,0.5") from None
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: ratios must be in [0, 1)")
    return values


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from fc.passes.lowrank import SCHEMES
    from fc.passes.prune import CRITERIA

    c = sub.add_parser("compress", parents=[common],
                       help="prune, thin, analyse pruning sensitivity, low-rank decompose an IR",
                       description="Compression on the IR: structured pruning (L1/L2/FPGM), "
                                   "thinning of zero channels, per-layer pruning sensitivity, "
                                   "SVD low-rank decomposition.")
    cs = c.add_subparsers(dest="action", metavar="ACTION")
    cs.required = True

    p = cs.add_parser("prune", parents=[common], help="zero the weakest filters of each layer")
    _graph_args(p)
    p.add_argument("--config", help="per-layer ratios (YAML: prune_ratios, default, exclude, ...)")
    p.add_argument("--criterion", choices=CRITERIA, help="filter ranking (default: the config's, "
                   "else l1)")
    p.add_argument("--ratio", type=float, help="ratio of every layer the config does not list")
    p.add_argument("--exclude", action="append", default=[], metavar="LAYER",
                   help="a layer never pruned (node, weight or source name; repeatable)")
    p.add_argument("--skip-first", "--skip_first", dest="skip_first", action="store_true",
                   help="leave the first layer alone")
    p.add_argument("--thin", action="store_true", help="then remove the zeroed channels")
    p.add_argument("--masks", metavar="FILE.npz",
                   help="write the pruning masks (weight name -> bool, True = pruned)")
    p.set_defaults(func=run_command)

    t = cs.add_parser("thin", parents=[common], help="remove channels that are all zero")
    _graph_args(t)
    t.set_defaults(func=run_command)

    s = cs.add_parser("sensitivity", parents=[common],
                      help="prune each layer alone at several ratios and evaluate",
                      description="Prune each layer alone at each ratio and evaluate: top-1 "
                                  "accuracy when labels are given, else the distance of the "
                                  "outputs to the unpruned graph's.")
    _graph_args(s, out=False)
    s.add_argument("--data", metavar="FILE.npz",
                   help="inputs by graph input name (and 'labels' for accuracy), in the source "
                        "model's layout")
    s.add_argument("--input_npy", "--input-npy", dest="input_npy", help="the input array (.npy)")
    s.add_argument("--labels", metavar="FILE.npy", help="integer class labels (.npy)")
    s.add_argument("--ratios", type=_ratio_list, default=_ratio_list("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"),
                   help="comma-separated ratios (default 0.1,...,0.9)")
    s.add_argument("--criterion", choices=CRITERIA, default="l1")
    s.add_argument("--layer", action="append", dest="layers", metavar="LAYER",
                   help="analyse only this layer (repeatable; default every prunable layer)")
    s.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    s.add_argument("--csv", help="write layer, ratio, metric, drop as CSV")
    s.add_argument("--plot", metavar="FILE.png", help="one curve per layer")
    s.add_argument("--max-drop", "--max_drop", dest="max_drop", type=float,
                   help="largest acceptable drop of the metric (accuracy: 0.01 = one point)")
    s.add_argument("--yaml", metavar="FILE.yaml",
                   help="with --max-drop: write the per-layer ratios that meet it (a prune config)")
    s.set_defaults(func=run_command)

    lr = cs.add_parser("lowrank", parents=[common], help="SVD of Gemm/Conv layers into two layers")
    _graph_args(lr)
    how = lr.add_mutually_exclusive_group()
    how.add_argument("--energy", type=float, help="keep this fraction of sum s_i^2 (e.g. 0.9)")
    how.add_argument("--flops", type=float, help="at most this fraction of each layer's FLOPs")
    how.add_argument("--rank", type=int, help="this rank for every layer")
    lr.add_argument("--scheme", choices=SCHEMES, default="channel",
                    help="Conv: kxk with r filters + 1x1 (channel) or kx1 + 1xk (spatial)")
    lr.add_argument("--config", help="YAML: default: {energy|flops|rank, scheme}, layers: {LAYER: "
                    "{...}}, exclude: [...]")
    lr.add_argument("--exclude", action="append", default=[], metavar="LAYER")
    lr.add_argument("--layer", action="append", dest="layers", metavar="LAYER",
                    help="decompose only this layer (repeatable)")
    lr.set_defaults(func=run_command)


# -- helpers --------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> Any:
    import fc.ir as ir

    return ir.load(args.graph, args.params)


def _flops(graph: Any) -> float:
    from fc.ir.complexity import complexity

    return complexity(graph).dense_flops


def _save(graph: Any, args: argparse.Namespace, flops_before: float) -> None:
    from fc.ir import save

    gpath, ppath = save(graph, args.out)
    after = _flops(graph)
    ratio = after / flops_before if flops_before else 1.0
    print(f"dense_flops: {flops_before:.0f} -> {after:.0f} ({ratio:.4f} of before)")
    print(f"wrote {gpath}")
    print(f"wrote {ppath}")


def _print_thinning(result: Any) -> None:
    for la in result.layers:
        line = f"thin {la.name} ({la.op}): {la.channels} -> {la.kept} channels"
        for reason, n in la.reasons.items():
            line += f"; {n} zero channel(s) kept: {reason}"
        print(line)
    print(f"removed {result.removed} channel(s)")


# -- actions --------------------------------------------------------------------------------
def _prune(args: argparse.Namespace) -> int:
    import numpy as np

    from fc.passes.prune import prune
    from fc.passes.prune_config import PruneConfig, load_prune_config
    from fc.passes.thin import thin

    cfg = load_prune_config(args.config) if args.config else PruneConfig()
    if args.ratio is not None:
        if not 0.0 <= args.ratio < 1.0:
            raise FcError(f"--ratio {args.ratio}: must be in [0, 1)")
        cfg.default = args.ratio
    if not cfg.prune_ratios and not cfg.default:
        raise FcError("nothing to prune: give --config with prune_ratios or --ratio")
    graph = _load(args)
    before = _flops(graph)
    result = prune(graph, cfg.prune_ratios, criterion=args.criterion or cfg.criterion or "l1",
                   default=cfg.default, exclude=[*cfg.exclude, *args.exclude],
                   skip_first=cfg.skip_first or args.skip_first)
    for la in result.layers:
        if la.skipped:
            print(f"prune {la.name} ({la.op}): not pruned: {la.skipped}")
        else:
            print(f"prune {la.name} ({la.op}): {len(la.pruned)}/{la.filters} filters "
                  f"({la.criterion}, ratio {la.ratio:g})")
    if args.masks:
        from fc.ir.serialize import write_npz

        write_npz(args.masks, {k: np.asarray(v) for k, v in result.masks.items()})
        print(f"wrote {args.masks}")
    if args.thin:
        _print_thinning(thin(graph))
    _save(graph, args, before)
    return 0


def _thin(args: argparse.Namespace) -> int:
    from fc.passes.thin import thin

    graph = _load(args)
    before = _flops(graph)
    _print_thinning(thin(graph))
    _save(graph, args, before)
    return 0


def _feeds(graph: Any, args: argparse.Namespace) -> tuple[list[dict], list | None]:
    """Batches of IR-layout inputs, and their labels (None: no labels)."""
    import numpy as np

    from fc.commands._io import load_npy
    from fc.ir.layout import to_ir_layout

    labels = None
    if args.data:
        from fc.ir.serialize import read_npz

        arrays = read_npz(args.data)
        names = [v.name for v in graph.inputs]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise FcError(f"{args.data}: no array for input(s) {missing} (it has {sorted(arrays)})")
        inputs = {n: arrays[n] for n in names}
        labels = arrays.get("labels")
    elif args.input_npy:
        if len(graph.inputs) != 1:
            raise FcError(f"{args.graph}: graph has {len(graph.inputs)} inputs; use --data")
        inputs = {graph.inputs[0].name: load_npy(args.input_npy, "input")}
    else:
        raise FcError("no data: give --data FILE.npz or --input_npy FILE.npy")
    if args.labels:
        labels = load_npy(args.labels, "labels")
    n = {len(a) for a in inputs.values()}
    if len(n) != 1:
        raise FcError(f"inputs have different batch sizes {sorted(n)}")
    total = n.pop()
    if labels is not None and len(labels) != total:
        raise FcError(f"{len(labels)} labels for {total} inputs")
    if args.batch_size < 1:
        raise FcError(f"--batch-size {args.batch_size}: must be >= 1")
    inputs = to_ir_layout(graph, inputs)
    starts = range(0, total, args.batch_size)
    batches = [{k: np.ascontiguousarray(a[i:i + args.batch_size]) for k, a in inputs.items()}
               for i in starts]
    label_batches = None if labels is None else [labels[i:i + args.batch_size] for i in starts]
    return batches, label_batches


def _progress() -> Any:
    start = time.perf_counter()

    def report(done: int, total: int, what: str) -> None:
        elapsed = time.perf_counter() - start
        print(f"sensitivity: {done}/{total} {what} ({elapsed:.1f}s)", file=sys.stderr, flush=True)

    return report


def _sensitivity(args: argparse.Namespace) -> int:
    from fc.passes import sensitivity as sens

    if args.yaml and args.max_drop is None:
        raise FcError("--yaml needs --max-drop (the acceptable drop the ratios must meet)")
    graph = _load(args)
    batches, labels = _feeds(graph, args)
    if labels is not None:
        metric, evaluate = "accuracy", sens.accuracy_metric(batches, labels)
    else:
        metric, evaluate = "distance", sens.distance_metric(graph, batches)
    layers = None
    if args.layers:
        from fc.ir.complexity import MAC_OPS
        from fc.passes.layer_select import find_layers

        layers = [n.name for n in find_layers(graph, args.layers, MAC_OPS).values()]
    table = sens.sensitivity(graph, args.ratios, evaluate, metric=metric, criterion=args.criterion,
                             layers=layers, progress=_progress())
    print(f"baseline {metric}: {table.baseline:.6g}")
    for name, curve in table.curves.items():
        op, filters = table.layers[name]
        points = ", ".join(f"{r:g}: {m:.4g}" for r, m in zip(table.ratios, curve))
        print(f"{name} ({op}, {filters} filters): {points}")
    if args.csv:
        sens.write_csv(table, args.csv)
        print(f"wrote {args.csv}")
    if args.plot:
        sens.plot(table, args.plot, title=f"pruning sensitivity of {Path(args.graph).name}")
        print(f"wrote {args.plot}")
    if args.max_drop is not None:
        ratios = sens.ratios_for(table, args.max_drop)
        print(f"ratios with a {metric} drop <= {args.max_drop:g}: " +
              (", ".join(f"{k}: {v:g}" for k, v in ratios.items()) or "none"))
        if args.yaml:
            sens.write_ratios_yaml(table, ratios, args.max_drop, args.yaml)
            print(f"wrote {args.yaml}")
    return 0


def _lowrank_config(path: str) -> tuple[dict | None, dict[str, dict], list[str]]:
    """(default choice, per-layer choices, exclude) from a lowrank YAML file."""
    import yaml

    from fc.yamlio import safe_load

    try:
        doc = safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FcError(f"{path}: low-rank config not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FcError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    keys = ("default", "layers", "exclude")
    if not isinstance(doc, dict) or set(doc) - set(keys):
        raise FcError(f"{path}: expected a mapping with keys {list(keys)}")
    layers = doc.get("layers") or {}
    exclude = doc.get("exclude") or []
    if not isinstance(layers, dict) or not all(isinstance(v, dict) for v in layers.values()):
        raise FcError(f"{path}: layers must map layer names to {{rank|energy|flops, scheme}}")
    if not isinstance(exclude, list):
        raise FcError(f"{path}: exclude must be a list of layer names")
    default = doc.get("default")
    if default is not None and not isinstance(default, dict):
        raise FcError(f"{path}: default must be {{rank|energy|flops, scheme}}")
    return default, {str(k): v for k, v in layers.items()}, [str(e) for e in exclude]


def _choice(spec: dict, where: str) -> Any:
    from fc.passes.lowrank import RankChoice

    unknown = set(spec) - {"rank", "energy", "flops", "scheme"}
    if unknown:
        raise FcError(f"{where}: unknown key(s) {sorted(unknown)}; known: rank, energy, flops, "
                      "scheme")
    try:
        return RankChoice(**spec)
    except (TypeError, FcError) as e:
        raise FcError(f"{where}: {e}") from None


def _lowrank(args: argparse.Namespace) -> int:
    from fc.passes.lowrank import decompose

    default, per_layer, exclude = (None, {}, [])
    if args.config:
        default, per_layer, exclude = _lowrank_config(args.config)
    flags = {k: getattr(args, k) for k in ("rank", "energy", "flops") if getattr(args, k) is not None}
    if flags:
        default = {**flags, "scheme": args.scheme}
    elif default is None:
        raise FcError("give --energy, --flops or --rank (or a --config with a default)")
    elif "scheme" not in default:
        default = {**default, "scheme": args.scheme}
    where = args.config or "command line"
    choice = _choice(default, f"{where}: default")
    layers = {k: _choice({"scheme": choice.scheme, **v}, f"{where}: layers.{k}")
              for k, v in per_layer.items()}
    graph = _load(args)
    before = _flops(graph)
    report = decompose(graph, choice, layers=layers, exclude=[*exclude, *args.exclude],
                       only=args.layers)
    for d in report:
        if d.skipped:
            print(f"lowrank {d.name} ({d.op}): kept: {d.skipped}")
        else:
            print(f"lowrank {d.name} ({d.op}, {d.scheme}): rank {d.rank}/{d.full_rank}, energy "
                  f"kept {d.energy_kept:.4f}, weight error {d.weight_error:.4g}, flops "
                  f"{d.flops_before:.0f} -> {d.flops_after:.0f}")
    _save(graph, args, before)
    return 0


_ACTIONS = {"prune": _prune, "thin": _thin, "sensitivity": _sensitivity, "lowrank": _lowrank}


def run_command(args: argparse.Namespace) -> int:
    return _ACTIONS[args.action](args)
