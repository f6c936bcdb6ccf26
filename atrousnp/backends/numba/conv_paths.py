"""How the Numba backend computes a convolution: one of five paths, chosen by the conv's shape.

* **pointwise**: a 1x1 kernel (of one group) multiplies each image's pixels as they lie,
  y[n] = W @ x[n]: no transposed copy of x.
* **by tap**: a kernel of which more than a tenth of im2col's (tap, output) entries read padding
  (less than ``SPARSE_TAPS_BELOW`` of them read the image: a dilated kernel on a small map) is
  computed one tap at a time,
  y[:, :, window] += W[:, :, i, j] @ x[:, :, window shifted by the tap], each window cropped to the
  outputs whose tap (i, j) reads the image. On a 21x21 map (output stride 16 on a 321x321
  image) ASPP at rates 6 / 12 / 18 then does 66% / 38% / 18% of the dense products: the paper's
  Figure 4 is this effect. A tap's window of x is gathered as its GEMM's columns, (C, N*rows*cols),
  by a parallel kernel, and its products are added into y by the adjoint kernel; a stride-1 conv
  with "same" padding has a tap that reads the whole image (the center), which is a 1x1 conv
  and needs no gathering. Each tap's forward GEMM keeps all C input channels as its inner
  dimension, so it runs near OpenBLAS's peak. Where nearly all of im2col is image, one GEMM
  over it wins, hence the threshold; a 3x3 kernel that Winograd takes goes there first.
* **winograd**: a 3x3, stride-1 kernel, undilated (ResNet's bottlenecks) or dilated with at
  least ``DILATED_WINOGRAD_FROM`` of im2col image at a rate up to 4 (layer4's rate-2 convs at
  output stride 16, the rate-2 and rate-4 convs at 8), is Winograd's F(2x2, 3x3)
  (``winograd.py``): 16 GEMMs with 4/9 of the multiply-adds, on transformed tiles 4x the input
  where im2col's columns are 9x it. A dilated kernel is an undilated one on each phase of its
  output (rows and columns modulo the rate), and the phases' tiles share one set of GEMMs. Its
  input gradient is the same kind of conv.
* **blocks**: a conv whose im2col would exceed ``COLS_BLOCK_BYTES`` is computed in blocks of
  (image, channels): y[n] = sum over channel blocks of W[:, block] @ cols[block]. im2col's
  buffer is kh*kw times the input; for a 3x3 conv on 2048 channels at 21x21 (ASPP's input) it
  is 33 MB per image. In blocks, the peak is one block, and each block is read by its GEMM
  while it is still in the CPU's cache, not from main memory.
* **im2col**: any other conv (groups, say): the NumPy backend's one im2col and one GEMM, on
  this backend's parallel im2col.

The thresholds were measured (docs/design_notes.md); tests/test_conv.py holds every path to
the NumPy backend's definition.
"""

import math

import numpy as np

from ..primitives import conv_out_hw, is_pointwise
from . import gemm_batch, kernels, winograd

COLS_BLOCK_BYTES = 8 << 20  # an im2col block this size is consumed by its GEMM while still in cache
MIN_BLOCK_ROWS = 256        # a shallower block makes a GEMM too thin to run near its peak
DEEP_BLOCK_BYTES = 64 << 20  # ... so a block may grow to this size to reach that depth


