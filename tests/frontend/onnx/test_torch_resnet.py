"""ResNets of ``fc.zoo.torch`` exported with torch.onnx (the TorchScript exporter,
``dynamo=False``, and the dynamo one, which folds BN and emits opset 20 with ReduceMean
pooling) with a dynamic batch axis, imported by fc
and compared with onnxruntime and with the torch module itself, at the imported batch (1)
and at another batch (3) to check that the IR is batch-independent."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import fc.ir
import fc.np_ops
import fc.zoo.torch as zoo
from fc.frontend.onnx import import_onnx
from fc.testing import MODEL_REL_L2, check_close

# id -> (constructor, opset, training mode, dynamo): PRESERVE on an eval-mode model keeps the
# BatchNormalization nodes (with zoo's non-trivial running statistics); EVAL lets torch fold
# them into the convolutions, the default export. The dynamo exporter (opset None: its own
# default) always folds them.
VARIANTS = {
    "resnet50_bn": (zoo.resnet50, 13, torch.onnx.TrainingMode.PRESERVE, False),
    "resnet50_folded": (zoo.resnet50, 13, torch.onnx.TrainingMode.EVAL, False),
    "resnet18_bn_opset17": (zoo.resnet18, 17, torch.onnx.TrainingMode.PRESERVE, False),
    "resnet18_dynamo_folded": (zoo.resnet18, None, torch.onnx.TrainingMode.EVAL, True),
}
IDS = [pytest.param(k, id=k) for k in VARIANTS]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Each variant's module and ONNX file, exported once per session."""
    out = {}
    folder = tmp_path_factory.mktemp("torch_resnet")
    for key, (build, opset, mode, dynamo) in VARIANTS.items():
        model = build(seed=0)
        path = folder / f"{key}.onnx"
        if dynamo:
            axes = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        else:
            axes = {"dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}},
                    "training": mode, "opset_version": opset}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=dynamo,
                              input_names=["image"], output_names=["logits"], **axes)
        out[key] = (model, path)
    return out


def _image(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 224, 224)).astype(np.float32)


def _torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def imported(exported) -> dict[str, fc.ir.Graph]:
    return {key: import_onnx(path) for key, (_, path) in exported.items()}


def test_resnet50_has_nontrivial_batchnorm_statistics() -> None:
    """The zoo model's BN layers are not identities (a BN bug would hide otherwise)."""
    bn = zoo.resnet50(seed=0).layer2[1].bn2
    assert bn.running_var.min() >= 0.5 and bn.running_var.max() <= 1.5
    assert bn.running_var.std() > 0.1 and bn.running_mean.abs().max() > 0.05
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
    assert not zoo.resnet50(seed=0).training
    assert torch.equal(zoo.resnet50(seed=3).fc.weight, zoo.resnet50(seed=3).fc.weight)
    assert not torch.equal(zoo.resnet50(seed=3).fc.weight, zoo.resnet50(seed=4).fc.weight)


@pytest.mark.parametrize(("build", "params"), [
    pytest.param(zoo.resnet18, 11_689_512, id="resnet18"),
    pytest.param(zoo.resnet50, 25_557_032, id="resnet50"),
])
def test_zoo_parameter_count_matches_torchvision(build, params: int) -> None:
    assert sum(p.numel() for p in build().parameters()) == params


def test_resnet50_v15_stride_on_the_3x3() -> None:
    block = zoo.resnet50().layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)


@pytest.mark.parametrize("key", IDS)
def test_import_structure(key: str, exported, caplog: pytest.LogCaptureFixture) -> None:
    _, path = exported[key]
    proto = onnx.load(path)
    with caplog.at_level(logging.WARNING, logger="fc.frontend.onnx"):
        graph = import_onnx(path)
    assert "batch dim 'batch' set to 1" in caplog.text
    fc.ir.verify(graph)
    assert [(v.name, v.shape) for v in graph.inputs] == [("image", (1, 3, 224, 224))]
    assert [(v.name, v.shape) for v in graph.outputs] == [("logits", (1, 1000))]
    hist = graph.op_histogram()
    assert hist.get("BatchNormalization", 0) == (0 if key.endswith("folded") else
                                                 sum(1 for n in proto.graph.node
                                                     if n.op_type == "BatchNormalization"))
    onnx_names = [n.name for n in proto.graph.node]
    assert [n.provenance for n in graph] == [(name,) for name in onnx_names]
    assert [n.name for n in graph] == onnx_names


@pytest.mark.parametrize("key", IDS)
def test_batch1_matches_onnxruntime_and_torch(key: str, exported, imported, ort_run,
                                              roundtrip) -> None:
    model, path = exported[key]
    graph = imported[key]
    x = _image(1, seed=0)
    got = fc.np_ops.run(graph, {"image": x})
    check_close(got["logits"], ort_run(path, {"image": x})["logits"], rel_l2_max=MODEL_REL_L2,
                what="fc vs onnxruntime")
    check_close(got["logits"], _torch(model, x), rel_l2_max=MODEL_REL_L2, what="fc vs torch")
    roundtrip(graph, {"image": x}, got)


@pytest.mark.parametrize("key", IDS)
def test_batch3_runs_the_batch1_graph(key: str, exported, imported, ort_run) -> None:
    """The graph was imported at batch 1; it runs at batch 3 like the dynamic-batch model."""
    model, path = exported[key]
    x = _image(3, seed=1)
    got = fc.np_ops.run(imported[key], {"image": x})["logits"]
    check_close(got, ort_run(path, {"image": x})["logits"], rel_l2_max=MODEL_REL_L2,
                what="fc vs onnxruntime, batch 3")
    check_close(got, _torch(model, x), rel_l2_max=MODEL_REL_L2, what="fc vs torch, batch 3")


@pytest.mark.parametrize("key", IDS)
def test_fused_ir_matches_torch(key: str, exported, imported) -> None:
    """The compiled (fused) IR of each export: BN folded, activations fused, same numbers."""
    from fc.passes.pipeline import compile_graph

    model, _ = exported[key]
    fused, report = compile_graph(imported[key], verify=True)
    ops = fused.op_histogram()
    assert "BatchNormalization" not in ops and "Relu" not in ops, ops
    assert set(ops) <= {"Conv", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"}, ops
    x = _image(2, seed=5)
    got = fc.np_ops.run(fused, {"image": x})["logits"]
    check_close(got, _torch(model, x), rel_l2_max=MODEL_REL_L2)
