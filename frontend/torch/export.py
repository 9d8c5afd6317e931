"""From a live ``nn.Module`` to the ATen graph fc converts: ``torch.export`` in eval mode, then
``run_decompositions`` to Core ATen minus a documented subset of ops kept whole.

Batch: the module is exported with a symbolic batch dim (one ``Dim("batch")`` shared by
every input), traced at batch 2 because torch specializes size-1 dims. Shapes that follow
the batch then appear as ``sym_size(x, 0)`` in view/expand arguments, which fc turns into
its batch convention (Reshape's ``0``), so the IR runs at any batch. A model that fixes its
batch (e.g. ``x.view(1, -1)``) is exported again at the given shapes, with a note.

Kept whole (not decomposed), because fc's IR has the op itself and a decomposition would
need pattern matching to rebuild it: ``linear`` (a Gemm, with the weight in torch's
layout), ``matmul``, ``max_pool2d`` (without the indices output), ``hardswish``,
``hardsigmoid``, ``silu``, ``prelu``, ``pixel_shuffle`` and the reflection/replication pads
(whose decompositions gather with computed indices).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.export import Dim, ExportedProgram

from fc.errors import ImportError_

__all__ = ["KEPT_OPS", "Traced", "trace", "decompose"]

_A = torch.ops.aten
#: ATen ops fc converts whole instead of through their Core ATen decomposition
KEPT_OPS = (_A.linear.default, _A.matmul.default, _A.max_pool2d.default, _A.hardswish.default,
            _A.hardsigmoid.default, _A.silu.default, _A.prelu.default, _A.pixel_shuffle.default,
            _A.reflection_pad1d.default, _A.reflection_pad2d.default,
            _A.replication_pad1d.default, _A.replication_pad2d.default)


@dataclass
class Traced:
    """An exported (not yet decomposed) program and how it was obtained."""

    program: ExportedProgram
    #: the IR's input shapes (the caller's batch, not the tracing batch)
    input_shapes: list[tuple[int, ...]]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(e).__name__


def trace(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], *, source: str
          ) -> Traced:
    """``torch.export.export`` of ``module`` in eval mode at ``example_inputs``' shapes."""
    notes: list[str] = []
    was_training = module.training
    if was_training:
        notes.append(f"{source}: the model was in train mode; it is imported in eval mode "
                     "(BatchNorm uses its running statistics, Dropout is off)")
    inputs = tuple(example_inputs)
    shapes = [tuple(int(d) for d in x.shape) for x in inputs]
    batch = Dim("batch", min=1)
    # torch specializes size-1 dims: trace a batch of 2 (the same rows repeated)
    wide = tuple(torch.cat([x, x]) if x.dim() and x.shape[0] == 1 else x for x in inputs)
    dynamic = [{0: batch} if x.dim() else None for x in wide]
    module.eval()
    start = time.perf_counter()
    try:
        try:
            program = torch.export.export(module, wide, dynamic_shapes=tuple(dynamic))
        except Exception as dyn_error:  # the model fixes its batch, or cannot be traced at all
            try:
                program = torch.export.export(module, inputs)
            except Exception as e:
                raise ImportError_(f"{source}: torch.export cannot trace the model: "
                                   f"{type(e).__name__}: {_first_line(e)}") from e
            notes.append(f"{source}: the model does not export with a symbolic batch "
                         f"({_first_line(dyn_error)[:120]}); the IR runs at batch "
                         f"{shapes[0][0] if shapes and shapes[0] else 1} only")
    finally:
        module.train(was_training)
    return Traced(program, shapes, notes, {"export": time.perf_counter() - start})


def decompose(program: ExportedProgram, *, source: str) -> ExportedProgram:
    """Core ATen, except ``KEPT_OPS``."""
    table = torch.export.default_decompositions()
    for op in KEPT_OPS:
        table.pop(op, None)
    try:
        return program.run_decompositions(table)
    except Exception as e:
        raise ImportError_(f"{source}: torch.export decompositions failed: {type(e).__name__}: "
                           f"{_first_line(e)}") from e
