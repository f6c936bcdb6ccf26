"""Dropout: zero each value with probability p during training, scale the rest by 1/(1-p)."""

import numpy as np

from ..random import generator
from ..tensor import Tensor
from .operands import check_floating


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    """y = x * mask / (1 - p), mask ~ Bernoulli(1 - p) drawn from ``rng`` (a numpy Generator).

    The expected value is unchanged, so evaluation (training=False) is the identity.
    """
    check_floating("dropout", x=x)
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    rng = generator(rng)
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / np.asarray(1 - p, x.dtype)
    return x * keep
