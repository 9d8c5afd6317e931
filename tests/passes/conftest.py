"""torch models for the compression tests (pruning, thinning, re-parameterization), imported
into fc's IR through ONNX with BatchNormalization kept (the IR for reconstruct)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from fc.frontend.onnx import import_onnx
from fc.ir import Graph

ToIR = Callable[[nn.Module, tuple[int, ...]], Graph]


@pytest.fixture
def torch_ir(tmp_path: Path) -> ToIR:
    """``torch_ir(module, input_shape, trained=False)``: the module (eval mode; unless
    ``trained``, its BNs' statistics and affine terms randomized first) as an fc graph, input ``x``, output
    ``y``, weights named as in its state dict."""
    count = iter(range(1000))

    def convert(model: nn.Module, shape: tuple[int, ...], *, trained: bool = False) -> Graph:
        if not trained:
            randomize_bn(model)
        path = tmp_path / f"model{next(count)}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (torch.zeros(shape),), str(path), dynamo=False,
                              opset_version=13, training=torch.onnx.TrainingMode.PRESERVE,
                              do_constant_folding=False, input_names=["x"], output_names=["y"])
        return import_onnx(path)

    return convert


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Statistics and affine terms away from (0, 1), so a BN is never an identity in a test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()
