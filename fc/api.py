"""fc's library API: import a model from a framework, compile it, write the product files.

``compile_model("mxnet", "resnet50v1b", "fc_ir")`` is the main job: it writes
``IR_for_reconstruct_graph.{json,png}``, ``IR_for_reconstruct_params.npz``,
``IR_fused_for_CModel_graph.{json,png}`` and ``IR_fused_for_CModel_params.npz``. All files
are written into a temporary directory beside the output and moved in at the end, so a
failure never leaves a half-written output directory.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fc.errors import FcError
from fc.ir import save
from fc.ir.core import Graph
from fc.ir.serialize import write_directory
from fc.spelling import option

__all__ = ["FRAMEWORKS", "Imported", "CompileSummary", "import_model", "compile_model", "run",
           "export_onnx", "RECONSTRUCT_PREFIX", "FUSED_PREFIX"]

RECONSTRUCT_PREFIX = "IR_for_reconstruct"
FUSED_PREFIX = "IR_fused_for_CModel"

InputShapes = dict[str, tuple[int, ...]] | tuple[int, ...] | None


@dataclass
class Imported:
    """An imported graph plus notes for the user (e.g. "weights are seeded random")."""

    graph: Graph
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _import_onnx(model: str | os.PathLike, *, input_shapes: InputShapes,
                 params: str | os.PathLike | None, seed: int) -> Imported:
    from fc.frontend.onnx import import_onnx

    if params is not None:
        raise FcError(f"{option('params')} is not used with onnx models (weights are inside "
                      "the .onnx)")
    return Imported(import_onnx(model, input_shapes=input_shapes))


def _import_mxnet(model: str | os.PathLike, *, input_shapes: InputShapes,
                  params: str | os.PathLike | None, seed: int) -> Imported:
    from fc.frontend.mxnet import load_mxnet

    graph, notes = load_mxnet(str(model), params=params, seed=seed, input_shapes=input_shapes)
    return Imported(graph, list(notes))


def _import_torch(model: str | os.PathLike, *, input_shapes: InputShapes,
                  params: str | os.PathLike | None, seed: int) -> Imported:
    from fc.frontend.torch import import_torch

    if params is not None:
        raise FcError(f"{option('params')} is not used with torch models (weights are inside "
                      "the .pt2, the module or the zoo model)")
    imp = import_torch(os.fspath(model), input_shapes=input_shapes, seed=seed)
    times = ", ".join(f"{k} {v:.2f}s" for k, v in imp.seconds.items())
    return Imported(imp.graph, [*imp.notes, f"torch import: {times}"])


def _import_tf(model: str | os.PathLike, *, input_shapes: InputShapes,
               params: str | os.PathLike | None, seed: int) -> Imported:
    from fc.frontend.tf import import_tf

    if params is not None:
        raise FcError(f"{option('params')} is not used with TensorFlow models (weights are inside "
                      "the model)")
    notes = []
    if not Path(os.fspath(model)).exists():
        from fc.zoo.tf import canonical_name, get_model

        if canonical_name(str(model)) is not None:
            if isinstance(input_shapes, dict):  # (the zoo's input name is Keras' choice)
                input_shapes = next(iter(input_shapes.values()))
            shape = None if input_shapes is None else tuple(input_shapes[1:])
            model = get_model(str(model), seed=seed, input_shape=shape)
            notes.append(f"weights are seeded random (seed {seed}): Keras zoo model "
                         f"{model.name}")
    return Imported(import_tf(model, input_shapes=input_shapes), notes)


#: framework name -> importer (a file or zoo name -> ``Imported``); one line per frontend.
_IMPORTERS = {
    "onnx": _import_onnx,
    "mxnet": _import_mxnet,
    "torch": _import_torch,
    "tf": _import_tf,
}
FRAMEWORKS = tuple(_IMPORTERS)


def import_model(framework: str, model: str | os.PathLike, *, input_shapes: InputShapes = None,
                 params: str | os.PathLike | None = None, seed: int = 0) -> Imported:
    """The IR "for reconstruct" of ``model`` (a file, or a zoo name)."""
    start = time.perf_counter()
    importer = _IMPORTERS.get(framework.lower())
    if importer is None:
        raise FcError(f"unknown framework {framework!r}; fc imports {', '.join(FRAMEWORKS)}")
    imported = importer(model, input_shapes=input_shapes, params=params, seed=seed)
    imported.seconds = time.perf_counter() - start
    return imported


@dataclass
class CompileSummary:
    out_dir: Path
    files: list[Path]
    nodes_before: int
    nodes_after: int
    pass_counts: dict[str, int]
    import_seconds: float
    compile_seconds: float
    write_seconds: float
    notes: list[str]
    warnings: list[str]
    op_histogram_before: dict[str, int]
    op_histogram_after: dict[str, int]

    def lines(self) -> list[str]:
        """The summary the CLI prints."""
        out = [*self.notes]
        out.append(f"nodes: {self.nodes_before} (IR for reconstruct) -> {self.nodes_after} "
                   f"(IR fused for CModel)")
        rewrites = ", ".join(f"{k} {v}" for k, v in self.pass_counts.items() if v)
        out.append(f"rewrites: {rewrites or 'none'}")
        out.append("fused ops: " + ", ".join(f"{k} {v}" for k, v in self.op_histogram_after.items()))
        out.append(f"time: import {self.import_seconds:.2f}s, compile {self.compile_seconds:.2f}s, "
                   f"write {self.write_seconds:.2f}s")
        out.append(f"wrote {len(self.files)} files to {self.out_dir}:")
        out.extend(f"  {p.name}" for p in self.files)
        out.extend(f"warning: {w}" for w in self.warnings)
        return out


def _write_products(tmp: Path, products: list[tuple[str, Graph]], draw: bool) -> None:
    from fc.ir.draw import render

    for prefix, g in products:
        save(g, tmp / prefix)
        if draw:
            render(g, tmp / f"{prefix}_graph.png", title=f"{prefix} ({g.name})")


def compile_model(framework: str, model: str | os.PathLike, out_dir: str | os.PathLike = "fc_ir", *,
                  input_shapes: InputShapes = None, params: str | os.PathLike | None = None,
                  seed: int = 0, draw: bool = True) -> CompileSummary:
    """Import, compile and write both IRs (and their pictures) into ``out_dir``."""
    imported = import_model(framework, model, input_shapes=input_shapes, params=params, seed=seed)
    from fc.ir.draw import dot_available
    from fc.passes.pipeline import compile_graph, non_hardware_ops

    graph, notes, import_seconds = imported.graph, imported.notes, imported.seconds
    start = time.perf_counter()
    fused, report = compile_graph(graph)
    compile_seconds = time.perf_counter() - start

    start = time.perf_counter()
    out_dir = Path(out_dir)
    warnings: list[str] = []

    files = write_directory(out_dir, partial(
        _write_products, products=[(RECONSTRUCT_PREFIX, graph), (FUSED_PREFIX, fused)], draw=draw))
    write_seconds = time.perf_counter() - start

    if draw and not dot_available():
        warnings.append("graphviz 'dot' not found: wrote .dot sources instead of PNGs "
                        "(install graphviz and rerun for the pictures)")
    outside = non_hardware_ops(fused)
    nodes_before, nodes_after = len(graph), len(fused)
    hist_before, hist_after = graph.op_histogram(), fused.op_histogram()
    del graph, fused, imported
    gc.collect()  # the IR's reference cycles would keep both models resident until then
    if outside:
        listed = ", ".join(f"{op} x{len(names)} ({', '.join(names[:3])})"
                           for op, names in sorted(outside.items()))
        warnings.append(f"ops outside the hardware op set remain in {FUSED_PREFIX}: {listed}")
    return CompileSummary(
        out_dir=out_dir, files=files, nodes_before=nodes_before, nodes_after=nodes_after,
        pass_counts=report.counts, import_seconds=import_seconds,
        compile_seconds=compile_seconds, write_seconds=write_seconds, notes=notes,
        warnings=warnings, op_histogram_before=hist_before, op_histogram_after=hist_after,
    )


def run(graph: Graph, inputs: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Run ``graph`` with the golden executor the way its source model runs: inputs are given
    and outputs returned in the source framework's layout (``graph.layouts``: NHWC for a Keras
    model), while the IR itself computes channels-first. A bare array feeds the only input."""
    import numpy as np

    from fc.ir.layout import to_ir_layout, to_source_layout
    from fc.np_ops import run as run_ir

    if isinstance(inputs, np.ndarray):
        if len(graph.inputs) != 1:
            raise FcError(f"graph has {len(graph.inputs)} inputs "
                          f"{[v.name for v in graph.inputs]}; pass a dict")
        inputs = {graph.inputs[0].name: inputs}
    return to_source_layout(graph, run_ir(graph, to_ir_layout(graph, inputs)))


def export_onnx(graph: Graph, path: str | os.PathLike) -> Any:
    """Write ``graph`` (either IR) as an ONNX model (``fcc export onnx``; ``fc.reconstruct.onnx``)."""
    from fc.reconstruct.onnx import export_onnx as _export

    return _export(graph, path)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in re.split(r"[,x]", text.strip()))
    except ValueError:
        raise FcError(f"bad shape {text!r}: expected integers like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise FcError(f"bad shape {text!r}: expected positive integers like 1,3,224,224")
    return dims


def parse_input_shapes(specs: Sequence[str] | None) -> InputShapes:
    """``["1,3,224,224"]`` -> a shape for the only input; ``["x=1,3,8,8", ...]`` -> a dict."""
    if not specs:
        return None
    named = [s for s in specs if "=" in s]
    if not named:
        if len(specs) > 1:
            raise FcError("several --input-shape values need names: NAME=1,3,224,224")
        return parse_shape(specs[0])
    if len(named) != len(specs):
        raise FcError("mix of named and unnamed --input-shape values; name them all")
    out = {}
    for s in specs:
        name, _, shape = s.partition("=")
        out[name] = parse_shape(shape)
    return out
