"""The torch reconstructor behind ``fcc reconstruct torch`` (``fc.reconstruct.backends``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fc.ir.core import Graph
from fc.reconstruct.torch import export_program, reconstruct, run_intermediates, run_numpy, save_py

__all__ = ["TorchReconstruction"]


class TorchReconstruction:
    """``graph`` as an inference ``torch.fx.GraphModule`` (``self.module``)."""

    def __init__(self, graph: Graph):
        self.module = reconstruct(graph)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_numpy(self.module, inputs)

    def intermediates(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_intermediates(self.module, inputs)

    def save(self, path: str | os.PathLike, inputs: Mapping[str, np.ndarray]) -> list[Path]:
        export_program(self.module, inputs, path)
        return [Path(path)]

    def save_py(self, path: str | os.PathLike) -> list[Path]:
        return list(save_py(self.module, path))
