"""A model zoo of gluon image classifiers with seeded random weights, for tests and demos.

Nothing here downloads: every model is built from code (``mxnet.gluon.model_zoo.vision``
with ``pretrained=False``, or fc's own definitions such as :mod:`.resnetv1b` for the GluonCV
families) and filled with *random* weights drawn from a seed.  The weights are deliberately
non-trivial (BatchNorm is not the identity, biases are non-zero) so that numerical
comparisons against them are meaningful, and scaled (MSRA weights, BN statistics
calibrated then perturbed) so that activations stay O(1) through deep networks.

Names are matched leniently (:func:`canonical_name`): case, ``_``, ``-`` and ``.`` are
ignored, so ``ResNet50_V1B`` and ``resnet50v1b`` both mean ``resnet50_v1b``.

mxnet is imported lazily, so importing this package does not import mxnet.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from fc.errors import ImportError_
from fc.frontend.mxnet._mx import import_mxnet

__all__ = [
    "MODEL_NAMES",
    "canonical_name",
    "export_model",
    "get_model",
    "input_shape",
    "registry",
]


def _vision(name: str) -> Any:
    """Build ``name`` from mxnet's own zoo, without pretrained weights (no download)."""
    mx = import_mxnet()
    return mx.gluon.model_zoo.vision.get_model(name, pretrained=False)


def _resnetv1b(depth: int) -> Any:
    from . import resnetv1b

    return resnetv1b.build(depth)


_VISION_MODELS = (
    "resnet18_v1",
    "resnet34_v1",
    "resnet50_v1",
    "resnet18_v2",
    "resnet50_v2",
    "mobilenet1.0",
    "mobilenet0.5",
    "mobilenetv2_1.0",
    "mobilenetv2_0.5",
    "vgg16_bn",
    "squeezenet1.0",
    "squeezenet1.1",
    "densenet121",
    "inceptionv3",
)

#: canonical model name -> zero-argument constructor of the (uninitialized) gluon block;
#: ``_VISION_MODELS`` come from mxnet's own zoo, the ``resnet*_v1b`` from :mod:`.resnetv1b`
registry: dict[str, Callable[[], Any]] = {
    **{name: functools.partial(_vision, name) for name in _VISION_MODELS},
    **{f"resnet{d}_v1b": functools.partial(_resnetv1b, d) for d in (18, 34, 50, 101, 152)},
}

#: every canonical model name, sorted
MODEL_NAMES: tuple[str, ...] = tuple(sorted(registry))

_INPUT_SHAPES = {"inceptionv3": (1, 3, 299, 299)}
_DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c not in "_-.")


_BY_KEY = {_key(n): n for n in MODEL_NAMES}
assert len(_BY_KEY) == len(MODEL_NAMES), "two model names differ only in case or separators"


def canonical_name(name: str) -> str:
    """Map a leniently spelled model name to its canonical form, or raise ``ImportError_``.

    Case and the separators ``_``, ``-``, ``.`` are ignored: ``ResNet50_V1B``,
    ``resnet50v1b`` -> ``resnet50_v1b``; ``mobilenet1_0``, ``mobilenet10`` -> ``mobilenet1.0``.
    """
    if not isinstance(name, str):
        raise ImportError_(f"model name must be a string, got {type(name).__name__} {name!r}")
    found = _BY_KEY.get(_key(name))
    if found is not None:
        return found
    close = difflib.get_close_matches(_key(name), list(_BY_KEY), n=1, cutoff=0.5)
    hint = f" (did you mean {_BY_KEY[close[0]]!r}?)" if close else ""
    raise ImportError_(f"unknown model {name!r}{hint}; known models: {', '.join(MODEL_NAMES)}")


def input_shape(name: str) -> tuple[int, ...]:
    """NCHW input shape of model ``name`` (batch 1): 299x299 for inceptionv3, else 224x224."""
    return _INPUT_SHAPES.get(canonical_name(name), _DEFAULT_INPUT_SHAPE)


def _randomize_affine(net: Any, rng: np.random.Generator) -> None:
    """BN gamma ~ U(0.5, 1.5), BN beta and every bias ~ N(0, 0.1), in sorted name order.

    Fixed gamma/beta (a BN built with ``scale=False``/``center=False``, whose parameter has
    ``grad_req='null'``) keep their values: mxnet treats them as constants 1 and 0.
    """
    mx = import_mxnet()
    params = net.collect_params()
    for pname in sorted(params.keys()):
        param = params[pname]
        if param.grad_req == "null":
            continue
        if pname.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, param.shape)
        elif pname.endswith(("_beta", "_bias")):
            value = rng.normal(0.0, 0.1, param.shape)
        else:
            continue
        param.set_data(mx.nd.array(value, dtype=param.dtype))


