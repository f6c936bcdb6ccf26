"""Losses as layers, for code written the PyTorch way: ``criterion = nn.CrossEntropyLoss()``."""

from .. import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """``F.cross_entropy(logits, target, ...)`` with its settings fixed when built.

    One deliberate difference from PyTorch: ``ignore_index`` defaults to 255, the label that
    PASCAL VOC gives to object borders and unlabelled pixels, where PyTorch's default is -100."""

    def __init__(self, weight=None, ignore_index=255, reduction="mean", label_smoothing=0.0):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"CrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, self.ignore_index, self.weight, self.reduction, self.label_smoothing)
