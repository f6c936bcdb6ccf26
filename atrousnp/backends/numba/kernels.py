"""The Numba backend's kernels: each a parallel loop (``prange``) over independent pieces of work,
compiled once per dtype and cached on disk (``cache=True``).

A kernel is written so that every task writes its own part of the output (an im2col row
segment, one image's channel plane, one channel's statistics): no two threads ever write one
element, so no locks or atomics are needed, and the loops compile to vectorised machine code.
"""

import numpy as np
from numba import njit, prange

from .. import scalar_rules
from .threads import parallel_kernel


@njit(cache=True, inline="always")
def inside(offset, stride, size, count):
    """The range [lo, hi) of output positions o in [0, count) whose input position
    o * stride + offset lies inside [0, size): outside it a tap reads padding."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if offset >= size else min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def copy_row(dst, start, src, src_start, count, step):
    """dst[start:start + count] = src[src_start::step][:count]. A unit step is a slice copy, which
    Numba compiles to a vectorised loop; a strided slice would take a slow generic path."""
    if step == 1:
        dst[start:start + count] = src[src_start:src_start + count]
    else:
        for k in range(count):
            dst[start + k] = src[src_start + k * step]


@parallel_kernel
def im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """Fill cols: (C*kh*kw, N*out_h*out_w) with the dilated patches of x: (N, C, H, W).
    Each entry is written once: zeros only where the tap reads padding."""
    n, c, h, w = x.shape
    taps, area = kh * kw, out_h * out_w
    for task in prange(c * taps * n):                      # one (channel, tap, image) segment per task
        row, b = task // n, task % n
        ch, i, j = row // taps, (row // kw) % kh, row % kw
        top, left = i * dh - ph, j * dw - pw               # input pixel of output (0, 0)
        oh_lo, oh_hi = inside(top, sh, h, out_h)
        ow_lo, ow_hi = inside(left, sw, w, out_w)
        src, dst = x[b, ch].ravel(), cols[row, b * area:(b + 1) * area]
        dst[:oh_lo * out_w] = 0
        dst[oh_hi * out_w:] = 0
        for oh in range(oh_lo, oh_hi):
            start = oh * out_w
            dst[start:start + ow_lo] = 0
            dst[start + ow_hi:start + out_w] = 0
            copy_row(dst, start + ow_lo, src, (oh * sh + top) * w + left + ow_lo * sw, ow_hi - ow_lo, sw)


@njit(cache=True, inline="always")
def add_row(dst, start, src, src_start, count, step):
    """dst[start::step][:count] += src[src_start:src_start + count], copy_row's adjoint; a unit
    step is again a slice, which Numba vectorises."""
    if step == 1:
        dst[start:start + count] += src[src_start:src_start + count]
    else:
        for k in range(count):
            dst[start + k * step] += src[src_start + k]


@parallel_kernel
def col2im(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """Add every entry of cols: (C*kh*kw, N*out_h*out_w) into its pixel of x: (N, C, H, W), in
    place (col2im passes zeros; a tap-by-tap conv adds each tap's window into a running sum)."""
    n, c, h, w = x.shape
    taps, area = kh * kw, out_h * out_w
    for plane in prange(n * c):              # one (image, channel) plane per task: no write races
        b, ch = plane // c, plane % c
        dst = x[b, ch].ravel()
        for tap in range(taps):
            i, j = tap // kw, tap % kw
            top, left = i * dh - ph, j * dw - pw
            oh_lo, oh_hi = inside(top, sh, h, out_h)
            ow_lo, ow_hi = inside(left, sw, w, out_w)
            src = cols[ch * taps + tap, b * area:(b + 1) * area]
            for oh in range(oh_lo, oh_hi):
                add_row(dst, (oh * sh + top) * w + left + ow_lo * sw, src, oh * out_w + ow_lo, ow_hi - ow_lo, sw)


@parallel_kernel
def gather_window(x, out, top, left, sh, sw):
    """out[c, b, r, q] = x[b, c, top + r*sh, left + q*sw]: the pixels of x: (N, C, H, W) that one
    tap of a conv reads for a window of its outputs (all inside the image), as out: (C, N, rows,
    cols), the columns of that tap's GEMM."""
    c, n, rows, cols = out.shape
    for task in prange(c * n):               # one (channel, image) plane per task
        ch, b = task // n, task % n
        for r in range(rows):
            copy_row(out[ch, b, r], 0, x[b, ch, top + r * sh], left, cols, sw)


@parallel_kernel
def add_window(p, y, top, left, sh, sw):
    """y[b, k, top + r*sh, left + q*sw] += p[k, b, r, q]: gather_window's adjoint, in place on y:
    (N, K, H, W), for p: (K, N, rows, cols), a tap's products. A plain loop, not add_row's slice
    add: on rows as short as a window's (15 numbers) Numba's slice add took 1.3-1.7x as long,
    though on col2im's long rows it is the faster."""
    k, n, rows, cols = p.shape
    for task in prange(k * n):               # one (channel, image) plane per task: no write races
        kk, b = task // n, task % n
        for r in range(rows):
            dst, src = y[b, kk, top + r * sh], p[kk, b, r]
            for q in range(cols):
                dst[left + q * sw] += src[q]


# A float sum is a chain of dependent additions, each waiting for the last (4 cycles apiece),
# unless the compiler may reassociate it: then LLVM keeps several partial sums in SIMD registers.
# "reassoc" (with "contract", for fused multiply-adds) allows exactly that, and nothing about NaN
# or infinity; the sums, in float64, change at the level of rounding. The statistics ran 3-4x
# faster, batch norm's backward 2x (docs/design_notes.md).
REDUCTION_MATH = {"reassoc", "contract"}


@parallel_kernel(fastmath=REDUCTION_MATH)
def bn_stats(x, mean, var):
    """Per-channel mean and biased variance of x: (N, C, L) in one pass, one channel per task. It
    sums d = x - shift and d^2 in float64, shift being the channel's first value: var = E[d^2] -
    E[d]^2 then cancels only as much as the data's spread around a value of its own, where the
    plain E[x^2] - E[x]^2 loses every digit to a large mean. One pass reads x once, not twice."""
    n, c, length = x.shape
    count = n * length
    for ch in prange(c):
        shift = float(x[0, ch, 0])
        total, squares = 0.0, 0.0
        for b in range(n):
            for i in range(length):
                d = x[b, ch, i] - shift
                total += d
                squares += d * d
        mean_d = total / count
        mean[ch], var[ch] = shift + mean_d, max(squares / count - mean_d * mean_d, 0.0)


# -- fused hot-path kernels ---------------------------------------------------------------
# Why these beat the NumPy backend's definitions (numpy.py): each of those is a chain of NumPy
# ufunc calls, and every call runs on one core, allocates its result and streams the whole tensor
# through memory once more. Each kernel below reads its inputs once, writes its output once,
# keeps the per-element work in registers, and splits the work over every core (prange).


@parallel_kernel
def channel_affine(x, scale, shift, residual, relu, out):
    """out = x * scale[c] + shift[c] (+ residual), ReLU'd if asked; arrays viewed as (N, C, L)."""
    n, c, length = x.shape
    for plane in prange(n * c):                       # one (image, channel) plane per task
        b, ch = plane // c, plane % c
        s, t = scale[ch], shift[ch]
        for i in range(length):
            v = x[b, ch, i] * s + t
            if residual.shape[0]:
                v += residual[b, ch, i]
            if relu and v < 0:
                v = 0
            out[b, ch, i] = v


# Two threads add 0.9-3.4M float32s in 0.57-0.68 of NumPy's time; at 2^18 they tie, and below
# that, waking a thread costs more than it saves (docs/design_notes.md).
PARALLEL_ADD_MIN = 1 << 18


@parallel_kernel
def add(a, b, out):
    """out = a + b, flat arrays of one length."""
    for i in prange(out.size):
        out[i] = a[i] + b[i]


@parallel_kernel
def sum_rows(a, out):
    """out[i] = a[0, i] + a[1, i] + ...: an (N, L) array's sum over its first axis (N >= 1), in
    that order."""
    for i in prange(out.size):
        total = a[0, i]
        for row in range(1, a.shape[0]):
            total += a[row, i]
        out[i] = total


@njit(cache=True)
def _taps_inside(outs, stride, pad, dilation, taps, size):
    """(first, end): for each output o, the range of the taps i whose pixel o*stride - pad +
    i*dilation lies in [0, size); found once per call, not per window (two divisions each)."""
    first, end = np.empty(outs, np.int64), np.empty(outs, np.int64)
    for o in range(outs):
        start = o * stride - pad
        first[o] = 0 if start >= 0 else (dilation - 1 - start) // dilation
        end[o] = max(first[o], 0 if start > size - 1 else min(taps, (size - 1 - start) // dilation + 1))
    return first, end


@parallel_kernel
def max_pool(x, out, lowest, kh, kw, sh, sw, ph, pw, dh, dw):
    """out[p, oh, ow] = max of the plane x[p] over the window at (oh*sh - ph + i*dh,
    ow*sw - pw + j*dw), ``lowest`` (-inf in x's dtype) where no tap reads x, NaN if one reads
    NaN. x, out: (planes, H, W), one plane per task; the taps inside x are found once per
    row and column of windows, so the inner loop tests no bounds."""
    planes, h, w = x.shape
    row_first, row_end = _taps_inside(out.shape[1], sh, ph, dh, kh, h)
    col_first, col_end = _taps_inside(out.shape[2], sw, pw, dw, kw, w)
    for p in prange(planes):
        for oh in range(out.shape[1]):
            i0, i1 = row_first[oh], row_end[oh]
            for ow in range(out.shape[2]):
                j0, j1 = col_first[ow], col_end[ow]
                top, saw_nan = lowest, False
                for i in range(i0, i1):
                    r = oh * sh - ph + i * dh
                    for j in range(j0, j1):
                        v = x[p, r, ow * sw - pw + j * dw]
                        top = v if v > top else top      # selects, not branches: branching on
                        saw_nan |= v != v                # the data, the kernel took 12 ms, not 4.3
                out[p, oh, ow] = np.nan if saw_nan else top


@parallel_kernel
def relu_backward(grad, out, dx):
    for i in prange(grad.size):
        dx[i] = grad[i] if out[i] > 0 else 0


@parallel_kernel(fastmath=REDUCTION_MATH)
def batch_norm_backward(grad, x, relu_out, mean, inv_std, scale, training, dx, dweight, dbias):
    """Two passes per channel, one channel per task: the sums of g and g * x_hat, then dx. Where
    relu_out has elements (the forward's output, when it applied the ReLU), g is masked by its
    sign as it is read, by a select rather than a branch (the compiler vectorises a select; a
    branch on the data it does not), so ReLU's backward costs no pass of its own: 2.2 -> 1.3 ms
    on (2, 256, 81, 81). Sums accumulate in float64; dx = k * g + slope * (x - mean) + offset is
    then computed in dx's dtype, with the channel's three coefficients worked out once in float64
    (in float64 the per-element arithmetic ran at half the SIMD width; in float32 dx carries a
    few roundings of k * g rather than one)."""
    n, c, length = x.shape
    count = n * length
    masked = relu_out.shape[0] > 0
    zero = dx.dtype.type(0)
    for ch in prange(c):
        mu, inv = mean[ch], inv_std[ch]
        sum_g, sum_gd = 0.0, 0.0
        for b in range(n):
            for i in range(length):
                g = grad[b, ch, i]
                if masked:
                    g = g if relu_out[b, ch, i] > 0 else zero
                sum_g += g
                sum_gd += g * (x[b, ch, i] - mu)
        sum_gx = sum_gd * inv                             # sum(g * x_hat)
        dbias[ch], dweight[ch] = sum_g, sum_gx
        # k * (g - sum_g / M - x_hat * sum_gx / M), x_hat = (x - mean) * inv
        mean_g, mean_gx = (sum_g / count, sum_gx / count) if training else (0.0, 0.0)
        k = dx.dtype.type(scale[ch])
        slope, offset = dx.dtype.type(-scale[ch] * mean_gx * inv), dx.dtype.type(-scale[ch] * mean_g)
        for b in range(n):
            for i in range(length):
                g = grad[b, ch, i]
                if masked:
                    g = g if relu_out[b, ch, i] > 0 else zero
                dx[b, ch, i] = k * g + slope * (x[b, ch, i] - mu) + offset


@parallel_kernel
def softmax_cross_entropy(logits, target, weight, ignore_index, lse):
    """Per pixel: lse = log(sum exp(logits)), stable through the max; returns the weighted loss
    sum and the weight sum (prange reduces both)."""
    n, c, length = logits.shape
    total, weight_sum = 0.0, 0.0
    for p in prange(n * length):
        b, i = p // length, p % length
        top = logits[b, 0, i]
        for k in range(1, c):
            top = max(top, logits[b, k, i])
        sum_exp = 0.0
        for k in range(c):
            sum_exp += np.exp(logits[b, k, i] - top)
        lse[b, 0, i] = np.log(sum_exp) + top
        t = target[b, i]
        if t != ignore_index and 0 <= t < c:
            w = weight[t] if weight.size else 1.0
            total += w * (lse[b, 0, i] - logits[b, t, i])
            weight_sum += w
    return total, weight_sum


@parallel_kernel
def softmax_cross_entropy_backward(logits, target, weight, ignore_index, lse, factor, dlogits):
    """dlogits = factor * w_p * (softmax - onehot(t)) per pixel; 0 at ignored pixels."""
    n, c, length = logits.shape
    for p in prange(n * length):
        b, i = p // length, p % length
        t = target[b, i]
        keep = t != ignore_index and 0 <= t < c
        w = (weight[t] if weight.size else 1.0) * factor if keep else 0.0
        for k in range(c):
            softmax = np.exp(logits[b, k, i] - lse[b, 0, i])
            dlogits[b, k, i] = w * (softmax - (1.0 if k == t else 0.0))


TILE = 32


@parallel_kernel
def swap_last_axes(a, out):
    """out[b, j, i] = a[b, i, j] for a: (B, R, S) and out: (B, S, R), in TILE x TILE tiles, one per
    task. A plain loop reads or writes with a stride of a whole row, touching a new cache line at
    every element; within a tile both sides reuse TILE lines that stay in L1. (NumPy's
    transposing copy is of the plain kind, and runs on one core.)"""
    batch, rows, cols = a.shape
    tiles_r, tiles_c = (rows + TILE - 1) // TILE, (cols + TILE - 1) // TILE
    for task in prange(batch * tiles_r * tiles_c):
        b, tile = task // (tiles_r * tiles_c), task % (tiles_r * tiles_c)
        r0, c0 = (tile // tiles_c) * TILE, (tile % tiles_c) * TILE
        for j in range(c0, min(c0 + TILE, cols)):
            for i in range(r0, min(r0 + TILE, rows)):
                out[b, j, i] = a[b, i, j]


sgd_rule = njit(inline="always", cache=True)(scalar_rules.sgd_update)


@parallel_kernel
def sgd_update_kernel(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """One parameter's SGD step, in place on param and buf (flat arrays of one size; buf is param
    itself without momentum, so it is written first)."""
    for i in prange(param.size):
        new_param, buf[i] = sgd_rule(param[i], grad[i], buf[i], lr, momentum, weight_decay, dampening, nesterov, first)
        param[i] = new_param
