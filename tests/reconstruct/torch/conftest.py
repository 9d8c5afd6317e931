"""Models for the reconstructor's tests, imported into fc through ONNX (BN kept)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import fc.zoo.torch as zoo
from fc.frontend.onnx import import_onnx
from fc.ir import Graph


class SmallNet(nn.Module):
    """Conv-BN-ReLU twice, a residual add, pooling and a classifier: small enough to train
    in a test, with every layer kind a CNN has."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def onnx_graph(model: nn.Module, shape: tuple[int, ...], path: Path) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(shape),), str(path), dynamo=False,
                          opset_version=13, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return import_onnx(path)


@pytest.fixture(scope="session")
def small_net(tmp_path_factory) -> tuple[nn.Module, Graph]:
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model, onnx_graph(model, (1, 3, 8, 8), tmp_path_factory.mktemp("small") / "small.onnx")


@pytest.fixture(scope="session")
def resnet18(tmp_path_factory) -> tuple[nn.Module, Graph]:
    model = zoo.resnet18(seed=0)
    return model, onnx_graph(model, (1, 3, 64, 64), tmp_path_factory.mktemp("r18") / "r18.onnx")
