"""ResNet-50 FLOPs agree with the published counts (1 multiply-accumulate = 1 FLOP)."""

from __future__ import annotations

import pytest

from fc.frontend.mxnet import load_mxnet
from fc.ir.complexity import complexity
from fc.passes.pipeline import compile_graph


@pytest.mark.parametrize(
    "name, published",
    [
        # torchvision's ResNet-50 (v1.5: stride on the 3x3) = GluonCV's v1b: 4.09 GFLOPS,
        # 4,089,184,256 multiply-accumulates of its convolutions and classifier.
        pytest.param("resnet50_v1b", 4_089_184_256, id="resnet50_v1b"),
        # He et al. 2016, Table 1: 3.8e9 for the original v1 (stride on the first 1x1).
        pytest.param("resnet50_v1", 3_857_973_248, id="resnet50_v1"),
    ],
)
def test_resnet50_dense_flops_match_published(name, published):
    graph, _ = load_mxnet(name)
    fused, _ = compile_graph(graph)
    assert complexity(graph).dense_flops == published
    assert complexity(fused).dense_flops == published  # fusion moves no MACs
