"""fc's torch zoo end to end: the source module vs the golden executor on both IRs vs the
torch reconstruction of both, all pairs within rel-L2 1e-5, at batch 1 (the traced one) and
batch 3. The default run takes the small models at small inputs; ``-m slow`` every model at
its full input size."""

from __future__ import annotations

import pytest

from fc.zoo.torch import ZOO

SMALL = [
    pytest.param("resnet18", (1, 3, 64, 64), id="resnet18_64"),
    pytest.param("unet", (1, 3, 32, 32), id="unet_32"),
    pytest.param("vit_tiny", (1, 3, 32, 32), id="vit_tiny_32"),
    pytest.param("centernet_resnet18", (1, 3, 64, 64), id="centernet_64"),
]
FULL = [pytest.param(name, shape, id=name, marks=pytest.mark.slow)
        for name, (_, shape) in ZOO.items()]


@pytest.mark.parametrize(("name", "shape"), SMALL + FULL)
def test_zoo_model(name, shape, torch_roundtrip) -> None:
    build = ZOO[name][0]
    graph = torch_roundtrip(build(seed=0), [shape], other_batch=3 if shape[2] <= 64 else 2)
    if name == "centernet_resnet18":
        assert [v.name for v in graph.outputs] == ["output_0", "output_1", "output_2"]
        assert graph.op_histogram()["ConvTranspose"] == 3
    if name == "vit_tiny":
        assert {"MatMul", "Softmax", "LayerNormalization", "Gelu"} <= set(graph.op_histogram())
