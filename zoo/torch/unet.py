"""A small U-Net (Ronneberger et al. 2015) that exercises what segmentation models need: an
encoder of conv-BN-ReLU pairs and max-pools, a decoder that upsamples three ways
(transposed convolution, bilinear interpolation, pixel shuffle) and concatenates the skip
connections, and a 1x1 head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fc.zoo.torch._init import seeded

__all__ = ["UNet", "unet"]


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 16):
        super().__init__()
        c = base
        self.enc1 = DoubleConv(in_channels, c)
        self.enc2 = DoubleConv(c, 2 * c)
        self.enc3 = DoubleConv(2 * c, 4 * c)
        self.bottleneck = DoubleConv(4 * c, 8 * c)
        self.pool = nn.MaxPool2d(2)
        # three ways up: learned deconvolution, fixed bilinear, sub-pixel (pixel shuffle)
        self.up3 = nn.ConvTranspose2d(8 * c, 4 * c, 2, stride=2)
        self.dec3 = DoubleConv(8 * c, 4 * c)
        self.reduce2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.dec2 = DoubleConv(4 * c, 2 * c)
        self.expand1 = nn.Conv2d(2 * c, 4 * c, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.dec1 = DoubleConv(2 * c, c)
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottleneck(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        up2 = F.interpolate(self.reduce2(d3), scale_factor=2, mode="bilinear", align_corners=False)
        d2 = self.dec2(torch.cat([up2, e2], dim=1))
        d1 = self.dec1(torch.cat([self.shuffle(self.expand1(d2)), e1], dim=1))
        return self.head(d1)


def unet(seed: int = 0, num_classes: int = 2) -> UNet:
    """The U-Net with seeded random weights, in eval mode (input H, W divisible by 8)."""
    return seeded(UNet(num_classes=num_classes), seed)
