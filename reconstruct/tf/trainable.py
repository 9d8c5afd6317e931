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

__all__ = ["TFModel", "VariableWeights", "fit"]


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


def fit(model: TFModel, inputs: Sequence[np.ndarray], targets: np.ndarray, *, steps: int = 10,
        lr: float = 1e-2, loss: str = "mse", batch: int | None = None,
        progress: Any = None) -> list[float]:
    """Train ``model`` for ``steps`` SGD steps on ``inputs`` (in the source layout) against
    ``targets``: ``loss="mse"`` compares with target outputs, ``"crossentropy"`` takes integer
    class labels and the model's outputs as logits. ``batch`` samples are used per step, in
    order, wrapping around (default: all). ``progress(step, loss)`` is called after each
    step. Returns the loss before each step."""
    tf = model.tf
    n = len(targets)
    batch = batch or n
    opt = tf.keras.optimizers.SGD(lr)
    variables = model.trainable_variables
    if loss == "mse":
        def loss_fn(y: Any, t: Any) -> Any:
            return tf.reduce_mean(tf.square(y - t))
    elif loss == "crossentropy":
        def loss_fn(y: Any, t: Any) -> Any:
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(t, tf.int64), logits=tf.reshape(y, (tf.shape(y)[0], -1))))
    else:
        raise ReconstructError(f"loss {loss!r} is not 'mse' or 'crossentropy'")
    losses = []
    for step in range(steps):
        idx = np.arange(step * batch, step * batch + batch) % n
        xs = [tf.constant(x[idx]) for x in inputs]
        with tf.GradientTape() as tape:
            value = loss_fn(model(*xs), tf.constant(targets[idx]))
        opt.apply_gradients(zip(tape.gradient(value, variables), variables))
        losses.append(float(value))
        if progress is not None:
            progress(step, losses[-1])
    return losses
