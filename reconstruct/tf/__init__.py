"""IR -> TensorFlow: a frozen GraphDef (.pb) and a trainable ``tf.Module``.

``freeze(graph)`` gives the frozen graph (``.save(path)`` writes the .pb, ``.run(feeds)`` runs
it through plain TensorFlow); ``TFModel(graph)`` the trainable form with one ``tf.Variable``
per IR weight and ``write_back()``. Lowerings live in ``LOWERINGS``, one per IR op, keyed by
op name; ``overrides={"Conv": fn}`` replaces one for a single reconstruction.
"""

from fc.errors import ReconstructError
from fc.reconstruct.tf.context import LowerContext, Lt, tf_name
from fc.reconstruct.tf.frozen import FrozenGraph, freeze, run_graph_def
from fc.reconstruct.tf.lower import check_lowerable, lower_graph
from fc.reconstruct.tf.registry import LOWERINGS
from fc.reconstruct.tf.trainable import TFModel, fit

__all__ = ["LOWERINGS", "Lt", "LowerContext", "ReconstructError", "FrozenGraph", "TFModel",
           "freeze", "fit", "run_graph_def", "check_lowerable", "lower_graph", "tf_name"]
