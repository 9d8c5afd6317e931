"""The ONNX model-zoo graphs that ship with the onnx package (``backend/test/data/light``):
AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512.

They are IR v3 / opset 9 files (every weight is also listed as a graph input) whose weights
were replaced by ``ConstantOfShape`` nodes filling each tensor with one value. With every
channel identical the logits of the original files are degenerate (SqueezeNet's reach ~7e9 and
differ only in the last float32 bits, so its Softmax is ill-conditioned), which makes them a
structural test only. The numerical comparison with onnxruntime therefore runs on a copy
whose ConstantOfShape weights are replaced by seeded random initializers (He-scaled for
weights, U(0.5, 1.5) for per-channel vectors), with BN statistics that suit them, and whose
logits (the Softmax input) are compared too.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import onnx
import pytest

import fc.ir
import fc.np_ops
from fc.frontend.onnx import import_onnx
from fc.testing import MODEL_REL_L2, check_close, onnx_with_seeded_weights

LIGHT_DIR = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512"]
MODELS = [pytest.param(name, id=name) for name in LIGHT_MODELS]
# 60-145 M parameters (their fully connected layers): generating the seeded weights, building
# the onnxruntime session and writing the npz twice take 5-30 s each on the 2-core machine.
HEAVY = {"bvlc_alexnet", "vgg19", "zfnet512"}
NUMERIC_MODELS = [pytest.param(name, id=name, marks=[pytest.mark.slow] if name in HEAVY else [])
                  for name in LIGHT_MODELS]


def _path(name: str) -> Path:
    return LIGHT_DIR / f"light_{name}.onnx"


def test_all_nine_light_models_are_there() -> None:
    assert sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx")) == \
        LIGHT_MODELS


@pytest.mark.parametrize("name", MODELS)
def test_light_model_imports_with_folded_weights(name: str, seeded_input, roundtrip) -> None:
    """The original file: ConstantOfShape weights folded into graph weights, weights listed
    as inputs are not inputs, one fc layer per ONNX layer, provenance = ONNX node names."""
    proto = onnx.load(_path(name))
    graph = import_onnx(_path(name))
    fc.ir.verify(graph)
    inits = {t.name for t in proto.graph.initializer}
    assert [v.name for v in graph.inputs] == [i.name for i in proto.graph.input
                                              if i.name not in inits]
    assert graph.inputs[0].shape == (1, 3, 224, 224)
    assert [v.name for v in graph.outputs] == [o.name for o in proto.graph.output]
    onnx_ops = collections.Counter(n.op_type for n in proto.graph.node)
    fc_ops = graph.op_histogram()
    assert "ConstantOfShape" not in fc_ops
    for op in ("Conv", "Gemm", "BatchNormalization", "MaxPool", "Concat"):
        assert fc_ops.get(op, 0) == onnx_ops.get(op, 0), op
    # every ConstantOfShape feeding a Conv became a weight named after its tensor
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    assert conv_weights <= set(graph.initializers)
    names = {n.name or f"{n.op_type}_{i}" for i, n in enumerate(proto.graph.node)}
    for node in graph:
        assert len(node.provenance) == 1 and node.provenance[0] in names, node
    if name not in HEAVY:  # the heavy ones round-trip in their (slow) numerical test
        feeds = {graph.inputs[0].name: seeded_input(graph.inputs[0].shape)}
        roundtrip(graph, feeds, fc.np_ops.run(graph, feeds))


@pytest.mark.parametrize("name", NUMERIC_MODELS)
def test_light_model_matches_onnxruntime(name: str, ort_run, seeded_input, roundtrip) -> None:
    model = onnx_with_seeded_weights(onnx.load(_path(name)))
    graph = import_onnx(model)
    fc.ir.verify(graph)
    feeds = {graph.inputs[0].name: seeded_input(graph.inputs[0].shape)}
    expected = ort_run(model, feeds)
    got = fc.np_ops.run(graph, feeds)
    assert list(got) == list(expected)
    for out, ref in expected.items():
        check_close(got[out], ref, rel_l2_max=MODEL_REL_L2, what=f"{name}:{out}")
    roundtrip(graph, feeds, got)


# The original files' weights are ConstantOfShape fills, so every channel of a layer is the
# same: SqueezeNet's 1000 logits are all ~7e9, where one float32 ulp is 512, and its Softmax
# of them depends on the last bit of each sum. Its logits are compared; its probabilities
# cannot be, by any two implementations.
SOFTMAX_OF_TIES = {"squeezenet"}


@pytest.mark.parametrize("name", NUMERIC_MODELS)
def test_original_light_model_matches_onnxruntime(name: str, ort_run, seeded_input) -> None:
    """The unmodified zoo file on a random input: outputs and logits within 1e-5 of ORT."""
    proto = onnx.load(_path(name))
    softmax = proto.graph.node[-1]
    assert softmax.op_type == "Softmax" or name == "densenet121"
    if softmax.op_type == "Softmax":  # expose the logits to onnxruntime as well
        proto.graph.output.append(onnx.ValueInfoProto(name=softmax.input[0]))
    graph = import_onnx(_path(name))
    feeds = {graph.inputs[0].name: seeded_input(graph.inputs[0].shape)}
    expected = ort_run(proto, feeds)
    got = fc.np_ops.run(graph, feeds, intermediate=True)
    for out, ref in expected.items():
        if name in SOFTMAX_OF_TIES and out == graph.outputs[0].name:
            continue
        check_close(got[out], ref, rel_l2_max=MODEL_REL_L2, what=f"{name}:{out}")
