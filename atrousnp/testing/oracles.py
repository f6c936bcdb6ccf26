"""What a convolution must equal: the loop definitions of reference/, and scipy's correlation."""

import numpy as np
import scipy.signal

from atrousnp.reference.conv import conv2d as conv2d_loops  # noqa: F401 - re-exported for the checks
from atrousnp.reference.conv import conv2d_backward as conv2d_backward_loops  # noqa: F401
from atrousnp.reference.conv import im2col as im2col_loops  # noqa: F401


def scipy_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """Dilation as zero insertion: a rate-d kernel is the dense kernel with d-1 zeros between its
    taps; scipy correlates it ('valid') with the padded input, then every s-th pixel is kept."""
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    k_out, c_per_group, kh, kw = weight.shape
    dense = np.zeros((k_out, c_per_group, dh * (kh - 1) + 1, dw * (kw - 1) + 1), weight.dtype)
    dense[:, :, ::dh, ::dw] = weight
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = []
    for n in range(x.shape[0]):
        maps = []
        for k in range(k_out):
            first = (k // (k_out // groups)) * c_per_group
            full = sum(scipy.signal.correlate(x_pad[n, first + c], dense[k, c], mode="valid")
                       for c in range(c_per_group))
            maps.append(full[::sh, ::sw] + (0 if bias is None else bias[k]))
        out.append(maps)
    return np.array(out)
