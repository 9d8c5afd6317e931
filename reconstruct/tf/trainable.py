"""The trainable TensorFlow form of an IR: a ``tf.Module`` whose ``tf.Variable``s are the IR's
weights, named after them, with trained values written back into the IR.

Each weight is stored as the variable in the arrangement its layer wants (a Conv kernel
HWIO, as Keras stores it); :meth:`TFModel.write_back` undoes the arrangement, so the IR gets
OIHW again. Batch normalization runs in inference form (the IR for reconstruct is an
inference graph): its scale and offset train, its running statistics are variables that do
not (``trainable=False``), as in a Keras model fine-tuned with frozen statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fc._tf import import_tf
from fc.errors import ReconstructError
from fc.ir.clone import clone
from fc.ir.core import Graph
from fc.reconstruct.tf.context import inverse, tf_name
from fc.reconstruct.tf.frozen import FrozenGraph, freeze_concrete, input_specs
from fc.reconstruct.tf.lower import Overrides, check_lowerable, lower_graph

__all__ = ["TFModel", "VariableWeights"]


class VariableWeights:
    """Weights as ``tf.Variable``s, created (eagerly, in ``tf.init_scope``) on first use.

    A weight asked for in a second arrangement (two layers sharing it) is derived in the
    graph from its one variable, so gradients of both uses reach it.
    """

    def __init__(self, tf: Any):
        self.tf = tf
        #: IR weight name -> variable
        self.variables: dict[str, Any] = {}
        # IR weight name -> (perm, shape of the array that was permuted, stored shape)
        self._layouts: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def get(self, name: str, array: np.ndarray, perm: tuple[int, ...], shape: tuple[int, ...],
            *, trainable: bool) -> Any:
        tf = self.tf
        var = self.variables.get(name)
        if var is None:
            arr = np.ascontiguousarray(np.transpose(array, perm).reshape(shape))
            # created eagerly, outside the trace and its node's name scope: the variable is
            # named after the IR weight alone
            with tf.init_scope(), tf.compat.v1.name_scope(None):
                var = tf.Variable(arr, name=tf_name(name), trainable=trainable)
            self.variables[name] = var
            self._layouts[name] = (perm, tuple(array.shape), shape)
            return var
        p0, given0, _ = self._layouts[name]
        if (perm, tuple(array.shape), shape) == self._layouts[name]:
            return var
        ir = tf.transpose(tf.reshape(var, [given0[p] for p in p0]), inverse(p0))
        return tf.reshape(tf.transpose(tf.reshape(ir, array.shape), perm), shape)

    def ir_array(self, name: str, ir_shape: Sequence[int]) -> np.ndarray:
        """The variable's current value in the IR's shape and axis order."""
        p0, given0, _ = self._layouts[name]
        arr = self.variables[name].numpy().reshape([given0[p] for p in p0])
        return np.ascontiguousarray(arr.transpose(inverse(p0)).reshape(ir_shape))


class TFModel:
    """``graph`` as a trainable TensorFlow model.

    ``model(*inputs)`` takes and returns tensors in the source layout (as the frozen .pb);
    ``model.module`` is the ``tf.Module`` holding the variables (``module.weights``, a dict
    keyed by IR weight name) and the traced ``module.forward``, e.g. for
    ``tf.saved_model.save``.
    """

    def __init__(self, graph: Graph, *, overrides: Overrides | None = None):
        tf = import_tf()
        check_lowerable(graph, overrides)
        self.tf = tf
        self.graph = graph
        self._weights = VariableWeights(tf)
        names = [v.name for v in graph.inputs]

        def forward(*xs: Any) -> list[Any]:
            outputs, _ = lower_graph(tf, graph, dict(zip(names, xs)), self._weights,
                                     overrides=overrides)
            return outputs

        self.module = tf.Module(name=tf_name(graph.name).replace("/", "_").replace("-", "_")
                                .replace(".", "_"))
        self.module.forward = tf.function(forward, input_signature=input_specs(tf, graph),
                                          autograph=False)
        self._concrete = self.module.forward.get_concrete_function()  # creates the variables
        self.module.weights = self._weights.variables

    def __call__(self, *inputs: Any) -> Any:
        """The outputs (one tensor for a one-output graph, else a list)."""
        outs = self.module.forward(*inputs)
        return outs[0] if len(outs) == 1 else list(outs)

    @property
    def trainable_variables(self) -> tuple[Any, ...]:
        return tuple(v for v in self._weights.variables.values() if v.trainable)

    @property
    def variables(self) -> dict[str, Any]:
        """IR weight name -> ``tf.Variable``."""
        return dict(self._weights.variables)

    def write_back(self) -> Graph:
        """A copy of the IR whose weights are the variables' current values."""
        g = clone(self.graph)
        for name, v in g.initializers.items():
            if name not in self._weights.variables:
                continue  # a weight no lowering read as a tensor (e.g. Gather's indices)
            arr = self._weights.ir_array(name, v.shape)
            if arr.dtype.name != v.dtype:
                raise ReconstructError(f"weight {name!r}: the variable is {arr.dtype.name}, the IR "
                                       f"weight {v.dtype}")
            v.const = arr
        return g

    def freeze(self) -> FrozenGraph:
        """The frozen .pb of the model as trained so far."""
        return freeze_concrete(self._concrete, self.graph)
