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


PAPER_MAP = 33  # the paper's feature map at output stride 16: its 513-pixel crops, /16, rounded up (§4)


def scaled_rates(rates, map_size, paper_map=PAPER_MAP):
    """Atrous rates chosen for the paper's 33x33 map, scaled to a map_size x map_size one (at
    least 1): each rate covers the same share of the map, so Figure 4 says the same of it.
    ASPP's (6, 12, 18) on the 6x6 map of a 96-pixel crop at output stride 16 are (1, 2, 3)."""
    return tuple(max(1, round(rate * map_size / paper_map)) for rate in rates)


def feature_map_size(image_size, stride):
    """The side of the feature map after ``stride`` of downsampling: each halving (a stride-2 conv
    or max pool with padding) rounds up."""
    size = image_size
    for _ in range(int(np.log2(stride))):
        size = -(-size // 2)
    return size


def tap_audit(plan, image_size, stem_stride=4):
    """[(module path, map size, rate, share of the filter's taps on the image, share of
    positions where only the centre tap is)] for each atrous unit and each head branch of
    ``plan`` (from ``models.atrous_plan``) on an image_size x image_size input: which 3x3
    filters are, in effect, 1x1 on this map (a share of centre-only positions of 1)."""
    rows, stride = [], stem_stride
    for path, (unit_stride, rate) in plan.items():
        stride *= unit_stride
        if rate > 1 or path.startswith("classifier."):
            taps = valid_taps(feature_map_size(image_size, stride), rate)
            rows.append((path, taps.shape[0], rate, float(taps.mean() / 9), float(np.mean(taps == 1))))
    return rows


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
