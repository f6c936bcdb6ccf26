"""Layers and containers (``import atrousnp.nn as nn``)."""

from . import init
from .conv import Conv2d
from .layers import AdaptiveAvgPool2d, AvgPool2d, Dropout, Identity, MaxPool2d, ReLU
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss
from .module import Module, ModuleList, Parameter, Sequential
from .norm import BatchNorm2d

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout", "Flatten",
           "Identity", "Linear", "MaxPool2d", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "init"]