def _batchnorms(block: Any, bn_type: type) -> list[Any]:
    found = [block] if isinstance(block, bn_type) else []
    for child in block._children.values():
        found += _batchnorms(child, bn_type)
    return found


def _calibrate_batchnorm(net: Any, probe: Any, rng: np.random.Generator) -> None:
    """Set every BN's running statistics to randomly perturbed statistics of its input.

    One imperative forward pass of ``probe``: a pre-hook on each BatchNorm measures the
    per-channel mean ``m`` and variance ``v`` of the BN's actual input (upstream BNs already
    calibrated) and sets ``running_mean = m + N(0, 0.1) * sqrt(v)`` and
    ``running_var = v * U(0.5, 1.5)``.  So BN nearly normalizes (activations stay O(1) even
    through residual sums over 50+ layers) without being the identity or exact.
    """
    mx = import_mxnet()

    def hook(bn: Any, args: tuple) -> None:
        x = args[0].asnumpy().astype(np.float64)
        axis = bn._kwargs["axis"] % x.ndim
        reduce = tuple(a for a in range(x.ndim) if a != axis)
        channels = x.shape[axis]
        if x.size // channels >= 2:
            mean, var = x.mean(axis=reduce), np.maximum(x.var(axis=reduce), 1e-2)
        else:  # nothing to measure: small random values around the identity
            mean, var = np.zeros(channels), np.ones(channels)
        running_mean = mean + rng.normal(0.0, 0.1, channels) * np.sqrt(var)
        running_var = var * rng.uniform(0.5, 1.5, channels)
        for param, value in ((bn.running_mean, running_mean), (bn.running_var, running_var)):
            param.set_data(mx.nd.array(value, dtype=param.dtype))

    batchnorms = _batchnorms(net, mx.gluon.nn.BatchNorm)
    handles = [bn.register_forward_pre_hook(hook) for bn in batchnorms]
    # The probe pass runs in float64: float32 sums depend on the CPU's BLAS kernel (AVX2 vs
    # AVX-512 orders them differently), so statistics measured in float32 -- and the weights
    # and IR files made from them -- would differ between machines in their last bits. In
    # float64 that noise is ~1e-16 and vanishes when the statistics are cast to float32.
    net.cast("float64")
    try:
        net(probe.astype("float64")).wait_to_read()
    finally:
        for handle in handles:
            handle.detach()
        net.cast("float32")


def get_model(name: str, *, seed: int = 0) -> Any:
    """Build model ``name`` with seeded random weights, hybridized and run once.

    * conv/dense weights: MSRA (Xavier, gaussian, fan-in, magnitude 2) under
      ``mx.random.seed(seed)``;
    * from ``numpy.random.default_rng(seed)``: BN gamma ~ U(0.5, 1.5), BN beta and biases
      ~ N(0, 0.1), and BN running statistics calibrated on a N(0, 1) probe input (in float64,
      so they do not depend on the machine's BLAS kernel) and then
      perturbed (mean + N(0, 0.1) std, var * U(0.5, 1.5); see :func:`_calibrate_batchnorm`).

    BN is therefore not the identity, yet activations stay O(1) through deep residual
    networks (uncalibrated random statistics let them grow ~2x per residual block).  The
    same seed gives identical weights.  Finally the block is hybridized and run on zeros of
    :func:`input_shape`, so every shape is known and it can be exported.
    """
    canonical = canonical_name(name)
    mx = import_mxnet()
    shape = input_shape(canonical)
    # A fresh NameManager makes auto-generated prefixes (e.g. ``resnetv10_``) independent of
    # whatever was built before in this process.
    with mx.name.NameManager():
        net = registry[canonical]()
    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=mx.cpu())
    zeros = mx.nd.zeros(shape)
    net(zeros).wait_to_read()  # imperative: completes deferred initialization
    _randomize_affine(net, rng)
    _calibrate_batchnorm(net, mx.nd.array(rng.standard_normal(shape), dtype="float32"), rng)
    net.hybridize()
    net(zeros).wait_to_read()
    return net


def export_model(name: str, out_prefix: str | os.PathLike, *, seed: int = 0) -> tuple[str, str]:
    """Write ``PREFIX-symbol.json`` and ``PREFIX-0000.params`` of :func:`get_model`'s network.

    Returns ``(symbol_path, params_path)``.  The parent directory is created if needed.
    """
    prefix = os.fspath(out_prefix)
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    net = get_model(name, seed=seed)
    net.export(prefix, epoch=0)
    sym_path, params_path = f"{prefix}-symbol.json", f"{prefix}-0000.params"
    for path in (sym_path, params_path):
        if not os.path.isfile(path):  # pragma: no cover - gluon's export contract
            raise ImportError_(f"{path}: gluon export of model {name!r} did not write it")
    return sym_path, params_path
