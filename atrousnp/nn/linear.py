"""Linear (fully connected) layers, and Flatten, which feeds them from a conv's (N, C, H, W)."""

import numpy as np

from .. import functional as F
from ..functional.operands import positive_int
from ..random import generator
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x @ weight^T + bias; x: (..., in_features), weight: (out_features, in_features).

    weight and bias start uniform in [-1/sqrt(in_features), 1/sqrt(in_features)], PyTorch's
    default (kaiming_uniform_ with a = sqrt(5)), drawn from ``rng``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None, dtype=np.float32):
        super().__init__()
        positive_int("Linear", "in_features", in_features)
        positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        rng = generator(rng)
        self.weight = init.default_(Parameter(np.empty((out_features, in_features), dtype)), in_features, rng)
        self.bias = init.default_(Parameter(np.empty(out_features, dtype)), in_features, rng) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Merge axes start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)
