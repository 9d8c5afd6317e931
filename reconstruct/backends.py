"""The reconstructors fc has, one line each, and the check every one of them gets.

A backend turns an fc graph into a :class:`Reconstruction`: a model of another framework
that runs numpy inputs (by IR input name, in the IR's channels-first layout) to numpy outputs
(by IR output name, IR layout), can report
the IR values it computes on the way (for per-layer distances), and saves itself in that
framework's format. :func:`check` is what ``fcc reconstruct <backend>`` does: rebuild, run,
compare with a reference (a given output, else the golden executor) and save. ``check``
takes inputs and a reference in the source model's layout (``graph.layouts``, NHWC for a
Keras model) and converts them once.

Adding a reconstructor is one module implementing the protocol and one line in
``BACKENDS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph
from fc.reconstruct.compare import DEFAULT_TOL, LayerObserver, Report, compare_outputs

__all__ = ["Reconstruction", "BACKENDS", "get_backend", "check"]


class Reconstruction(Protocol):
    """A graph rebuilt in another framework."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs, by IR output name."""

    def intermediates(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every IR value the rebuilt model computes, by IR value name."""

    def save(self, path: str | os.PathLike, inputs: Mapping[str, np.ndarray]) -> list[Path]:
        """The framework's own model file (``--save_path``); ``inputs`` are example inputs."""

    def save_py(self, path: str | os.PathLike) -> list[Path]:
        """Standalone source defining the model, weights beside it (``--save_py``); raise
        ``ReconstructError`` if the backend cannot."""


Constructor = Callable[[Graph], Reconstruction]


def _torch() -> Constructor:
    from fc.reconstruct.torch.backend import TorchReconstruction

    return TorchReconstruction


def _tf() -> Constructor:
    from fc._tf import import_tf

    import_tf()
    from fc.reconstruct.tf.backend import TFReconstruction

    return TFReconstruction


#: backend name -> loader of its constructor (the framework is imported only when used, and
#: outside the timed reconstruction)
BACKENDS: dict[str, Callable[[], Constructor]] = {
    "torch": _torch,
    "tf": _tf,
}


def get_backend(name: str) -> Constructor:
    """The constructor ``graph -> Reconstruction`` of backend ``name``."""
    try:
        loader = BACKENDS[name]
    except KeyError:
        raise FcError(f"unknown reconstructor {name!r}; fc reconstructs into "
                      f"{', '.join(BACKENDS)}") from None
    return loader()


def check(backend: str, graph: Graph, inputs: Mapping[str, np.ndarray], *,
          reference: Mapping[str, np.ndarray] | None = None, reference_name: str = "",
          tol: float = DEFAULT_TOL, per_layer: bool = False,
          save_path: str | os.PathLike | None = None, save_py: str | os.PathLike | None = None
          ) -> tuple[Report, list[Path]]:
    """Rebuild ``graph`` with ``backend``, compare it, save what was asked; return the report
    and the files written. Every comparison happens before anything is written, and the
    saves are all or nothing, so a failure writes nothing."""
    from fc.ir.layout import to_ir_layout
    from fc.np_ops import run

    # users feed and compare in the source model's layout (NHWC for Keras); reconstructions
    # and the golden executor speak the IR's (distances do not depend on the axis order)
    inputs = to_ir_layout(graph, inputs)
    if reference is not None:
        reference = to_ir_layout(graph, reference)
    seconds: dict[str, float] = {}
    build = get_backend(backend)
    t = time.perf_counter()
    rec = build(graph)
    seconds["reconstruct"] = time.perf_counter() - t
    t = time.perf_counter()
    got = rec.run(inputs)
    seconds["run"] = time.perf_counter() - t
    layers = None
    observer = LayerObserver(rec.intermediates(inputs)) if per_layer else None
    if reference is None or per_layer:
        t = time.perf_counter()
        golden = run(graph, inputs, observer=observer)
        seconds["golden"] = time.perf_counter() - t
        if reference is None:
            reference, reference_name = golden, "golden executor"
    outputs = compare_outputs(got, reference)
    if observer is not None:
        layers = observer.layers
    report = Report(backend, graph.name, tol, outputs, reference=reference_name or "reference",
                    layers=layers, seconds=seconds, notes=list(getattr(rec, "notes", ())))
    written: list[Path] = []
    try:  # all or nothing: a failed second save removes the first one's files
        if save_path is not None:
            written += rec.save(save_path, inputs)
        if save_py is not None:
            written += rec.save_py(save_py)
    except BaseException:
        for p in written:
            Path(p).unlink(missing_ok=True)
        raise
    return report, written
