"""Seeded weights for fc's torch zoo: the same seed gives the same model, and every layer is
non-trivial, so an importer or pass that mishandles any of its tensors shows up numerically.

Convolutions are He-normal over fan-out (torchvision's init; fan-in when grouped),
transposed ones variance-preserving, Linear layers uniform in +-1/sqrt(fan_in) (torch's
default); BatchNorm gets random affine parameters *and* running statistics (gamma, var ~
U(0.5, 1.5); beta, mean ~ N(0, 0.1)), LayerNorm/GroupNorm random affine parameters, PReLU
slopes U(0.1, 0.3), any other parameter (a class token, a positional embedding) N(0, 0.02).
A private generator leaves the global torch RNG alone. Models come back in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["seeded"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_NORMS = (nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def seeded(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            # variance-preserving for an upsampling layer: each output sums in*k*k/stride^2
            fan = m.in_channels * math.prod(m.kernel_size) / math.prod(m.stride)
            m.weight.normal_(0.0, (2.0 / fan) ** 0.5, generator=gen)
        elif isinstance(m, _CONVS):
            # fan-out (torchvision); fan-in for grouped ones, whose fan-out would starve the
            # signal of a random depthwise stack
            fan = (m.out_channels if m.groups == 1 else m.in_channels // m.groups
                   ) * math.prod(m.kernel_size)
            m.weight.normal_(0.0, (2.0 / fan) ** 0.5, generator=gen)
        elif isinstance(m, _BATCH_NORMS):
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.1, generator=gen)
            m.running_mean.normal_(0.0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.in_features ** 0.5
            m.weight.uniform_(-bound, bound, generator=gen)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=gen)
        elif isinstance(m, _NORMS) and m.weight is not None:
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.1, generator=gen)
        elif isinstance(m, nn.PReLU):
            m.weight.uniform_(0.1, 0.3, generator=gen)
        else:
            continue
        if isinstance(m, _CONVS) and m.bias is not None:
            m.bias.normal_(0.0, 0.05, generator=gen)
        done.update(id(p) for p in m.parameters(recurse=False))
    for p in model.parameters():
        if id(p) not in done:
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval()
