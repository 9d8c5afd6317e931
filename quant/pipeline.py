"""The quantization jobs behind ``fcc quant`` and the example scripts, one function each.

``calibrate`` (images -> table), ``table_for`` (the table, recalibrating only when its inputs
changed), ``spec_for`` (config + table -> QuantSpec), ``write_quantized`` (the quantized IR
and its picture beside the fused IR), ``error`` (the per-layer report).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph
from fc.quant.calibration import CalibrationTable, Calibrator, fingerprint
from fc.quant.config import QuantConfig, resolve_tensor
from fc.quant.images import ImageFolder, Preprocess, batches
from fc.quant.plan import make_plan
from fc.quant.quantize import QUANTIZED_PREFIX, QuantSpec, build_spec, quantized_graph
from fc.quant.report import ErrorReport, error_report

__all__ = ["load_model", "calibrate", "table_for", "spec_for", "write_quantized", "write_pb", "error",
           "accuracy", "input_tensor", "output_tensor", "preprocess_for"]

log = logging.getLogger("fc.quant")


def load_model(cfg: QuantConfig) -> Graph:
    import fc.ir

    return fc.ir.load(cfg.graph_path, cfg.params_path)


def input_tensor(cfg: QuantConfig, graph: Graph) -> str:
    name = resolve_tensor(graph, cfg["EVALUATION.input_node"], what="EVALUATION.input_node",
                          default=graph.inputs[0].name)
    if name not in {v.name for v in graph.inputs} or len(graph.inputs) != 1:
        raise FcError(f"{cfg.path}: EVALUATION.input_node {name!r}: fc quantizes graphs with "
                      f"one input, got {[v.name for v in graph.inputs]}")
    return name


def output_tensor(cfg: QuantConfig, graph: Graph) -> str:
    return resolve_tensor(graph, cfg["EVALUATION.output_node"], what="EVALUATION.output_node",
                          default=graph.outputs[0].name)


def preprocess_for(cfg: QuantConfig, graph: Graph) -> Preprocess:
    v = next(v for v in graph.inputs if v.name == input_tensor(cfg, graph))
    return Preprocess.from_config(cfg, v.shape)


def _image_batches(cfg: QuantConfig, graph: Graph, folder: str, batch_size: int, limit: int | None,
                   desc: str, progress: bool) -> Iterator[np.ndarray]:
    pre = preprocess_for(cfg, graph)
    for _, x in batches(ImageFolder(folder, limit).files, pre, batch_size, desc=desc,
                        progress=progress):
        yield x


def _calibration_key(cfg: QuantConfig, graph: Graph) -> str:
    q = "QUAN.qconfig."
    folder = ImageFolder(cfg.require(q + "image_path"), cfg[q + "num_images"])
    settings = {k: cfg[q + k] for k in ("method", "percentile", "num_bins", "quantized_bins",
                                        "num_images")}
    settings["bits"] = cfg.act_bits
    return fingerprint(cfg.graph_path, cfg.params_path, folder.fingerprint_parts(), settings,
                       preprocess_for(cfg, graph).settings())


def _to_calibrate(cfg: QuantConfig, graph: Graph) -> list[str]:
    """The tensors the full plan quantizes, plus those only the config's mixed precision
    quantizes (a tensor after a float layer's scale-preserving follower)."""
    full = make_plan(graph).calibrated
    extra = make_plan(graph, cfg.layer_settings(graph)).calibrated
    return full + [t for t in extra if t not in set(full)]


def calibrate(cfg: QuantConfig, graph: Graph, *, progress: bool = True, write: bool = True
              ) -> CalibrationTable:
    """Run the float graph over ``image_path`` (batched), observe every quantized tensor,
    pick thresholds by ``method``; write the table (JSON + text) unless ``write`` is False."""
    from fc.np_ops import Interpreter

    q = "QUAN.qconfig."
    cal = Calibrator(_to_calibrate(cfg, graph), method=cfg[q + "method"],
                     num_bins=cfg[q + "num_bins"], percentile=cfg[q + "percentile"],
                     quantized_bins=cfg[q + "quantized_bins"], bits=cfg.act_bits)
    runner = Interpreter(graph, observer=cal)
    name = input_tensor(cfg, graph)
    for x in _image_batches(cfg, graph, cfg.require(q + "image_path"), cfg[q + "batch_size"],
                            cfg[q + "num_images"], "calibrate", progress):
        feeds = {name: x}
        cal.observe_inputs(feeds)
        runner.run(feeds)
    table = cal.table({"graph": str(cfg.graph_path), "key": _calibration_key(cfg, graph)})
    if write:
        table.write(cfg.table_path)
    return table


def table_for(cfg: QuantConfig, graph: Graph, *, progress: bool = True) -> tuple[CalibrationTable, bool]:
    """The table at ``qconfig.table`` if it was made from the same graph, images and
    settings, else a fresh calibration (written there). Returns (table, reused)."""
    path = cfg.table_path
    if path.exists() and cfg["QUAN.qconfig.image_path"]:
        table = CalibrationTable.read(path)
        if table.meta.get("key") == _calibration_key(cfg, graph) and all(
                t in table for t in _to_calibrate(cfg, graph)):
            return table, True
        log.info("%s: made from other inputs; recalibrating", path)
    elif path.exists():
        return CalibrationTable.read(path), True
    return calibrate(cfg, graph, progress=progress), False


def spec_for(cfg: QuantConfig, graph: Graph, table: CalibrationTable, strategy: Any = None,
             *, per_channel: bool | None = None, layers: dict[str, Any] | None = None) -> QuantSpec:
    strategy = strategy or cfg.strategy_object()
    if per_channel is None:
        per_channel = cfg["QUAN.qconfig.weight_quan"] == "perchannel"
    return build_spec(graph, table, strategy, per_channel=per_channel,
                      weight_bits=cfg.weight_bits, act_bits=cfg.act_bits,
                      layers=cfg.layer_settings(graph) if layers is None else layers)


def write_quantized(cfg: QuantConfig, graph: Graph, spec: QuantSpec, *, draw: bool = True
                    ) -> list[Path]:
    """``IR_quantized_for_CModel_graph.json`` + ``_params.npz`` (+ ``_graph.png``) beside
    the fused IR."""
    from fc.ir import save
    from fc.ir.draw import render

    qg = quantized_graph(graph, spec)
    prefix = cfg.graph_path.parent / QUANTIZED_PREFIX
    paths = list(save(qg, prefix))
    if draw:
        paths.append(render(qg, str(prefix) + "_graph.png",
                            title=f"{QUANTIZED_PREFIX} ({graph.name}, {spec.strategy.name})"))
    return paths


def write_pb(cfg: QuantConfig, graph: Graph, spec: QuantSpec) -> Path | None:
    """The quantized model as a TensorFlow frozen .pb at ``SAVE_PATH`` (None if unset): the
    QDQ graph lowered by ``fc.reconstruct.tf`` (int8 weights, explicit quantize/dequantize
    arithmetic)."""
    if not cfg["SAVE_PATH"]:
        return None
    from fc.reconstruct.tf import freeze

    path = Path(cfg["SAVE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    freeze(quantized_graph(graph, spec)).save(path)
    return path


def integer_check(cfg: QuantConfig, graph: Graph, spec: QuantSpec, *, dump: str | None = None,
                  progress: bool = True, accumulators: bool = False) -> dict[int, int]:
    """For the ``_t`` strategies: run the quantized IR in integers and in simulation on
    ``EVALUATION.input_images``; return the histogram of output differences in quantization
    steps. The simulation is the one of the same arithmetic: ``FixedPointSim`` with
    ``QUAN.qconfig.rounding`` for ``symmetry_max_t``, the plain QDQ simulation for the
    power-of-two ``scale_shift_t`` (whose integer run is it bit for bit). ``dump``: a folder
    receiving every quantized tensor of the integer run on the first batch, as
    ``<tensor>.npy`` (int8/uint8), for bit-level comparison with a C model; with
    ``accumulators`` also each Conv's/Gemm's int32 accumulators (bias included) as
    ``<its output tensor>.acc.npy``."""
    import re

    from fc.ir.serialize import atomic_write
    from fc.quant.integer_run import IntegerInterpreter
    from fc.quant.simulate import FixedPointSim, SimInterpreter

    qg = quantized_graph(graph, spec)
    pow2 = spec.strategy.name.startswith("scale_shift")
    rounding = cfg["QUAN.qconfig.rounding"]
    ints = IntegerInterpreter(qg, pow2=pow2, allow_float=cfg["QUAN.qconfig.allow_float"],
                              rounding=rounding, keep_accumulators=dump is not None and accumulators)
    sim = SimInterpreter(qg) if pow2 else FixedPointSim(qg, rounding=rounding)
    out = output_tensor(cfg, graph)
    p = spec.acts.get(out)
    ev = "EVALUATION."
    hist: dict[int, int] = {}
    for i, x in enumerate(_image_batches(cfg, graph, cfg.require(ev + "input_images"),
                                         cfg[ev + "batch_size"], None, "integer", progress)):
        feeds = {input_tensor(cfg, graph): x}
        got = ints.run(feeds, intermediate=dump is not None and i == 0)
        ref = sim.run(feeds)[out]
        step = float(p.scale) if p is not None else 1.0
        d = np.rint((got[out] - ref) / step).astype(np.int64)
        for v, c in zip(*np.unique(d, return_counts=True)):
            hist[int(v)] = hist.get(int(v), 0) + int(c)
        if dump is not None and i == 0:
            folder = Path(dump)
            folder.mkdir(parents=True, exist_ok=True)
            layer_of = {q.name: layer for layer, q in ints.out_q.items()}
            for n in qg:
                if n.op_type == "QuantizeLinear":
                    tensor = n.name[: -len("_quantize")]  # the fused IR's tensor name
                    name = re.sub(r"[^A-Za-z0-9_.-]", "_", tensor.lstrip("/"))
                    with atomic_write(folder / f"{name}.npy") as f:
                        np.save(f, got[n.output.name], allow_pickle=False)
                    acc = (ints.accumulators or {}).get(layer_of.get(n.name, ""))
                    if acc is not None:
                        with atomic_write(folder / f"{name}.acc.npy") as f:
                            np.save(f, acc, allow_pickle=False)
    return dict(sorted(hist.items()))


def error(cfg: QuantConfig, graph: Graph, spec: QuantSpec, *, progress: bool = True,
          isolated: bool = True) -> ErrorReport:
    """The per-layer report on ``EVALUATION.input_images``."""
    ev = "EVALUATION."
    xs = _image_batches(cfg, graph, cfg.require(ev + "input_images"), cfg[ev + "batch_size"],
                        None, f"error {spec.strategy.name}", progress)
    return error_report(graph, spec, xs, output=output_tensor(cfg, graph), isolated=isolated)


def accuracy(cfg: QuantConfig, graph: Graph, spec: QuantSpec | None, *, progress: bool = True,
             dataset: Any = None, float_top1: np.ndarray | None = None,
             skip_missing: bool = False) -> Any:
    """Top-1/top-k of ``spec``'s quantized IR (None: the float graph) on the config's labelled
    list (``fc.quant.accuracy``): an ``Accuracy`` with ``.top1``, ``.top5``, ``.images``."""
    from fc.quant.accuracy import dataset_for, evaluate

    ds = dataset if dataset is not None else dataset_for(cfg, skip_missing=skip_missing)
    name = None if spec is None else spec.strategy.name
    wq = "perchannel" if spec is None or spec.per_channel else "perlayer"
    return evaluate(graph, cfg, name, wq, ds, spec=spec, float_top1=float_top1,
                    progress=progress)
