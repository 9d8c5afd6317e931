"""VGG-16 with batch norm (Simonyan & Zisserman 2014) in torchvision's layout and module names
(``features.{i}``, ``classifier.{0,3,6}``), with seeded random weights."""

from __future__ import annotations

import torch
from torch import nn

from fc.zoo.torch._init import seeded

__all__ = ["VGG", "vgg16_bn"]

_CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, cfg: tuple = _CFG16, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16_bn(seed: int = 0, num_classes: int = 1000) -> VGG:
    """torchvision's VGG-16-BN layout with seeded random weights, in eval mode. At 224x224 the
    adaptive pool is an identity (7x7 in, 7x7 out)."""
    return seeded(VGG(_CFG16, num_classes), seed)
