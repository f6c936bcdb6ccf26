"""Losses as layers, for code written the PyTorch way: ``criterion = nn.CrossEntropyLoss()``."""

from .. import functional as F
from ..functional.loss import check_loss_settings
from .module import Module


class CrossEntropyLoss(Module):
    """``F.cross_entropy(logits, target, ...)`` with its settings fixed when built.

    One deliberate difference from PyTorch: ``ignore_index`` defaults to 255, the label that
    PASCAL VOC gives to object borders and unlabelled pixels, where PyTorch's default is -100."""

    def __init__(self, weight=None, ignore_index=255, reduction="mean", label_smoothing=0.0):
        super().__init__()
        check_loss_settings("CrossEntropyLoss", reduction, label_smoothing)
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, self.ignore_index, self.weight, self.reduction, self.label_smoothing)
