"""DeepLabv3 and its atrous ResNet backbones."""

from .deeplabv3 import (DeepLabV3, atrous_plan, deeplabv3_resnet18, deeplabv3_resnet50, deeplabv3_resnet101,
                        deeplabv3_small)
from .heads import ASPP, ASPPHead, CascadeHead, TorchvisionHead
from .resnet import ResNet, resnet18, resnet50, resnet101, resnet_small
from .torchvision import from_torchvision

__all__ = ["ASPP", "ASPPHead", "CascadeHead", "DeepLabV3", "ResNet", "TorchvisionHead", "atrous_plan", "deeplabv3_resnet101", "deeplabv3_resnet18", "deeplabv3_resnet50",
           "deeplabv3_small", "from_torchvision", "resnet101", "resnet18", "resnet50", "resnet_small"]
