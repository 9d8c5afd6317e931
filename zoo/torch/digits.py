"""A small CNN for scikit-learn's ``load_digits`` (1,797 real 8x8 handwritten digits), trained
in seconds on 2 cores: fc's real-data model for quantization tests and examples.

Conv-BN-ReLU, max pooling, a residual block (two convolutions and an Add + ReLU), global
average pooling and a classifier: after compilation every op class a quantizer must handle
(Conv with fused activation, MaxPool, residual Add, GlobalAveragePool, Flatten, Gemm).
Inputs are the digit images scaled to [0, 1] (pixel / 16), shape (N, 1, 8, 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "DigitsData", "load_digits_data", "train_digits_cnn"]


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.conv1 = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                   nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.head = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = torch.relu(x + self.conv2(self.conv1(x)))
        x = self.head(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@dataclass
class DigitsData:
    x_train: np.ndarray  # float32 (N, 1, 8, 8) in [0, 1]
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_data(test_size: float = 0.25, seed: int = 0) -> DigitsData:
    """The digits with a stratified held-out test split (scikit-learn ships the data)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=test_size,
                                          random_state=seed, stratify=d.target)
    return DigitsData(xtr, ytr, xte, yte)


def train_digits_cnn(data: DigitsData | None = None, *, epochs: int = 40, seed: int = 0
                     ) -> tuple[DigitsCNN, DigitsData]:
    """Train with Adam; returns the model in eval mode. One thread, so the result is the same
    on every machine (and a small model trains faster alone than against busy cores)."""
    data = data or load_digits_data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(data, epochs, seed), data
    finally:
        torch.set_num_threads(threads)


def _train(data: DigitsData, epochs: int, seed: int) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()
