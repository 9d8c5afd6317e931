"""The whole compile pipeline on real model-zoo graphs: the fused IR keeps the numbers
(against onnxruntime and against the reconstruct IR) and leaves nothing fusable behind."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fc.frontend.onnx import import_onnx
from fc.ir import Graph, verify
from fc.ir.activations import ACTIVATIONS, fused_layers
from fc.np_ops import run
from fc.passes.pipeline import compile_graph
from fc.testing import MODEL_REL_L2, check_close, onnx_with_seeded_weights

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = [
    pytest.param("bvlc_alexnet", id="alexnet", marks=pytest.mark.slow),
    pytest.param("densenet121", id="densenet121"),
    pytest.param("inception_v1", id="inception_v1"),
    pytest.param("inception_v2", id="inception_v2"),
    pytest.param("resnet50", id="resnet50"),
    pytest.param("shufflenet", id="shufflenet"),
    pytest.param("squeezenet", id="squeezenet"),
    pytest.param("vgg19", id="vgg19", marks=pytest.mark.slow),
    pytest.param("zfnet512", id="zfnet512", marks=pytest.mark.slow),
]
LAYERS = fused_layers()
ACTIVATION_OPS = tuple(a.op_type for a in ACTIVATIONS.values())
NEVER_FUSED = ("BatchNormalization", "Pad", "Identity", "Dropout")


def fusable_activations(graph: Graph) -> list[str]:
    """Activations whose producer is a layer that could have taken them."""
    found = []
    for node in graph:
        if node.op_type not in ACTIVATION_OPS:
            continue
        x = node.inputs[0]
        p = x.producer
        if (p is not None and p.op_type in LAYERS and not p.attrs.get("activation")
                and len(x.uses) == 1 and x not in graph.outputs):
            found.append(node.name)
    return found


@pytest.mark.parametrize("name", MODELS)
def test_fused_ir_matches_reconstruct_ir_and_onnxruntime(name):
    # Seeded random weights: the files' ConstantOfShape weights make every channel equal.
    # The seeded model also exposes the logits (the Softmax input) as an output.
    model = onnx_with_seeded_weights(onnx.load(os.path.join(LIGHT, f"light_{name}.onnx")))
    graph = import_onnx(model)
    fused, report = compile_graph(graph, verify=True)
    verify(fused)
    ops = fused.op_histogram()
    assert not set(NEVER_FUSED) & set(ops), ops
    assert fusable_activations(fused) == []
    assert len(fused) < len(graph)
    assert [v.name for v in fused.outputs] == [v.name for v in graph.outputs]

    (inp,) = graph.inputs
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    y_reconstruct = run(graph, {inp.name: x})
    y_fused = run(fused, {inp.name: x})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    y_ort = dict(zip(names, sess.run(None, {inp.name: x})))
    for out in names:
        check_close(y_fused[out], y_reconstruct[out], rel_l2_max=MODEL_REL_L2,
                    what=f"{out}: fused vs reconstruct")
        check_close(y_fused[out], y_ort[out], rel_l2_max=MODEL_REL_L2, what=f"{out}: fused vs ORT")


def test_compile_leaves_the_reconstruct_ir_untouched():
    graph = import_onnx(os.path.join(LIGHT, "light_squeezenet.onnx"))
    before = [(n.op_type, n.name, dict(n.attrs)) for n in graph]
    compile_graph(graph)
    verify(graph)
    assert [(n.op_type, n.name, dict(n.attrs)) for n in graph] == before


def test_the_lists_of_the_fusable_check_are_not_vacuous():
    # A renamed op or attribute would make fusable_activations() find nothing to complain of.
    assert {"Relu", "Clip", "Sigmoid", "HardSwish", "SiLU", "Gelu"} <= set(ACTIVATION_OPS)
    assert {"Conv", "ConvTranspose", "Gemm", "Add", "Scale"} == set(LAYERS)
