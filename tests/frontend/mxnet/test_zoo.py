"""Tests of fc.zoo.mxnet: names, seeded random models, GluonCV names, export."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import fc.zoo.mxnet as zoo
from fc.errors import ImportError_
from fc.frontend.mxnet._mx import import_mxnet

mx = import_mxnet()

FAST_MODELS = {"resnet18_v1", "resnet50_v1b"}
REQUIRED_MODELS = {
    "resnet18_v1",
    "resnet50_v1",
    "resnet50_v1b",
    "resnet50_v2",
    "mobilenet1.0",
    "mobilenetv2_1.0",
    "vgg16_bn",
    "squeezenet1.0",
    "densenet121",
    "inceptionv3",
}


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("resnet50_v1b", "resnet50_v1b", id="canonical"),
        pytest.param("resnet50v1b", "resnet50_v1b", id="no-underscore"),
        pytest.param("ResNet50_V1B", "resnet50_v1b", id="mixed-case"),
        pytest.param("resnet-50-v1b", "resnet50_v1b", id="dashes"),
        pytest.param("RESNET18_V1", "resnet18_v1", id="upper"),
        pytest.param("resnet50v1", "resnet50_v1", id="v1-not-v1b"),
        pytest.param("mobilenet1.0", "mobilenet1.0", id="mobilenet-dot"),
        pytest.param("mobilenet1_0", "mobilenet1.0", id="mobilenet-underscore"),
        pytest.param("mobilenet10", "mobilenet1.0", id="mobilenet-bare"),
        pytest.param("MobileNetV2_1.0", "mobilenetv2_1.0", id="mobilenetv2"),
        pytest.param("vgg16bn", "vgg16_bn", id="vgg16bn"),
        pytest.param("squeezenet1_0", "squeezenet1.0", id="squeezenet"),
        pytest.param("DenseNet121", "densenet121", id="densenet"),
        pytest.param("Inception_V3", "inceptionv3", id="inception"),
    ],
)
def test_canonical_name(given: str, expected: str) -> None:
    assert zoo.canonical_name(given) == expected


def test_model_names_cover_required_models() -> None:
    assert REQUIRED_MODELS <= set(zoo.MODEL_NAMES)
    assert set(zoo.MODEL_NAMES) == set(zoo.registry)
    assert all(zoo.canonical_name(n) == n for n in zoo.MODEL_NAMES)


def test_unknown_name_lists_known_and_suggests_closest() -> None:
    with pytest.raises(ImportError_) as info:
        zoo.canonical_name("resnet5O_v1b")  # letter O, not zero
    message = str(info.value)
    assert "\n" not in message
    assert "'resnet5O_v1b'" in message
    assert "did you mean 'resnet50_v1b'?" in message
    assert all(name in message for name in zoo.MODEL_NAMES)


def test_unknown_name_rejected_by_every_entry_point(tmp_path) -> None:
    for call in (
        lambda: zoo.get_model("no_such_net"),
        lambda: zoo.input_shape("no_such_net"),
        lambda: zoo.export_model("no_such_net", tmp_path / "x"),
    ):
        with pytest.raises(ImportError_, match="unknown model 'no_such_net'"):
            call()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        pytest.param("resnet50_v1b", (1, 3, 224, 224), id="resnet50_v1b"),
        pytest.param("Inception-V3", (1, 3, 299, 299), id="inceptionv3"),
    ],
)
def test_input_shape(name: str, shape: tuple[int, ...]) -> None:
    assert zoo.input_shape(name) == shape


def test_import_does_not_import_mxnet() -> None:
    code = "import sys, fc.zoo.mxnet; assert 'mxnet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- every model


def _params(net) -> dict[str, np.ndarray]:
    return {k: v.data().asnumpy() for k, v in net.collect_params().items()}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(n, id=n, marks=() if n in FAST_MODELS else pytest.mark.slow) for n in zoo.MODEL_NAMES
    ],
)
def built(request):
    """(name, seed-0 model); module scope groups each model's tests around one build."""
    return request.param, zoo.get_model(request.param, seed=0)


def test_model_forward(built) -> None:
    name, net = built
    assert isinstance(net, mx.gluon.HybridBlock)
    x = np.random.default_rng(1).standard_normal(zoo.input_shape(name)).astype(np.float32)
    out = net(mx.nd.array(x)).asnumpy()
    assert out.shape == (1, 1000)
    assert np.isfinite(out).all()
    # scaled weights + calibrated BN: activations stay O(1) even 150 layers deep
    assert 1e-2 < out.std() < 1e2


def test_model_seeded_determinism(built) -> None:
    name, net = built
    reference = _params(net)
    again = _params(zoo.get_model(name, seed=0))
    assert again.keys() == reference.keys()  # prefixes do not depend on earlier builds
    for key, value in reference.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    other = _params(zoo.get_model(name, seed=1))
    assert other.keys() == reference.keys()
    weights = [k for k in reference if k.endswith("_weight")]
    assert weights and all(not np.array_equal(other[k], reference[k]) for k in weights)
    # BN is not the identity: random gamma (unless fixed by scale=False) and statistics
    fixed = {k for k, p in net.collect_params().items() if p.grad_req == "null"}
    for suffix in ("_gamma", "_running_mean", "_running_var"):
        for key in (k for k in reference if k.endswith(suffix)):
            if suffix == "_gamma" and key in fixed:
                np.testing.assert_array_equal(reference[key], 1.0, err_msg=key)
            else:
                assert np.ptp(reference[key]) > 0, key


# ---------------------------------------------------------------------------- resnet50_v1b

