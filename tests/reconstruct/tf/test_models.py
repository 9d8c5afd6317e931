"""Models the other frontends import, through the TF reconstructor: the frozen .pb (of both
IRs) and the trainable form compute what the golden executor computes, within the model
tolerance, and the .pb of the float64 IR what the golden executor computes in float64, to
1e-9; the NCHW input of a channels-first CNN costs one Transpose at the .pb's input and
none inside."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import fc.api
from fc.passes.pipeline import compile_graph
from fc.reconstruct.tf import freeze
from fc.testing import MODEL_REL_L2, MODEL_TOLERANCES, as_float64, check_close, model_rel_l2, rel_l2

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


def torch_zoo(name: str, shape: tuple[int, ...] | None = None):
    from fc.frontend.torch import import_torch
    from fc.zoo.torch import ZOO

    build, full = ZOO[name]
    return import_torch(build(seed=0), input_shapes=[shape or full]).graph


# The models the other frontends' tests compile (tests/frontend/onnx/test_model_zoo.py,
# tests/frontend/mxnet/test_zoo_import.py, tests/frontend/torch/test_zoo.py); the lean ones
# in the default run, the rest slow.
ONNX_LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
              "shufflenet", "squeezenet", "vgg19", "zfnet512")
ONNX_LEAN = {"squeezenet"}
MXNET_LEAN: set[str] = set()
TORCH_SMALL = (("resnet18", (1, 3, 64, 64)), ("unet", (1, 3, 32, 32)),
               ("vit_tiny", (1, 3, 32, 32)), ("centernet_resnet18", (1, 3, 64, 64)))
TORCH_LEAN = {"vit_tiny"}
#: fc.zoo.torch.ZOO's names (importing it at collection would import torch)
TORCH_ZOO = ("resnet18", "resnet50", "mobilenet_v2", "vgg16_bn", "unet", "centernet_resnet18",
             "vit_tiny")


def _cases() -> list:
    from fc.zoo.mxnet import MODEL_NAMES

    slow = pytest.mark.slow
    cases = [P(onnx_light, n, id=f"onnx_{n}", marks=() if n in ONNX_LEAN else slow)
             for n in ONNX_LIGHT]
    cases += [P(mxnet_zoo, n, id=f"mxnet_{n}", marks=() if n in MXNET_LEAN else slow)
              for n in MODEL_NAMES]
    cases += [P(lambda n, _s=shape: torch_zoo(n, _s), n, id=f"torch_{n}_{shape[2]}",
                marks=() if n in TORCH_LEAN else slow) for n, shape in TORCH_SMALL]
    cases += [P(torch_zoo, n, id=f"torch_{n}", marks=slow) for n in TORCH_ZOO]
    return cases


def test_every_torch_zoo_model_is_a_case() -> None:
    from fc.zoo.torch import ZOO

    assert set(TORCH_ZOO) == set(ZOO)


#: the .pb of the float64 graph against the golden executor in float64: what is left is the
#: lowering's semantics, not summation order (measured <= 3.5e-14 on mxnet_resnet50_v1b)
REL_L2_EXACT = 1e-9
#: ops whose TF kernel computes in float32 even on float64 tensors, and the float64 bound a
#: graph holding one gets instead: ResizeBilinear's interpolation weights are float32
#: (measured 4.5e-8 on torch unet at 32x32)
FLOAT32_INSIDE = {"Resize": 1e-7}


@pytest.mark.parametrize(("load", "name"), _cases())
def test_other_frontends_models(load, name: str, request: pytest.FixtureRequest) -> None:
    """Golden executor (both IRs) vs the reconstructed .pb (both IRs) and the trainable form,
    within the model tolerance (``MODEL_REL_L2`` or the model's ``MODEL_TOLERANCES`` row);
    the .pb of each IR in float64 vs the golden executor in float64 within ``REL_L2_EXACT``.
    The frontend's own tests hold the golden executor to the source framework. Each stage's
    graphs are dropped before the next: a VGG's weights are 0.55 GB in fp32, and TF holds
    several copies of a .pb's constants while it runs it."""
    from fc.reconstruct.tf import TFModel

    key = request.node.callspec.id.split("_", 1)[0] + f":{name}"  # "mxnet:resnet50_v1b"
    bound = model_rel_l2(key)
    graph = load(name)
    feeds = {v.name: np.random.default_rng(0).standard_normal(v.shape).astype(v.dtype)
             for v in graph.inputs}
    feeds64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    golden = {}
    for which in ("reconstruct IR", "fused IR"):
        g = graph if which == "reconstruct IR" else compile_graph(graph)[0]
        frozen = freeze(g)
        transposes = [n.name for n in frozen.graph_def.node if n.op == "Transpose"]
        got = frozen.run(feeds)
        del frozen
        golden[which] = fc.api.run(g, feeds)
        exact = max([REL_L2_EXACT, *(FLOAT32_INSIDE.get(op, 0.0) for op in g.op_histogram())])
        wide = as_float64(g)
        golden64 = fc.api.run(wide, feeds64)
        # without grappler: its optimizers copy a float64 VGG's 1.1 GB of constants too often
        # for a shared machine, and this check is of the lowering's semantics
        got64 = freeze(wide).run(feeds64, optimize=False)
        del wide
        noise = 0.0  # the largest fp32 distance from float64, fc's or the .pb's, any output
        for k in golden[which]:
            check_close(got[k], golden[which][k], rel_l2_max=bound, what=f".pb of the {which} {k}")
            check_close(got64[k], golden64[k], rel_l2_max=exact,
                        what=f"float64 .pb of the {which} {k}")
            noise = max(noise, rel_l2(golden[which][k], golden64[k]), rel_l2(got[k], golden64[k]))
        if key in MODEL_TOLERANCES:  # the row's reason: fc's or the .pb's fp32 rounding
            assert noise > MODEL_REL_L2 / 2, f"{key}: fp32 noise {noise:.2g} no longer needs " \
                "its MODEL_TOLERANCES row"
        if "Transpose" not in g.op_histogram():  # a CNN (a transformer permutes its heads)
            assert len(transposes) <= len(g.inputs) + len(g.outputs), transposes
        del g, got, got64, golden64
        gc.collect()
    trained = TFModel(graph)(*(feeds[v.name] for v in graph.inputs))
    outs = trained if isinstance(trained, list) else [trained]
    assert len(outs) == len(graph.outputs)
    for v, t in zip(graph.outputs, outs):
        check_close(np.asarray(t), golden["reconstruct IR"][v.name], rel_l2_max=bound,
                    what=f"trainable form {v.name}")
