"""Keras image classifiers with seeded random weights, for tests and demos (``fcc compile tf
resnet50``). Nothing downloads: ``keras.applications`` builds each with ``weights=None``.

Keras initialises batch norm to the identity (mean 0, variance 1, gamma 1, beta 0) and biases
to zero, which would hide half of a converter's mistakes. So, from the seed, every bias gets
N(0, 0.1), every gamma U(0.5, 1.5) and beta N(0, 0.1); then the running statistics are
*calibrated*: with momentum 0 (and dropout off), one training-mode pass over a seeded batch
stores each batch norm's batch statistics, so activations stay O(1) through a deep network; finally mean and
variance are perturbed (mean + N(0, 0.1)·std, variance · U(0.8, 1.25)) so inference is not
exactly the batch normalization.

Names are matched leniently: case, ``_`` and ``-`` are ignored (``ResNet50`` =
``resnet50``, ``MobileNetV2`` = ``mobilenet_v2``).
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from fc.errors import ImportError_

__all__ = ["MODEL_NAMES", "canonical_name", "get_model", "input_shape", "randomize",
           "sample_input"]

#: canonical name -> (keras.applications constructor, default NHWC input shape)
_MODELS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "resnet50": ("ResNet50", (224, 224, 3)),
    "mobilenet_v2": ("MobileNetV2", (224, 224, 3)),
    "mobilenet_v3_small": ("MobileNetV3Small", (224, 224, 3)),
    "densenet121": ("DenseNet121", (224, 224, 3)),
    "efficientnet_b0": ("EfficientNetB0", (224, 224, 3)),
    "inception_v3": ("InceptionV3", (299, 299, 3)),
    "vgg16": ("VGG16", (224, 224, 3)),
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_MODELS))
# models that rescale raw pixels themselves (a Rescaling layer inside): they are fed [0, 255]
_PIXEL_INPUT = frozenset({"efficientnet_b0", "mobilenet_v3_small"})


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def canonical_name(name: str) -> str | None:
    """The zoo's name for ``name`` (``"ResNet50"`` -> ``"resnet50"``), or ``None``."""
    by_key = {_key(n): n for n in _MODELS}
    return by_key.get(_key(name))


def input_shape(name: str) -> tuple[int, int, int, int]:
    """The default NHWC input shape of zoo model ``name``, batch 1."""
    return (1, *_MODELS[_require(name)][1])


def _require(name: str) -> str:
    found = canonical_name(name)
    if found is None:
        close = difflib.get_close_matches(name.lower(), MODEL_NAMES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ImportError_(f"unknown TensorFlow zoo model {name!r} (fc's Keras zoo has "
                           f"{', '.join(MODEL_NAMES)}){hint}")
    return found


def sample_input(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A seeded input of the kind model ``name`` expects: raw pixels U(0, 255) for models
    that rescale them themselves (EfficientNet, MobileNetV3), else N(0, 1). (Feeding N(0, 1)
    to a model that divides by 255 first makes its images nearly constant, and the batch norms
    calibrated on them then amplify float32 rounding a thousandfold.)"""
    rng = np.random.default_rng(seed)
    if _require(name) in _PIXEL_INPUT:
        return rng.uniform(0, 255, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def get_model(name: str, *, seed: int = 0, input_shape: tuple[int, int, int] | None = None,
              classes: int = 1000, logits: bool = False) -> Any:
    """``keras.applications.<Model>(weights=None)`` with seeded, non-trivial weights
    (see the module docstring). ``input_shape`` is NHWC without the batch; ``logits`` leaves
    out the final softmax (``classifier_activation=None``)."""
    from fc._tf import import_tf

    import_tf()
    import keras

    ctor, default = _MODELS[_require(name)]
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, ctor)(
        weights=None, input_shape=input_shape or default, classes=classes,
        classifier_activation=None if logits else "softmax")
    shape = (8, *model.inputs[0].shape[1:])
    randomize(model, seed, sample_input(name, shape, seed + 1))
    return model


def randomize(model: Any, seed: int = 0, batch: np.ndarray | None = None) -> Any:
    """Make biases and batch norms of ``model`` non-trivial, then calibrate the statistics
    (see the module docstring) on ``batch`` (default: 8 N(0, 1) inputs). Returns ``model``."""
    import keras

    rng = np.random.default_rng(seed)
    bns, drops = [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dropout):
            drops.append(layer)  # (a training-mode pass must not drop: it calibrates)
        elif isinstance(layer, keras.layers.BatchNormalization):
            bns.append(layer)
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape).astype(np.float32))
        elif getattr(layer, "bias", None) is not None and getattr(layer, "use_bias", False):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    if bns:
        if batch is None:
            batch = rng.standard_normal((8, *model.inputs[0].shape[1:])).astype(np.float32)
        momenta, rates = [bn.momentum for bn in bns], [d.rate for d in drops]
        for bn in bns:
            bn.momentum = 0.0
        for d in drops:
            d.rate = 0.0
        model(batch, training=True)  # stores every batch norm's batch statistics
        for d, rate in zip(drops, rates):
            d.rate = rate
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
            mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
            # a channel nearly constant on the calibration batch would amplify any other
            # input without bound: floor its variance at a tenth of the layer's mean
            var = np.maximum(var, 0.1 * var.mean())
            std = np.sqrt(var + bn.epsilon)
            bn.moving_mean.assign((mean + rng.normal(0, 0.1, mean.shape) * std).astype(np.float32))
            bn.moving_variance.assign((var * rng.uniform(0.8, 1.25, var.shape)).astype(np.float32))
    return model
