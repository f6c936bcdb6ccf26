"""Where a dilated kernel reads only padding, and how a convolution skips it.

Output pixel o of an axis reads input o*s - p + i*d through tap i of a kernel of k taps. Near the
border some taps land in the zero padding, and the larger the rate d, the more: on the 21x21 map
that DeepLabv3-ResNet-50 feeds ASPP at output stride 16 from a 321x321 image, a 3x3 kernel at
rate 18 has all nine taps inside the image at only 3x3 of the 21x21 outputs; everywhere else the
taps that fall outside multiply zeros. (The paper's Figure 4 makes the same count to argue for
image-level features: at rates near the map size the kernel degenerates to its centre tap.)

im2col + one GEMM computes every one of those zero products. Along one axis the outputs fall
into a few runs, *bands*, in which the same taps are valid (a contiguous range of them); a pair
of bands, one per axis, is a rectangular *region* of the output where the same (i, j) taps are
valid. Per region the convolution is a smaller im2col, of the valid taps only, and a GEMM with
the matching block of the weight: the products skipped are exactly those with padding.

    y[:, :, region] = W[:, :, i0:i1, j0:j1] @ patches(x, region, taps i0:i1, j0:j1)

A backend uses this where it pays (``plan`` returns None otherwise): each region is a GEMM
call of its own, so for a 3x3 kernel at rate 1 on a large map, where only the border rows lose
a tap, one GEMM over everything is faster.
"""

MIN_SAVING = 0.15  # skip padding only where that removes at least this share of the products


def axis_bands(size, out, kernel, stride, padding, dilation):
    """[(o0, o1, t0, t1)]: outputs o0 <= o < o1 see exactly the taps t0 <= t < t1 inside [0, size).

    Tap t of output o reads o*stride - padding + t*dilation; it is inside the input for
    ceil((padding - o*stride) / dilation) <= t <= floor((size - 1 + padding - o*stride) / dilation).
    An empty tap range (t0 == t1) marks outputs that read only padding."""
    bands = []
    for o in range(out):
        start = o * stride - padding
        t0 = min(kernel, max(0, -(start // dilation) if start < 0 else 0))
        t1 = max(t0, min(kernel, (size - 1 - start) // dilation + 1))
        if bands and bands[-1][2:] == (t0, t1):
            bands[-1] = (bands[-1][0], o + 1, t0, t1)
        else:
            bands.append((o, o + 1, t0, t1))
    return bands


def plan(x_shape, kernel, stride, padding, dilation, out_hw):
    """The regions [(rows band, columns band)] of a convolution, or None when skipping the
    padding would save less than MIN_SAVING of its products."""
    rows = axis_bands(x_shape[2], out_hw[0], kernel[0], stride[0], padding[0], dilation[0])
    columns = axis_bands(x_shape[3], out_hw[1], kernel[1], stride[1], padding[1], dilation[1])
    regions = [(r, c) for r in rows for c in columns]
    kept = sum((r[1] - r[0]) * (r[3] - r[2]) * (c[1] - c[0]) * (c[3] - c[2]) for r, c in regions)
    total = out_hw[0] * out_hw[1] * kernel[0] * kernel[1]
    return regions if kept <= (1 - MIN_SAVING) * total else None
