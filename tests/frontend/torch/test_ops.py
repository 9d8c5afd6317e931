"""ATen op families through the importer: one small module per family (an export costs
seconds), each compared as source vs golden (both IRs) vs reconstruction at two batches,
and the IR ops it must produce."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fc.zoo.torch._init import seeded


class Convolutions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.group = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.deconv = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.deconv_group = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)
        self.conv1d = nn.Conv1d(4, 6, 3, padding=1)
        self.prelu = nn.PReLU(8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.relu6(self.bn(self.conv(x)))
        y = self.prelu(self.group(y))
        y = F.leaky_relu(y, 0.1) + F.elu(y) + F.hardswish(y) + F.hardsigmoid(y) + F.silu(y)
        y = torch.sigmoid(y) * torch.tanh(y) + F.gelu(y, approximate="tanh") + F.gelu(y)
        y = self.deconv_group(self.deconv(y.clamp(-1.0, 2.0)))
        z = self.conv1d(x.mean(2))
        return y, F.hardtanh(z, -0.5, 0.5)


class Pools(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        b = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        c = F.avg_pool2d(x, 2)
        d = F.adaptive_avg_pool2d(x, (4, 4))
        e = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return a, b, c, d, e, x.mean((2, 3), keepdim=True), x.sum(1), x.amax(-1)


class Tensors(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, b = torch.chunk(x, 2, dim=1)
        p, q, r = torch.split(x, [1, 2, 1], dim=1)
        y = torch.cat([b, a], 1)[:, :, 1:7:2]
        y = y.permute(0, 2, 3, 1).transpose(1, 2).contiguous()
        z = x[:, 1].unsqueeze(1).squeeze(1).reshape(x.shape[0], -1)
        w = F.pad(x, (1, 2, 0, 3), value=0.5) + 0
        v = F.pad(x, (1, 1, 2, 2), mode="reflect")
        u = F.pad(x, (2, 1, 1, 2), mode="replicate")
        t = torch.flatten(p * q - r / (q.abs() + 1) + q ** 2 + torch.rsqrt(r.abs() + 1), 1)
        s = torch.sqrt(x.abs()) + torch.exp(-x.abs()) - x.view(-1, 4, 64).view(x.shape)
        return y, z, w, v, u, t, s, torch.softmax(x, 1), torch.log_softmax(x, -1)


class Resampling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (F.interpolate(x, scale_factor=2, mode="nearest"),
                F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                F.interpolate(x, size=(13, 11), mode="bilinear", align_corners=True),
                self.shuffle(x))


class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gn(x), self.drop(self.ln(x))


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 5)
        self.fc3 = nn.Linear(8, 6, bias=False)
        self.w = nn.Parameter(torch.randn(8, 3))
        self.b = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = x[:, 0]                                      # (N, 8)
        seq = x                                             # (N, 4, 8)
        att = torch.softmax(seq @ seq.transpose(1, 2), -1) @ seq
        return (self.fc(flat), self.fc3(seq), torch.addmm(self.b, flat, self.w),
                torch.mm(flat, self.w), torch.bmm(seq, seq.transpose(1, 2)), att)


FAMILIES = [
    pytest.param(Convolutions, [(2, 4, 9, 9)],
                 {"Conv", "ConvTranspose", "BatchNormalization", "PRelu", "Clip", "LeakyRelu",
                  "Elu", "HardSwish", "HardSigmoid", "SiLU", "Sigmoid", "Tanh", "Gelu",
                  "Unsqueeze", "Squeeze"}, id="convolutions_activations"),
    pytest.param(Pools, [(2, 3, 8, 8)], {"MaxPool", "AveragePool", "GlobalAveragePool",
                                         "ReduceSum", "ReduceMax"}, id="pools_reductions"),
    pytest.param(Tensors, [(2, 4, 8, 8)], {"Split", "Concat", "Slice", "Transpose", "Gather",
                                           "Reshape", "Pad", "Softmax", "LogSoftmax", "Pow",
                                           "Sqrt", "Reciprocal", "Exp", "Div", "Sub"},
                 id="tensors_arithmetic"),
    pytest.param(Resampling, [(2, 8, 5, 6)], {"Resize", "DepthToSpace"}, id="resampling"),
    pytest.param(Norms, [(2, 4, 6, 8)], {"InstanceNormalization", "LayerNormalization"},
                 id="norms"),
    pytest.param(Dense, [(2, 4, 8)], {"Gemm", "MatMul"}, id="dense_attention"),
]


@pytest.mark.parametrize(("family", "shapes", "ops"), FAMILIES)
def test_family(family, shapes, ops, torch_roundtrip) -> None:
    graph = torch_roundtrip(seeded(family(), 0), shapes)
    assert ops <= set(graph.op_histogram()), sorted(ops - set(graph.op_histogram()))
