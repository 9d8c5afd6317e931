"""PyTorch models fc defines itself (torchvision does not import with fc's torch pin), each
with seeded random weights, in eval mode. ``ZOO`` maps the names ``fcc compile torch NAME``
takes to (constructor, example input shape)."""

from fc.zoo.torch.centernet import CenterNet, centernet_resnet18
from fc.zoo.torch.mobilenet import MobileNetV2, mobilenet_v2
from fc.zoo.torch.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from fc.zoo.torch.unet import UNet, unet
from fc.zoo.torch.vgg import VGG, vgg16_bn
from fc.zoo.torch.vit import VisionTransformer, vit_tiny

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50", "MobileNetV2",
           "mobilenet_v2", "VGG", "vgg16_bn", "UNet", "unet", "CenterNet", "centernet_resnet18",
           "VisionTransformer", "vit_tiny", "ZOO"]

#: name -> (constructor(seed=...), default input shape)
ZOO = {
    "resnet18": (resnet18, (1, 3, 224, 224)),
    "resnet50": (resnet50, (1, 3, 224, 224)),
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224)),
    "vgg16_bn": (vgg16_bn, (1, 3, 224, 224)),
    "unet": (unet, (1, 3, 64, 64)),
    "centernet_resnet18": (centernet_resnet18, (1, 3, 256, 256)),
    "vit_tiny": (vit_tiny, (1, 3, 32, 32)),
}
