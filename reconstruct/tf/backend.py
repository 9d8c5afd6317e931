"""The TensorFlow reconstructor behind ``fcc reconstruct tf`` (``fc.reconstruct.backends``).

The backend protocol speaks the IR's layout (channels-first, by IR name); the frozen .pb
speaks the source model's (NHWC for a Keras model), so inputs and outputs are rearranged
here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fc._tf import import_tf
from fc.ir.core import Graph
from fc.ir.layout import to_ir_layout, to_source_layout
from fc.reconstruct.tf.frozen import ConstWeights, freeze, input_specs
from fc.reconstruct.tf.lower import lower_graph

__all__ = ["TFReconstruction"]


class TFReconstruction:
    """``graph`` as a frozen TensorFlow GraphDef (``self.frozen``)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.frozen = freeze(graph)

    @property
    def notes(self) -> list[str]:
        """What the command prints about the model: the .pb's tensor names and layouts."""
        g = self.graph
        ins = ", ".join(f"{t} ({g.layouts.get(n, 'IR layout')})"
                        for t, n in zip(self.frozen.inputs, self.frozen.ir_inputs))
        outs = ", ".join(f"{t} ({g.layouts.get(n, 'IR layout')})"
                         for t, n in zip(self.frozen.outputs, self.frozen.ir_outputs))
        return [f"tf graph inputs: {ins}", f"tf graph outputs: {outs}"]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = to_source_layout(self.graph, inputs)
        return to_ir_layout(self.graph, self.frozen.run(feeds))

    def intermediates(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every IR value, in the IR's layout, from a second trace of the graph that also
        returns them (the frozen .pb returns only the outputs)."""
        tf = import_tf()
        graph = self.graph
        names = [v.name for v in graph.inputs]

        def forward(*xs: Any) -> dict[str, Any]:
            _, collected = lower_graph(tf, graph, dict(zip(names, xs)), ConstWeights(tf),
                                       collect=True)
            return collected

        fn = tf.function(forward, autograph=False).get_concrete_function(*input_specs(tf, graph))
        feeds = to_source_layout(graph, inputs)
        out = fn(*[tf.constant(feeds[n]) for n in names])
        return {k: np.asarray(v) for k, v in out.items()}

    def save(self, path: str | os.PathLike, inputs: Mapping[str, np.ndarray]) -> list[Path]:
        self.frozen.save(path)
        return [Path(path)]

    def save_py(self, path: str | os.PathLike) -> list[Path]:
        from fc.errors import ReconstructError

        raise ReconstructError("the TensorFlow reconstructor writes a frozen .pb (--save_path), "
                               "not Python source")
