"""DeepLabv3 and its atrous ResNet backbones."""

from .deeplabv3 import (ASPP, DeepLabV3, deeplabv3_resnet18, deeplabv3_resnet50, deeplabv3_resnet101,
                        deeplabv3_small)
from .resnet import ResNet, resnet18, resnet50, resnet101, resnet_small
from .torchvision import from_torchvision

__all__ = ["ASPP", "DeepLabV3", "ResNet", "deeplabv3_resnet101", "deeplabv3_resnet18", "deeplabv3_resnet50",
           "deeplabv3_small", "from_torchvision", "resnet101", "resnet18", "resnet50", "resnet_small"]
