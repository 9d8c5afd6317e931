"""The fused IR of every zoo model is byte-identical to the committed reference.

Refactors of the passes (and of the importers) must not change a single byte of
``IR_fused_for_CModel``: the hardware team diffs these files. ``fused_ir_sha256.json`` holds,
per model, the sha256 of the saved IR for reconstruct and of the saved fused IR (graph JSON,
params npz, and the weights themselves: names, dtypes, shapes and bytes), so a failure tells
which stage changed, and whether the weights changed or only the file that stores them.

When a change of the fused IR is *intended* (a new fusion, a new attribute), regenerate the
list with the new code, look at the diff of the JSON files it names, and commit both::

    .venv/bin/python tests/passes/test_fused_ir_unchanged.py          # every model
    .venv/bin/python tests/passes/test_fused_ir_unchanged.py resnet   # ids containing 'resnet'

The models: the ONNX model-zoo graphs shipped with the onnx package (the original files with
ConstantOfShape weights, and copies with seeded random weights), fc's MXNet zoo with seeded
weights, and fc's torch ResNets exported by torch.onnx. The default run checks the quick ones;
``-m slow`` the rest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from fc.ir import Graph, save
from fc.passes.pipeline import compile_graph

HASHES = Path(__file__).with_name("fused_ir_sha256.json")

_LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
          "squeezenet", "vgg19", "zfnet512")
_LIGHT_HEAVY = {"bvlc_alexnet", "vgg19", "zfnet512"}  # 60-145 M parameters each
_MXNET_QUICK = {"densenet121", "inceptionv3", "mobilenet0.5", "mobilenetv2_0.5", "resnet18_v1",
                "resnet18_v2", "squeezenet1.1"}
_TORCH = {"resnet18_bn_opset17": ("resnet18", 17, "PRESERVE"),
          "resnet50_bn_opset13": ("resnet50", 13, "PRESERVE"),
          "resnet50_folded_opset13": ("resnet50", 13, "EVAL")}


def _light_path(name: str) -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")


def _onnx_light(name: str) -> Graph:
    from fc.frontend.onnx import import_onnx

    return import_onnx(_light_path(name))


def _onnx_light_seeded(name: str) -> Graph:
    import onnx

    from fc.frontend.onnx import import_onnx
    from fc.testing import onnx_with_seeded_weights

    return import_onnx(onnx_with_seeded_weights(onnx.load(_light_path(name))))


def _mxnet(name: str) -> Graph:
    from fc.frontend.mxnet import load_mxnet

    return load_mxnet(name)[0]


def _torch_onnx(key: str) -> Graph:
    import torch

    import fc.zoo.torch as zoo
    from fc.frontend.onnx import import_onnx

    build, opset, mode = _TORCH[key]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(getattr(zoo, build)(seed=0), (torch.zeros(1, 3, 224, 224),), buf,
                          dynamo=False, opset_version=opset,
                          training=getattr(torch.onnx.TrainingMode, mode),
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    import onnx

    return import_onnx(onnx.load_from_string(buf.getvalue()))


def _corpus() -> dict[str, tuple[Callable[[], Graph], bool]]:
    """id -> (builder of the IR for reconstruct, quick enough for the default run)."""
    import functools

    import fc.zoo.mxnet as mxzoo

    out: dict[str, tuple[Callable[[], Graph], bool]] = {}
    for name in _LIGHT:
        quick = name not in _LIGHT_HEAVY
        out[f"onnx_light_{name}"] = (functools.partial(_onnx_light, name), quick)
        out[f"onnx_seeded_{name}"] = (functools.partial(_onnx_light_seeded, name), quick)
    for name in mxzoo.MODEL_NAMES:
        out[f"mxnet_{name}"] = (functools.partial(_mxnet, name), name in _MXNET_QUICK)
    for key in _TORCH:
        out[f"torch_{key}"] = (functools.partial(_torch_onnx, key), key == "resnet18_bn_opset17")
    return out


CORPUS = _corpus()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_sha256(graph: Graph) -> str:
    h = hashlib.sha256()
    for name, v in graph.initializers.items():
        h.update(f"{name}\0{v.const.dtype.str}\0{v.const.shape}\0".encode())
        h.update(v.const.tobytes())
    return h.hexdigest()


def digests(key: str) -> dict[str, str]:
    """sha256 of the saved reconstruct and fused IR files of corpus model ``key``, and of
    their weights."""
    graph = CORPUS[key][0]()
    fused, _ = compile_graph(graph)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage, g in (("reconstruct", graph), ("fused", fused)):
            graph_json, params = save(g, Path(tmp) / stage)
            out[f"{stage}_graph"] = _sha256(graph_json)
            out[f"{stage}_params"] = _sha256(params)
            out[f"{stage}_weights"] = _weights_sha256(g)
    return out


def _expected() -> dict[str, dict[str, str]]:
    return json.loads(HASHES.read_text())


@pytest.mark.parametrize("key", [pytest.param(k, id=k, marks=[] if quick else [pytest.mark.slow])
                                 for k, (_, quick) in CORPUS.items()])
def test_fused_ir_is_byte_identical(key: str) -> None:
    expected = _expected()
    assert key in expected, f"{key} has no reference hash: regenerate {HASHES.name} (see docstring)"
    got = digests(key)
    want = expected[key]
    changed = [k for k in want if got[k] != want[k]]
    assert not changed, (f"{key}: {changed} changed; the importer changed if reconstruct_* did, "
                         f"the passes if only fused_* did, the npz format if only *_params did "
                         f"(regenerate only for intended changes)")


def test_every_reference_hash_belongs_to_a_model() -> None:
    assert sorted(_expected()) == sorted(CORPUS)


if __name__ == "__main__":
    selected = [k for k in CORPUS if not sys.argv[1:] or any(s in k for s in sys.argv[1:])]
    table = _expected() if HASHES.exists() else {}
    for k in selected:
        table[k] = digests(k)
        print(k, table[k]["fused_graph"][:12], table[k]["fused_params"][:12], flush=True)
    HASHES.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    print(f"wrote {len(selected)} of {len(table)} entries to {HASHES}")
