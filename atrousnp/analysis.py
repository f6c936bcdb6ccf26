"""Two of the paper's analyses that need no training, computed by atrousnp's own operations.

**Valid taps (the paper's Figure 4).** A 3x3 filter at rate r, applied to an n x n map with
"same" padding, reads 9 positions r pixels apart; near the border some of them fall on
padding. Apply im2col to a map of ones: each column then holds 1 for each tap on real input
and 0 for each tap on padding, so a column's sum is the output position's number of valid
taps. As r approaches n the filter degenerates to its centre tap: no rate that large sees
context, which is why DeepLabv3 adds image-level features (global pooling) to ASPP.

Per axis, the centre tap i and the taps i - r, i + r give max(n - 2r, 0) positions with 3
valid taps, min(max(2r - n, 0), n) with only the centre, and the rest with 2. A position's count is the
product of its two axes' counts, so 9 valid taps cover ((n - 2r)/n)^2 of a map for r <= n/2.

**Effective receptive field.** The input pixels that one output pixel depends on, and how
strongly: the gradient of that output with respect to the input. For a single 3x3 conv at
rate r it is nonzero on exactly the 9 taps; through a network it shows what output stride
and atrous rates do to the field of view.
"""

import numpy as np

from .autograd import no_grad
from .backends import get_backend
from .tensor import tensor

VALID_TAP_COUNTS = (1, 4, 9)  # the paper's curves: only the centre, a corner's 2x2, all nine


def valid_taps(size: int, rate: int, kernel: int = 3) -> np.ndarray:
    """(size, size) ints: how many of a kernel x kernel filter's taps at ``rate`` land on real
    input (not padding), at each output position of a size x size map with "same" padding.
    Computed by im2col on a map of ones."""
    ones = np.ones((1, 1, size, size))
    half_span = rate * (kernel - 1) // 2
    cols = get_backend("numpy").im2col(ones, (kernel, kernel), (1, 1), (half_span, half_span), (rate, rate))
    return cols.sum(axis=0).astype(int).reshape(size, size)


def valid_tap_shares(size: int, rates, counts=VALID_TAP_COUNTS) -> dict:
    """{count: [share of output positions with exactly ``count`` valid taps, for each rate]}."""
    maps = [valid_taps(size, rate) for rate in rates]
    return {count: [float(np.mean(m == count)) for m in maps] for count in counts}


def effective_receptive_field(model, input_shape, position=None, seed=0) -> np.ndarray:
    """|d output[:, :, i, j].sum() / d x|, summed over images and channels: (H, W), for a
    standard-normal input of ``input_shape`` (N, C, H, W) drawn with ``seed``, at output
    position (i, j) (default: the centre). The model runs in eval mode (batch norm's running
    statistics), as at inference; through ReLUs the field depends on the input, hence a seed."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    x = tensor(np.random.default_rng(seed).standard_normal(input_shape).astype(dtype), requires_grad=True)
    try:
        out = model(x)
        i, j = position if position is not None else (out.shape[2] // 2, out.shape[3] // 2)
        out[:, :, i, j].sum().backward()
    finally:
        model.train(was_training)
    with no_grad():
        return np.abs(x.grad.numpy()).sum(axis=(0, 1))
