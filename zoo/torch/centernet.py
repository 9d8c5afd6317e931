"""A CenterNet-style detector (Zhou et al. 2019, "Objects as Points") on a ResNet-18 backbone:
the seed's ``test_gluoncv_centernet_rt.py`` case. Three transposed-convolution stages
upsample the stride-32 features to stride 4, then three heads give the class heatmap
(sigmoid), the box size and the centre offset: a model with three outputs."""

from __future__ import annotations

import torch
from torch import nn

from fc.zoo.torch._init import seeded
from fc.zoo.torch.resnet import BasicBlock, ResNet

__all__ = ["CenterNet", "centernet_resnet18"]


class CenterNet(nn.Module):
    def __init__(self, num_classes: int = 80, head_channels: int = 64):
        super().__init__()
        r = ResNet(BasicBlock, (2, 2, 2, 2))
        self.backbone = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2,
                                      r.layer3, r.layer4)
        layers: list[nn.Module] = []
        cin = 512
        for cout in (256, 128, 64):
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.deconv = nn.Sequential(*layers)

        def head(cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, head_channels, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(head_channels, cout, 1))

        self.heatmap = head(num_classes)
        self.wh = head(2)
        self.reg = head(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.deconv(self.backbone(x))
        return torch.sigmoid(self.heatmap(y)), self.wh(y), self.reg(y)


def centernet_resnet18(seed: int = 0, num_classes: int = 80) -> CenterNet:
    """CenterNet on ResNet-18 with seeded random weights, in eval mode; outputs
    (heatmap, wh, reg) at stride 4."""
    return seeded(CenterNet(num_classes), seed)
