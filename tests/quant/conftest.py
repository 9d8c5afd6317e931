"""Shared fixtures of the quantization tests: real trained models as fused IR.

The digits CNN is trained here (scikit-learn's handwritten digits, ~5 s); torch models reach
fc through ONNX (``fc.quant.testing.torch_to_fused``).
"""

from __future__ import annotations

import pytest
import torch

from fc.quant.testing import torch_to_fused


@pytest.fixture(scope="session")
def digits():
    """(trained DigitsCNN, DigitsData, fused IR)."""
    from fc.zoo.torch.digits import train_digits_cnn

    torch.manual_seed(0)
    model, data = train_digits_cnn()
    fused = torch_to_fused(model, torch.from_numpy(data.x_test[:1]), "digits_cnn")
    return model, data, fused


@pytest.fixture(scope="session")
def digits_float_logits(digits):
    model, data, _ = digits
    with torch.no_grad():
        return model(torch.from_numpy(data.x_test)).numpy()


