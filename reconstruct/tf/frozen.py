"""IR -> a frozen TensorFlow GraphDef (.pb): TF1's deployment format, readable by any
TensorFlow with ``tf.compat.v1.GraphDef`` + ``import_graph_def``.

The IR is lowered straight into a TF1-style ``tf.Graph`` with its weights as constants (already
in TF's arrangement): that graph *is* the frozen GraphDef, with no function to trace and no
variables to convert (``convert_variables_to_constants_v2`` took 5 of ResNet-50's 7 s to
inline and prune a function that held only constants). A trained ``tf.Module``
(:mod:`fc.reconstruct.tf.trainable`) still freezes its concrete function with
``convert_variables_to_constants_v2`` (:func:`freeze_concrete`). The .pb's
input placeholders and output nodes are named after the IR's inputs and outputs, and take
and return the source model's layout (NHWC for a Keras model); the batch dim is left open,
as the IR's is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fc._tf import import_tf
from fc.errors import ReconstructError
from fc.ir.core import Graph
from fc.reconstruct.tf.context import tf_name
from fc.reconstruct.tf.lower import Overrides, boundary_perm, check_lowerable, lower_graph

__all__ = ["FrozenGraph", "ConstWeights", "freeze", "freeze_concrete", "input_specs",
           "run_graph_def"]


class ConstWeights:
    """Weights as TF constants, each arrangement made once per trace."""

    def __init__(self, tf: Any):
        self.tf = tf
        self._cache: dict[tuple[str, tuple[int, ...], tuple[int, ...]], Any] = {}

    def get(self, name: str, array: np.ndarray, perm: tuple[int, ...], shape: tuple[int, ...],
            *, trainable: bool) -> Any:
        key = (name, perm, shape)
        t = self._cache.get(key)
        if t is None:
            arr = np.ascontiguousarray(np.transpose(array, perm).reshape(shape))
            t = self.tf.constant(arr, name=tf_name(name))
            self._cache[key] = t
        return t


def input_specs(tf: Any, graph: Graph) -> list[Any]:
    """One ``tf.TensorSpec`` per graph input, in the boundary layout, batch dim open."""
    specs = []
    for v in graph.inputs:
        perm = boundary_perm(graph, v.name, len(v.shape))
        shape: list[int | None] = [v.shape[p] for p in perm]
        if shape:
            shape[perm.index(0)] = None
        specs.append(tf.TensorSpec(shape, tf.as_dtype(np.dtype(v.dtype)), name=tf_name(v.name)))
    return specs


@dataclass
class FrozenGraph:
    """A frozen GraphDef and the names of its input and output tensors (``"data:0"``), in
    the IR's input and output order."""

    graph_def: Any
    inputs: list[str]
    outputs: list[str]
    #: the IR names of the outputs, in order
    ir_outputs: list[str] = field(default_factory=list)
    #: the IR names of the inputs, in order
    ir_inputs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def serialize(self) -> bytes:
        return self.graph_def.SerializeToString(deterministic=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write the .pb atomically (a failure leaves no partial file)."""
        from fc.ir.serialize import atomic_write

        data = self.serialize()
        with atomic_write(path) as f:
            f.write(data)

    def run(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray], *,
            optimize: bool = True) -> dict[str, np.ndarray]:
        """Outputs by IR name, from inputs (by IR name, or in order) in the boundary layout
        (``optimize``: see :func:`run_graph_def`)."""
        if isinstance(feeds, Mapping):
            missing = [n for n in self.ir_inputs if n not in feeds]
            if missing:
                raise ReconstructError(f"frozen graph: missing input(s) {missing}")
            arrays = [feeds[n] for n in self.ir_inputs]
        else:
            arrays = list(feeds)
        got = run_graph_def(self.graph_def, self.inputs, self.outputs, arrays, optimize=optimize)
        return dict(zip(self.ir_outputs, got))


def run_graph_def(graph_def: Any, inputs: Sequence[str], outputs: Sequence[str],
                  arrays: Sequence[np.ndarray], *, optimize: bool = True) -> list[np.ndarray]:
    """Run a GraphDef as a TF1 deployment does: import it into a ``tf.Graph`` and run a
    ``tf.compat.v1.Session`` on it, with grappler's rewrites (TF's default) unless not
    ``optimize``. A Session rather than ``wrap_function`` + ``prune``, which turns the graph
    into a function and keeps more copies of its constants: VGG-19's 575 MB .pb peaks at
    11.1 GB that way, 7.9 GB in a Session. Grappler's optimizers copy the graph again and
    again (3.7 GB without them): ``optimize=False`` is for a check of the lowering's
    semantics on a large graph (e.g. its float64 form), not for the fp32 numbers, which are
    the ones TF's rewritten graph (remapper fusions, oneDNN kernels) gives."""
    tf = import_tf()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto()
    if not optimize:
        config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        got = sess.run(list(outputs), dict(zip(inputs, arrays)))
    return [np.asarray(t) for t in got]


def _free_name(wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``wanted_1``, ``wanted_2``, ... : the first not in ``taken``."""
    name, i = wanted, 0
    while name in taken:
        i += 1
        name = f"{wanted}_{i}"
    return name


def freeze_concrete(concrete: Any, graph: Graph) -> FrozenGraph:
    """Freeze a concrete function of ``graph`` (variables become constants) and name its
    output nodes after the IR's outputs."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(concrete)
    gd = frozen.graph.as_graph_def()
    taken = {n.name for n in gd.node}
    by_name = {n.name: n for n in gd.node}
    outputs = []
    for t, v in zip(frozen.outputs, graph.outputs):
        node = by_name[t.name.split(":")[0]]
        taken.discard(node.name)
        name = _free_name(tf_name(v.name), taken)
        taken.add(name)
        # outputs are Identity nodes nothing else reads, so renaming needs no rewiring
        node.name = name
        outputs.append(f"{name}:0")
    inputs = [t.name for t in frozen.inputs]
    return FrozenGraph(gd, inputs, outputs, [v.name for v in graph.outputs],
                       [v.name for v in graph.inputs])


def freeze(graph: Graph, *, overrides: Overrides | None = None) -> FrozenGraph:
    """The frozen TensorFlow graph of ``graph`` (see the module docstring)."""
    start = time.perf_counter()
    tf = import_tf()
    check_lowerable(graph, overrides)
    names = [v.name for v in graph.inputs]
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        xs = [tf.compat.v1.placeholder(spec.dtype, spec.shape, name=spec.name)
              for spec in input_specs(tf, graph)]
        outputs, _ = lower_graph(tf, graph, dict(zip(names, xs)), ConstWeights(tf),
                                 overrides=overrides)
        # outputs named after the IR's, as a frozen concrete function's are (freeze_concrete)
        taken = {op.name for op in tf_graph.get_operations()}
        out_names = []
        for t, v in zip(outputs, graph.outputs):
            name = _free_name(tf_name(v.name), taken)
            taken.add(name)
            out_names.append(tf.identity(t, name=name).name)
    result = FrozenGraph(tf_graph.as_graph_def(), [x.name for x in xs], out_names,
                         [v.name for v in graph.outputs], names)
    result.seconds = time.perf_counter() - start
    return result