def cols_blocks(x_shape, taps, area, itemsize):
    """[(image, first channel, end channel)]: blocks whose im2col, (channels*taps, area), holds
    at most COLS_BLOCK_BYTES, or more, up to DEEP_BLOCK_BYTES, where that makes a block
    MIN_BLOCK_ROWS rows deep (one channel at least). The stem's 7x7 conv on 3 channels at 321x321
    has 5 MB of im2col per channel: one channel a block made three GEMMs of depth 49 per image,
    slower than one of depth 147 (docs/design_notes.md)."""
    n, c = x_shape[:2]
    channel_bytes = taps * area * itemsize
    deep = min(-(-MIN_BLOCK_ROWS // taps), DEEP_BLOCK_BYTES // channel_bytes)
    step = max(1, COLS_BLOCK_BYTES // channel_bytes, deep)
    return [(b, c0, min(c, c0 + step)) for b in range(n) for c0 in range(0, c, step)]


# A conv whose im2col is less than this share image (the rest padding) goes tap by tap. Measured
# forward + backward on layer4's and ASPP's convs on 21x21, 41x41 and 65x65 maps (medians of 5;
# when the path still turned its arrays channels-last: it is a little faster now, which if
# anything moves the tie up, not measured again):
# by tap took 7-62% less time at every share up to 0.84, tied at 0.87, took 5-7% less at 0.88
# (layer4's rate-2 convs at output stride 16, two runs) and 4-6% more at 0.92 and 0.94.
SPARSE_TAPS_BELOW = 0.9

# A dilated 3x3 conv (stride 1) at a rate up to DILATED_WINOGRAD_MAX_RATE whose im2col is at
# least DILATED_WINOGRAD_FROM image goes to Winograd, by the phases of its output (winograd.py),
# rather than tap by tap or in blocks. Measured forward and backward, each alone (medians of 6):
# Winograd took 14-37% less time at shares 0.88 (layer4's rate-2 convs on 21x21), 0.92 and 0.96
# (output stride 8's rate-4 and rate-2 convs on 65x65), and 33-47% more at 0.76 (rate 4 on
# 21x21), as did ASPP's rate 12 on 65x65 (0.77, forward 38% more), where its tiles fit the
# phases worse and tap by tap skips more padding. Between 0.77 and 0.88, and above rate 4 (a
# phase, and a kernel launch, per rate squared), nothing was measured.
DILATED_WINOGRAD_FROM = 0.85
DILATED_WINOGRAD_MAX_RATE = 4


def tap_windows(in_hw, kernel, stride, padding, dilation, out_hw):
    """[((i, j), out corner, (rows, cols), in corner)] for each tap that reads the image somewhere:
    the outputs whose tap (i, j) reads the image form a rows x cols window starting at out
    corner, and they read the input pixels starting at in corner, every stride-th."""
    windows = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0] - padding[0], j * dilation[1] - padding[1]
            (oh_lo, oh_hi), (ow_lo, ow_hi) = (kernels.inside(top, stride[0], in_hw[0], out_hw[0]),
                                              kernels.inside(left, stride[1], in_hw[1], out_hw[1]))
            if oh_hi > oh_lo and ow_hi > ow_lo:
                windows.append(((i, j), (oh_lo, ow_lo), (oh_hi - oh_lo, ow_hi - ow_lo),
                                (oh_lo * stride[0] + top, ow_lo * stride[1] + left)))
    return windows


def swap_last_axes(a):
    """a: (..., R, S) as a contiguous (..., S, R), by the tiled parallel kernel."""
    a = np.ascontiguousarray(a)
    out = np.empty(a.shape[:-2] + a.shape[:-3:-1], a.dtype)
    batch = math.prod(a.shape[:-2])
    kernels.swap_last_axes(a.reshape(batch, *a.shape[-2:]), out.reshape(batch, *out.shape[-2:]))
    return out


def weight_taps(weight):
    """weight: (K, C, kh, kw) as (kh, kw, K, C), contiguous: each tap's (K, C) matrix a GEMM
    operand. A weight stored tap by tap already (a dilated Conv2d's: nn/conv.py) is that
    array itself, with no copy."""
    if stored_by_tap(weight):
        return weight.transpose(2, 3, 0, 1)
    k, c, kh, kw = weight.shape
    return swap_last_axes(weight.reshape(1, k * c, kh * kw)).reshape(kh, kw, k, c)


def stored_by_tap(weight):
    """Whether weight: (K, C, kh, kw) lies in memory as a contiguous (kh, kw, K, C)."""
    return weight.transpose(2, 3, 0, 1).flags.c_contiguous


def tap_columns(a, corner, size, stride):
    """The pixels corner + (r*sh, q*sw), r < rows, q < cols, of a C-contiguous a: (N, C, H, W), as a
    (C, N*rows*cols) matrix: the columns of one tap's GEMM, gathered by a parallel kernel."""
    (top, left), (rows, cols) = corner, size
    columns = np.empty((a.shape[1], a.shape[0], rows, cols), a.dtype)
    kernels.gather_window(a, columns, top, left, *stride)
    return columns.reshape(a.shape[1], -1)


def add_tap_columns(products, a, corner, size, stride):
    """tap_columns' adjoint: products: (C, N*rows*cols) added into their pixels of a: (N, C, H, W),
    in place."""
    (top, left), (rows, cols) = corner, size
    kernels.add_window(products.reshape(products.shape[0], a.shape[0], rows, cols), a, top, left, *stride)


def as_ncl(a):
    """A C-contiguous view of (N, C, ...) as (N, C, L)."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def im2col(x, kernel, stride, padding, dilation):
    """cols: (C*kh*kw, N*out_h*out_w) of x: (N, C, H, W), by the parallel kernel. Buffers are
    allocated here, by NumPy, not inside the kernels: NumPy asks for huge pages on large arrays,
    and a 40 MB im2col buffer filled ran twice as fast as one Numba allocated."""
    n, c = x.shape[:2]
    out_h, out_w = conv_out_hw(x.shape, kernel, stride, padding, dilation)
    cols = np.empty((c * kernel[0] * kernel[1], n * out_h * out_w), x.dtype)
    kernels.im2col(np.ascontiguousarray(x), cols, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return cols


def col2im(cols, x_shape, kernel, stride, padding, dilation):
    """im2col's adjoint: every entry of cols added into its pixel of a (N, C, H, W) of zeros."""
    out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
    x = np.zeros(x_shape, cols.dtype)
    kernels.col2im(np.ascontiguousarray(cols), x, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return x


def choose(x, weight, stride, padding, dilation, groups):
    """(path, plan): path one of "im2col", "pointwise", "by_tap" (plan: the taps' windows),
    "winograd" or "blocks" (plan: the im2col blocks)."""
    kernel = tuple(weight.shape[2:])
    if groups != 1:
        return "im2col", None
    if is_pointwise(kernel, stride, padding):
        return "pointwise", None
    out_hw = conv_out_hw(x.shape, kernel, stride, padding, dilation)
    taps, area = kernel[0] * kernel[1], out_hw[0] * out_hw[1]
    windows = tap_windows(x.shape[2:], kernel, stride, padding, dilation, out_hw)
    image_entries = sum(rows * cols for _, _, (rows, cols), _ in windows)    # of im2col's taps * area
    winograd_fits = kernel == (3, 3) and tuple(stride) == (1, 1) and all(p <= 2 * d for p, d in zip(padding, dilation))
    if winograd_fits and (tuple(dilation) == (1, 1) or max(dilation) <= DILATED_WINOGRAD_MAX_RATE
                          and image_entries >= DILATED_WINOGRAD_FROM * taps * area):
        return "winograd", None
    if image_entries < SPARSE_TAPS_BELOW * taps * area:
        return "by_tap", windows
    if x.shape[0] * x.shape[1] * taps * area * x.itemsize > COLS_BLOCK_BYTES:
        return "blocks", cols_blocks(x.shape, taps, area, x.itemsize)
    return "im2col", None


def pointwise_forward(x, weight, geometry, plan):
    """y[n] = W @ x[n], x[n] as (C, H*W): one GEMM per image, side by side where OpenBLAS can
    (gemm_batch.py)."""
    n, k = x.shape[0], weight.shape[0]
    y = np.empty((n, k) + x.shape[2:], np.result_type(x.dtype, weight.dtype))
    gemm_batch.matmul_each([weight.reshape(k, -1)] * n, as_ncl(x), y.reshape(n, k, -1))
    return y


def pointwise_backward(grad, x, weight, geometry, plan, needs_dx, needs_dweight):
    """dx[n] = W^T @ dy[n] and dW = sum_n dy[n] @ x[n]^T, on the arrays as they lie, one GEMM per
    image, side by side where OpenBLAS can (gemm_batch.py)."""
    w, dy = weight.reshape(weight.shape[:2]), as_ncl(grad)
    n, dtype = dy.shape[0], np.result_type(w.dtype, dy.dtype, x.dtype)
    dx = dweight = None
    if needs_dx:
        dx = np.empty(x.shape, dtype)
        gemm_batch.matmul_each([w.T] * n, dy, dx.reshape(n, w.shape[1], -1))
    if needs_dweight:
        per_image = gemm_batch.matmul_each(dy, as_ncl(x).transpose(0, 2, 1), np.empty((n,) + w.shape, dtype))
        if per_image.size < kernels.PARALLEL_ADD_MIN:
            dweight = per_image.sum(axis=0).reshape(weight.shape)
        else:
            dweight = np.empty(weight.shape, per_image.dtype)
            kernels.sum_rows(per_image.reshape(n, -1), dweight.reshape(-1))   # on every core
    return dx, dweight


def winograd_forward(x, weight, geometry, plan):
    """Winograd's F(2x2, 3x3) (winograd.py)."""
    return winograd.conv3x3(x, weight, geometry[2], geometry[3])


def winograd_backward(grad, x, weight, geometry, plan, needs_dx, needs_dweight):
    """dx is a 3x3 conv of dy, dW the adjoint of the forward's transforms: both by Winograd."""
    grad, (padding, dilation) = np.ascontiguousarray(grad), geometry[2:]
    return (winograd.conv3x3_input_grad(grad, weight, padding, dilation) if needs_dx else None,
            winograd.conv3x3_weight_grad(grad, x, padding, dilation, np.empty_like(weight, x.dtype, subok=False))
            if needs_dweight else None)


def whole_tap(windows, x_shape, out_hw, stride):
    """(the tap that reads all of x for all of y, as a 1x1 conv would, or None; the other windows).
    A stride-1 conv with "same" padding has one: its center tap."""
    for window in windows:
        tap, out_corner, size, in_corner = window
        if tuple(stride) == (1, 1) and size == tuple(out_hw) == tuple(x_shape[2:]) and out_corner == in_corner == (0, 0):
            return tap, [other for other in windows if other is not window]
    return None, windows


def by_tap_forward(x, weight, geometry, windows):
    """y[:, :, window] += W[:, :, i, j] @ x[:, :, window shifted by the tap], for each tap's window;
    a tap that reads the whole image first, as a 1x1 conv, which needs no gathered columns."""
    n, k, stride = x.shape[0], weight.shape[0], geometry[1]
    x, w_taps = np.ascontiguousarray(x), weight_taps(weight)
    out_hw = conv_out_hw(x.shape, *geometry)
    whole, windows = whole_tap(windows, x.shape, out_hw, stride)
    y = (np.zeros((n, k) + out_hw, np.result_type(x.dtype, weight.dtype)) if whole is None
         else pointwise_forward(x, w_taps[whole], None, None))
    for (i, j), out_corner, size, in_corner in windows:
        add_tap_columns(w_taps[i, j] @ tap_columns(x, in_corner, size, stride), y, out_corner, size, (1, 1))
    return y


def by_tap_backward(grad, x, weight, geometry, windows, needs_dx, needs_dweight):
    """dW[:, :, i, j] = dy[:, :, window] @ x[:, :, shifted window]^T and dx[:, :, shifted window] +=
    W[:, :, i, j]^T @ dy[:, :, window], each window as its GEMM's columns (tap_columns); a tap that
    reads the whole image as a 1x1 conv. dW is gathered tap by tap, (kh, kw, K, C), each GEMM
    writing a contiguous matrix, and turned to (K, C, kh, kw) once at the end, unless the weight
    itself is stored tap by tap."""
    stride = geometry[1]
    grad, x = np.ascontiguousarray(grad), np.ascontiguousarray(x)
    whole, windows = whole_tap(windows, x.shape, grad.shape[2:], stride)
    w_taps = weight_taps(weight) if needs_dx or whole is not None else None
    dw_taps = np.empty(weight.shape[2:] + weight.shape[:2], weight.dtype) if needs_dweight else None   # (kh, kw, K, C)
    if whole is None:
        dx = np.zeros(x.shape, np.result_type(grad.dtype, weight.dtype, x.dtype)) if needs_dx else None
    else:
        dx, dw_whole = pointwise_backward(grad, x, w_taps[whole], None, None, needs_dx, needs_dweight)
    if needs_dweight:
        read = {tap for tap, *_ in windows} | {whole}
        for tap in np.ndindex(*weight.shape[2:]):
            if tap not in read:
                dw_taps[tap] = 0                 # a tap that reads only padding
        if whole is not None:
            dw_taps[whole] = dw_whole
    for (i, j), out_corner, size, in_corner in windows:
        dy = tap_columns(grad, out_corner, size, (1, 1))                       # (K, N*rows*cols)
        if needs_dweight:
            np.matmul(dy, tap_columns(x, in_corner, size, stride).T, out=dw_taps[i, j])
        if needs_dx:
            add_tap_columns(w_taps[i, j].T @ dy, dx, in_corner, size, stride)
    if needs_dweight:   # laid out as the weight is, so that SGD pairs them element by element
        dweight = dw_taps.transpose(2, 3, 0, 1) if stored_by_tap(weight) else \
            swap_last_axes(dw_taps.reshape(1, -1, weight.shape[0] * x.shape[1])).reshape(weight.shape)
    return dx, (dweight if needs_dweight else None)


def blocked_forward(x, weight, geometry, blocks):
    """y[n] = sum over channel blocks of W[:, block] @ im2col(x[n, block])."""
    k = weight.shape[0]
    w = weight.reshape(k, -1)
    taps = w.shape[1] // x.shape[1]
    out = np.empty((x.shape[0], k) + conv_out_hw(x.shape, *geometry), x.dtype)
    for b, c0, c1 in blocks:
        cols, image_out = im2col(x[b:b + 1, c0:c1], *geometry), out[b].reshape(k, -1)
        if c0 == 0:
            np.matmul(w[:, :c1 * taps], cols, out=image_out)   # the first block writes, the rest add
        else:
            image_out += w[:, c0 * taps:c1 * taps] @ cols
    return out


def blocked_backward(grad, x, weight, geometry, blocks, needs_dx, needs_dweight):
    """dW[:, block] += dy[n] @ cols^T and dx[n, block] = col2im(W[:, block]^T @ dy[n]), each block's
    buffers freed before the next."""
    k = weight.shape[0]
    w, dy = weight.reshape(k, -1), as_ncl(grad)
    taps = w.shape[1] // x.shape[1]
    dweight = np.zeros_like(w) if needs_dweight else None
    dx = np.empty_like(x) if needs_dx else None
    for b, c0, c1 in blocks:
        rows = slice(c0 * taps, c1 * taps)
        if needs_dweight:
            dweight[:, rows] += dy[b] @ im2col(x[b:b + 1, c0:c1], *geometry).T
        if needs_dx:
            dx[b:b + 1, c0:c1] = col2im(w[:, rows].T @ dy[b], (1, c1 - c0) + x.shape[2:], *geometry)
    return dx, None if dweight is None else dweight.reshape(weight.shape)


FORWARD = {"pointwise": pointwise_forward, "by_tap": by_tap_forward, "winograd": winograd_forward,
           "blocks": blocked_forward}
BACKWARD = {"pointwise": pointwise_backward, "by_tap": by_tap_backward, "winograd": winograd_backward,
            "blocks": blocked_backward}