# Names worked out from GluonCV's gluoncv/model_zoo/resnetv1b.py (net prefix "resnetv1b_";
# auto-numbered conv/batchnorm/dense inside; stage scopes "layers{k}_", the blocks open no
# scope of their own; shortcut scopes "down{k}_" in the net's scope), with their shapes.
GLUONCV_NAMES = {
    "resnetv1b_conv0_weight": (64, 3, 7, 7),  # stem conv1
    "resnetv1b_batchnorm0_gamma": (64,),  # stem bn1
    "resnetv1b_batchnorm0_running_mean": (64,),
    "resnetv1b_layers1_conv0_weight": (64, 64, 1, 1),  # layer1[0].conv1
    "resnetv1b_layers1_conv1_weight": (64, 64, 3, 3),  # layer1[0].conv2
    "resnetv1b_layers1_conv2_weight": (256, 64, 1, 1),  # layer1[0].conv3
    "resnetv1b_layers1_batchnorm2_beta": (256,),  # layer1[0].bn3
    "resnetv1b_down1_conv0_weight": (256, 64, 1, 1),  # layer1 shortcut conv
    "resnetv1b_down1_batchnorm0_gamma": (256,),  # layer1 shortcut bn
    "resnetv1b_down2_conv0_weight": (512, 256, 1, 1),
    "resnetv1b_layers2_conv1_weight": (128, 128, 3, 3),  # layer2[0].conv2 (stride 2)
    "resnetv1b_layers3_conv17_weight": (1024, 256, 1, 1),  # layer3[5].conv3
    "resnetv1b_layers4_conv8_weight": (2048, 512, 1, 1),  # layer4[2].conv3
    "resnetv1b_layers4_batchnorm8_running_var": (2048,),  # layer4[2].bn3
    "resnetv1b_dense0_weight": (1000, 2048),  # fc
    "resnetv1b_dense0_bias": (1000,),
}

# Keys of Block.save_parameters files (GluonCV's released .params): attribute paths.
GLUONCV_STRUCTURAL_NAMES = {
    "conv1.weight",
    "bn1.gamma",
    "bn1.running_var",
    "layer1.0.conv1.weight",
    "layer1.0.bn3.beta",
    "layer1.0.downsample.0.weight",
    "layer1.0.downsample.1.running_mean",
    "layer2.0.conv2.weight",
    "layer3.5.conv3.weight",
    "layer4.2.bn3.gamma",
    "fc.weight",
    "fc.bias",
}

RESNET50_PARAMS = 25_557_032  # weights + biases + BN gamma/beta, no running statistics


@pytest.fixture(scope="module")
def resnet50_v1b():
    return zoo.get_model("resnet50_v1b", seed=0)


def test_resnet50_v1b_gluoncv_parameter_names(resnet50_v1b) -> None:
    params = resnet50_v1b.collect_params()
    assert {k: params[k].shape for k in GLUONCV_NAMES if k in params} == GLUONCV_NAMES
    assert all(k.startswith("resnetv1b_") for k in params)
    assert sum(re.search(r"_conv\d+_weight$", k) is not None for k in params) == 53


def test_resnet50_v1b_parameter_count(resnet50_v1b) -> None:
    sizes = [
        int(np.prod(p.shape))
        for k, p in resnet50_v1b.collect_params().items()
        if not k.endswith(("_running_mean", "_running_var"))
    ]
    assert sum(sizes) == RESNET50_PARAMS


def test_resnet50_v1b_stride_on_3x3(resnet50_v1b) -> None:
    for k in (2, 3, 4):
        first = getattr(resnet50_v1b, f"layer{k}")[0]
        assert first.conv1._kwargs["stride"] == (1, 1)
        assert first.conv2._kwargs["stride"] == (2, 2)
        assert first.conv3._kwargs["stride"] == (1, 1)
        assert first.downsample[0]._kwargs["stride"] == (2, 2)


def test_resnet50_v1b_save_parameters_roundtrip(resnet50_v1b, tmp_path) -> None:
    path = str(tmp_path / "r50.params")
    resnet50_v1b.save_parameters(path)
    assert GLUONCV_STRUCTURAL_NAMES <= set(mx.nd.load(path))
    other = zoo.get_model("resnet50_v1b", seed=1)
    other.load_parameters(path)  # strict: every name present, none extra
    np.testing.assert_array_equal(
        other.layer4[2].conv3.weight.data().asnumpy(),
        resnet50_v1b.layer4[2].conv3.weight.data().asnumpy(),
    )


# ---------------------------------------------------------------------------- export


def test_export_model(resnet50_v1b, tmp_path) -> None:
    sym_path, params_path = zoo.export_model("ResNet50_V1b", tmp_path / "r50")
    assert sym_path == str(tmp_path / "r50-symbol.json")
    assert params_path == str(tmp_path / "r50-0000.params")
    sym = mx.sym.load(sym_path)
    params = mx.nd.load(params_path)
    assert "resnetv1b_conv0_weight" in sym.list_arguments()
    assert "resnetv1b_batchnorm0_running_var" in sym.list_auxiliary_states()
    assert params["arg:resnetv1b_dense0_weight"].shape == (1000, 2048)
    assert "aux:resnetv1b_layers4_batchnorm8_running_mean" in params
    expected = {f"arg:{n}" for n in sym.list_arguments() if n != "data"}
    expected |= {f"aux:{n}" for n in sym.list_auxiliary_states()}
    assert set(params) == expected
    # the exported weights are the seed-0 weights
    np.testing.assert_array_equal(
        params["arg:resnetv1b_conv0_weight"].asnumpy(),
        resnet50_v1b.conv1.weight.data().asnumpy(),
    )
