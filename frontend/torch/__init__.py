"""PyTorch frontend: ``torch.export`` -> Core ATen (minus a documented subset) -> fc IR.

Sources, all into the same IR (:func:`import_torch`):

* a live ``nn.Module`` with example inputs (the library API);
* a ``.pt2`` file written by ``torch.export.save`` (read without unpickling anything:
  ``fc.frontend.torch.pt2``);
* ``"package.module:factory"``, a callable returning a module (shapes from
  ``input_shapes``);
* a name from fc's own torch zoo (``fc.zoo.torch.ZOO``: ``"resnet50"``), seeded weights.

Weights keep their state-dict names (``layer1.0.conv1.weight``); every node's provenance is
the module path it came from (``layer2.1.conv2``). See ``export.py`` for the batch handling
and the ops kept whole, ``ops_*.py`` for the converters (``fc.frontend.registry``).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fc.errors import ImportError_
from fc.ir.core import Graph

__all__ = ["import_torch", "TorchImport", "load_source"]


@dataclass
class TorchImport:
    """The imported graph, notes for the user, and where the time went."""

    graph: Graph
    notes: list[str] = field(default_factory=list)
    #: "export", "decompose", "convert" (fc's own conversion) in seconds
    seconds: dict[str, float] = field(default_factory=dict)


InputShapes = Sequence[Sequence[int]] | Sequence[int] | dict[str, Sequence[int]] | None


def _shape_list(input_shapes: InputShapes) -> list[tuple[int, ...]] | None:
    if input_shapes is None:
        return None
    if isinstance(input_shapes, dict):
        return [tuple(int(d) for d in s) for s in input_shapes.values()]
    items = list(input_shapes)
    if items and all(isinstance(d, int) for d in items):
        return [tuple(int(d) for d in items)]
    return [tuple(int(d) for d in s) for s in items]


def load_source(model: Any, *, input_shapes: InputShapes = None, seed: int = 0
                ) -> tuple[Any, list[Any] | None, list[tuple[int, ...]] | None, str]:
    """(module or ExportedProgram, example inputs or None, IR input shapes or None, name for
    messages) for any of the sources in the module docstring."""
    import torch

    shapes = _shape_list(input_shapes)
    if isinstance(model, torch.nn.Module):
        return model, None, shapes, type(model).__name__
    if isinstance(model, torch.export.ExportedProgram):
        return model, None, shapes, "ExportedProgram"
    if not isinstance(model, str | os.PathLike):
        raise ImportError_(f"import_torch: expected an nn.Module, ExportedProgram, .pt2 path, "
                           f"'module:factory' or zoo name, got {type(model).__name__}")
    text = os.fspath(model)
    if text.endswith(".pt2") or Path(text).is_file():
        from fc.frontend.torch.pt2 import load_pt2

        return load_pt2(text), None, shapes, text
    from fc.zoo.torch import ZOO

    if text in ZOO:
        build, default = ZOO[text]
        return build(seed=seed), None, shapes or [default], text
    if ":" in text:
        return _factory(text), None, shapes, text
    raise ImportError_(f"{text}: not a .pt2 file, a 'package.module:factory' or a torch zoo "
                       f"model (fc's torch zoo: {', '.join(ZOO)})")


def _factory(spec: str) -> Any:
    import torch

    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:
        raise ImportError_(f"{spec}: cannot import module {mod_name!r} ({type(e).__name__}: "
                           f"{e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ImportError_(f"{spec}: {mod_name!r} has no callable {attr!r}")
    try:
        built = fn()
    except Exception as e:
        raise ImportError_(f"{spec}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(built, torch.nn.Module):
        raise ImportError_(f"{spec}: the factory returned a {type(built).__name__}, not an "
                           "nn.Module")
    return built


def _user_input_shapes(program: Any) -> list[tuple[int, ...]]:
    """A program's input shapes with a symbolic batch read as 1."""
    from torch.export.graph_signature import InputKind

    user = {s.arg.name for s in program.graph_signature.input_specs
            if s.kind == InputKind.USER_INPUT}
    shapes = []
    for n in program.graph.nodes:
        if n.op == "placeholder" and n.name in user:
            val = n.meta.get("val")
            dims = []
            for i, d in enumerate(getattr(val, "shape", ())):
                if isinstance(d, int):
                    dims.append(d)
                elif i == 0:
                    dims.append(1)
                else:
                    raise ImportError_(f"input {n.name!r} has a symbolic dim {i} ({d}); pass "
                                       "input shapes")
            shapes.append(tuple(dims))
    return shapes


def import_torch(model: Any, example_inputs: Sequence[Any] | None = None, *,
                 input_shapes: InputShapes = None, name: str | None = None,
                 seed: int = 0) -> TorchImport:
    """The IR "for reconstruct" of a torch model (see the module docstring for ``model``).

    A module needs ``example_inputs`` or ``input_shapes`` (random inputs of those shapes
    are traced); the IR's inputs get the example inputs' shapes.
    """
    import torch

    from fc.frontend.torch.export import decompose, trace
    from fc.frontend.torch.importer import import_program

    obj, examples, shapes, source = load_source(model, input_shapes=input_shapes, seed=seed)
    if example_inputs is not None:
        examples = [x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
                    for x in example_inputs]
    notes: list[str] = []
    seconds: dict[str, float] = {}
    if isinstance(obj, torch.nn.Module):
        if examples is None:
            if shapes is None:
                raise ImportError_(f"{source}: give example inputs or input shapes "
                                   "(--input-shape 1,3,224,224)")
            gen = torch.Generator().manual_seed(seed)
            examples = [torch.randn(s, generator=gen) for s in shapes]
        traced = trace(obj, examples, source=source)
        program, notes, seconds = traced.program, traced.notes, dict(traced.seconds)
        ir_shapes = shapes or traced.input_shapes
        graph_name = name or type(obj).__name__.lower()
    else:
        program = obj
        ir_shapes = shapes or _user_input_shapes(program)
        graph_name = name or (Path(source).stem if source.endswith(".pt2") else "exported")
    start = time.perf_counter()
    program = decompose(program, source=source)
    seconds["decompose"] = time.perf_counter() - start
    start = time.perf_counter()
    graph = import_program(program, ir_shapes, source=source, name=graph_name)
    seconds["convert"] = time.perf_counter() - start
    return TorchImport(graph, notes, seconds)
