"""Models the other frontends import, through the TF reconstructor: the frozen .pb (of both
IRs) computes what the golden executor computes, within the model tolerance; the NCHW input
of a channels-first model costs one Transpose at the .pb's input and none inside."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fc.api
from fc.passes.pipeline import compile_graph
from fc.reconstruct.tf import freeze
from fc.testing import MODEL_REL_L2, check_close

P = pytest.param


def onnx_light(name: str):
    import onnx

    from fc.frontend.onnx import import_onnx
    from fc.testing import onnx_with_seeded_weights

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")
    return import_onnx(onnx_with_seeded_weights(onnx.load(path)))


def mxnet_zoo(name: str):
    from fc.frontend.mxnet import load_mxnet

    return load_mxnet(name)[0]


def torch_zoo(name: str):
    from fc.frontend.torch import import_torch

    return import_torch(name).graph


@pytest.mark.parametrize(("load", "name"), [
    P(onnx_light, "squeezenet", id="onnx_squeezenet"),
    P(onnx_light, "inception_v2", id="onnx_inception_v2", marks=pytest.mark.slow),
    P(mxnet_zoo, "resnet18_v1", id="mxnet_resnet18_v1", marks=pytest.mark.slow),
    P(mxnet_zoo, "mobilenetv2_0.5", id="mxnet_mobilenetv2", marks=pytest.mark.slow),
    P(torch_zoo, "resnet18", id="torch_resnet18", marks=pytest.mark.slow),
])
def test_other_frontends_models(load, name: str) -> None:
    graph = load(name)
    fused, _ = compile_graph(graph)
    feeds = {v.name: np.random.default_rng(0).standard_normal(v.shape).astype(v.dtype)
             for v in graph.inputs}
    for which, g in (("reconstruct IR", graph), ("fused IR", fused)):
        frozen = freeze(g)
        golden = fc.api.run(g, feeds)
        got = frozen.run(feeds)
        for k in golden:
            check_close(got[k], golden[k], rel_l2_max=MODEL_REL_L2, what=f"{which} {k}")
        transposes = [n.name for n in frozen.graph_def.node if n.op == "Transpose"]
        assert len(transposes) <= len(g.inputs) + len(g.outputs), transposes
