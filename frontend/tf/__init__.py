"""The TensorFlow frontend: Keras models and files, SavedModels and frozen GraphDefs into
fc's IR (``import_tf``); one op table over GraphDef nodes serves all three."""

from fc.frontend.tf.importer import CONTROL_FLOW, import_frozen, import_tf
from fc.frontend.tf.load import FrozenModel, freeze_keras, load_source
from fc.frontend.tf.registry import CONVERTERS, converter

__all__ = ["import_tf", "import_frozen", "load_source", "freeze_keras", "FrozenModel",
           "CONVERTERS", "converter", "CONTROL_FLOW"]
