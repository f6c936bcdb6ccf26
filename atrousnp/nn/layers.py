"""Stateless layers: each one calls its functional op with the arguments it was built with."""

import numbers

from .. import functional as F
from ..functional.operands import as_pair, positive_int
from .module import Module


def _check_window(layer, kernel_size, stride, padding, dilation=1):
    """A pooling window's settings, checked when the layer is built rather than at its first call."""
    kernel = as_pair(layer, "kernel_size", kernel_size, 1)
    if stride is not None:
        as_pair(layer, "stride", stride, 1)
    if any(p > k // 2 for p, k in zip(as_pair(layer, "padding", padding, 0), kernel)):
        raise ValueError(f"{layer}: padding {padding!r} must be at most half the kernel {kernel}")
    as_pair(layer, "dilation", dilation, 1)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    def forward(self, x):
        return x


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        _check_window("MaxPool2d", kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        _check_window("AvgPool2d", kernel_size, stride, padding)
        if divisor_override is not None:
            positive_int("AvgPool2d", "divisor_override", divisor_override)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)


class Dropout(Module):
    """Zero values with probability p in training, drawing the mask from ``rng``."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p, self.rng = p, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)
