"""PyTorch models fc defines itself (torchvision does not import with fc's torch pin)."""

from fc.zoo.torch.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]
