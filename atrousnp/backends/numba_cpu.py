"""Numba-jitted CPU backend.

It computes on NumPy arrays, so it inherits every primitive from the NumPy backend and
replaces those where a jitted, parallel loop beats vectorised NumPy. GEMMs stay in
NumPy's BLAS, which no hand loop beats.

Kernels are compiled once per dtype and cached on disk (``cache=True``), so only the
first run on a machine pays for compilation.
"""

import os

import numba
import numpy as np
from numba import njit, prange

from . import scalar_rules, winograd
from .base import Backend, _is_pointwise, conv_out_hw
from .numpy_backend import NumpyBackend


@njit(cache=True, inline="always")
def _inside(offset, stride, size, count):
    """The range [lo, hi) of output positions o in [0, count) whose input position
    o * stride + offset lies inside [0, size): outside it a tap reads padding."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if offset >= size else min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def _copy_row(dst, start, src, src_start, count, step):
    """dst[start:start + count] = src[src_start::step][:count]. A unit step is a slice copy, which
    Numba compiles to a vectorised loop; a strided slice would take a slow generic path."""
    if step == 1:
        dst[start:start + count] = src[src_start:src_start + count]
    else:
        for k in range(count):
            dst[start + k] = src[src_start + k * step]


@njit(parallel=True, cache=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """Fill cols: (C*kh*kw, N*out_h*out_w) with the dilated patches of x: (N, C, H, W).
    Each entry is written once: zeros only where the tap reads padding."""
    n, c, h, w = x.shape
    taps, area = kh * kw, out_h * out_w
    for task in prange(c * taps * n):                      # one (channel, tap, image) segment per task
        row, b = task // n, task % n
        ch, i, j = row // taps, (row // kw) % kh, row % kw
        top, left = i * dh - ph, j * dw - pw               # input pixel of output (0, 0)
        oh_lo, oh_hi = _inside(top, sh, h, out_h)
        ow_lo, ow_hi = _inside(left, sw, w, out_w)
        src, dst = x[b, ch].ravel(), cols[row, b * area:(b + 1) * area]
        dst[:oh_lo * out_w] = 0
        dst[oh_hi * out_w:] = 0
        for oh in range(oh_lo, oh_hi):
            start = oh * out_w
            dst[start:start + ow_lo] = 0
            dst[start + ow_hi:start + out_w] = 0
            _copy_row(dst, start + ow_lo, src, (oh * sh + top) * w + left + ow_lo * sw, ow_hi - ow_lo, sw)


@njit(cache=True, inline="always")
def _add_row(dst, start, src, src_start, count, step):
    """dst[start::step][:count] += src[src_start:src_start + count], _copy_row's adjoint; a unit
    step is again a slice, which ran 1.1-2x faster than an element loop (2026-11-23)."""
    if step == 1:
        dst[start:start + count] += src[src_start:src_start + count]
    else:
        for k in range(count):
            dst[start + k * step] += src[src_start + k]


@njit(parallel=True, cache=True)
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
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
            oh_lo, oh_hi = _inside(top, sh, h, out_h)
            ow_lo, ow_hi = _inside(left, sw, w, out_w)
            src = cols[ch * taps + tap, b * area:(b + 1) * area]
            for oh in range(oh_lo, oh_hi):
                _add_row(dst, (oh * sh + top) * w + left + ow_lo * sw, src, oh * out_w + ow_lo, ow_hi - ow_lo, sw)


# A float sum is a chain of dependent additions, each waiting for the last (4 cycles apiece),
# unless the compiler may reassociate it: then LLVM keeps several partial sums in SIMD registers.
# "reassoc" (with "contract", for fused multiply-adds) allows exactly that, and nothing about NaN
# or infinity; the sums, in float64, change at the level of rounding. The statistics ran 3-4x
# faster, batch norm's backward 2x (2026-11-23).
_REDUCTION_MATH = {"reassoc", "contract"}


@njit(parallel=True, cache=True, fastmath=_REDUCTION_MATH)
def _bn_stats(x, mean, var):
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
# Why these beat the composed defaults in base.py: each default is a chain of NumPy ufunc
# calls, and every call runs on one core, allocates its result and streams the whole tensor
# through memory once more. Each kernel below reads its inputs once, writes its output once,
# keeps the per-element work in registers, and splits the work over every core (prange).


@njit(parallel=True, cache=True)
def _channel_affine(x, scale, shift, residual, relu, out):
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


@njit(parallel=True, cache=True)
def _relu_backward(grad, out, dx):
    for i in prange(grad.size):
        dx[i] = grad[i] if out[i] > 0 else 0


@njit(parallel=True, cache=True, fastmath=_REDUCTION_MATH)
def _batch_norm_backward(grad, x, mean, inv_std, scale, training, dx, dweight, dbias):
    """Two passes per channel, one channel per task: the sums of g and g * x_hat, then dx.
    x_hat is recomputed in both passes rather than stored; sums accumulate in float64."""
    n, c, length = x.shape
    count = n * length
    for ch in prange(c):
        mu, inv = mean[ch], inv_std[ch]
        sum_g, sum_gx = 0.0, 0.0
        for b in range(n):
            for i in range(length):
                g = grad[b, ch, i]
                sum_g += g
                sum_gx += g * ((x[b, ch, i] - mu) * inv)
        dbias[ch], dweight[ch] = sum_g, sum_gx
        k = scale[ch]
        mean_g, mean_gx = (sum_g / count, sum_gx / count) if training else (0.0, 0.0)
        for b in range(n):
            for i in range(length):
                x_hat = (x[b, ch, i] - mu) * inv
                dx[b, ch, i] = k * (grad[b, ch, i] - mean_g - x_hat * mean_gx)


@njit(parallel=True, cache=True)
def _softmax_cross_entropy(logits, target, weight, ignore_index, lse):
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


@njit(parallel=True, cache=True)
def _softmax_cross_entropy_backward(logits, target, weight, ignore_index, lse, factor, dlogits):
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


@njit(parallel=True, cache=True)
def _taps_first(weight, out):
    """out[t, k, c] = weight[k, c, t] for weight: (K, C, taps): each tap's (K, C) matrix made
    contiguous, as a GEMM needs it, one output channel per task (NumPy's single-threaded
    transposing copy took 2.8 ms for an ASPP weight, this 1.5 ms)."""
    k_out, c, taps = weight.shape
    for k in prange(k_out):
        for t in range(taps):
            for ch in range(c):
                out[t, k, ch] = weight[k, ch, t]


_sgd_rule = njit(inline="always", cache=True)(scalar_rules.sgd_update)


@njit(parallel=True, cache=True)
def _sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """One parameter's SGD step, in place on param and buf (flat arrays of one size; buf is param
    itself without momentum, so it is written first)."""
    for i in prange(param.size):
        new_param, buf[i] = _sgd_rule(param[i], grad[i], buf[i], lr, momentum, weight_decay, dampening, nesterov, first)
        param[i] = new_param


COLS_BLOCK_BYTES = 8 << 20  # an im2col block this size is consumed by its GEMM while still in cache


def _cols_blocks(x_shape, taps, area, itemsize):
    """[(image, first channel, end channel)]: blocks whose im2col, (channels*taps, area), holds
    at most COLS_BLOCK_BYTES (one channel at least)."""
    n, c = x_shape[:2]
    step = max(1, COLS_BLOCK_BYTES // (taps * area * itemsize))
    return [(b, c0, min(c, c0 + step)) for b in range(n) for c0 in range(0, c, step)]


# A conv whose im2col is less than this share image (the rest padding) goes tap by tap. Measured
# crossover (2026-11-23, 2-core EPYC, ASPP 2048->256 and layer4 512->512 convs): by tap won at
# shares 0.37-0.66 (at 0.65 on a 41x41 map, forward+backward 527 ms against 682) and lost at 0.76-0.88.
SPARSE_TAPS_BELOW = 0.7


def _tap_windows(in_hw, kernel, stride, padding, dilation, out_hw):
    """[((i, j), out corner, (rows, cols), in corner)] for each tap that reads the image somewhere:
    the outputs whose tap (i, j) reads the image form a rows x cols window starting at out
    corner, and they read the input pixels starting at in corner, every stride-th."""
    windows = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0] - padding[0], j * dilation[1] - padding[1]
            (oh_lo, oh_hi), (ow_lo, ow_hi) = (_inside(top, stride[0], in_hw[0], out_hw[0]),
                                              _inside(left, stride[1], in_hw[1], out_hw[1]))
            if oh_hi > oh_lo and ow_hi > ow_lo:
                windows.append(((i, j), (oh_lo, ow_lo), (oh_hi - oh_lo, ow_hi - ow_lo),
                                (oh_lo * stride[0] + top, ow_lo * stride[1] + left)))
    return windows


def _weight_taps(weight):
    """weight: (K, C, kh, kw) as (kh, kw, K, C), contiguous."""
    k, c, kh, kw = weight.shape
    out = np.empty((kh, kw, k, c), weight.dtype)
    _taps_first(np.ascontiguousarray(weight).reshape(k, c, kh * kw), out.reshape(kh * kw, k, c))
    return out


def _window(a, corner, size, stride):
    """a[:, :, top::sh, left::sw] cropped to size = (rows, cols), as (C, N*rows*cols): the im2col
    of a 1x1 kernel whose padding is minus the corner, i.e. a crop."""
    n, c = a.shape[:2]
    cols = np.empty((c, n * size[0] * size[1]), a.dtype)
    _im2col(np.ascontiguousarray(a), cols, 1, 1, *stride, -corner[0], -corner[1], 1, 1, *size)
    return cols


def _add_window(cols, a, corner, size, stride):
    """a[:, :, window] += cols, in place: the adjoint of _window (col2im adds into a)."""
    _col2im(np.ascontiguousarray(cols), a, 1, 1, *stride, -corner[0], -corner[1], 1, 1, *size)


def _as_ncl(a):
    """A C-contiguous view of (N, C, ...) as (N, C, L)."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


class NumbaBackend(NumpyBackend):
    name = "numba"
    float_dtypes = Backend.float_dtypes

    def __init__(self):
        """Selecting this backend (set_backend, use_backend or the default, at first use) sets
        numba's threading layer for the process to "workqueue", unless NUMBA_THREADING_LAYER says
        otherwise: numba's OpenMP layer leaves its threads spinning after a parallel loop, and
        they take the cores from the BLAS GEMM that follows im2col (a conv's forward+backward ran
        20% slower); the workqueue layer's threads sleep. It takes effect if no parallel numba
        code has run in the process yet."""
        if "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER = "workqueue"

    # Buffers are allocated here, by NumPy, not inside the kernels: NumPy asks for huge pages
    # on large arrays, and a 40 MB im2col buffer filled ran twice as fast as one Numba allocated.

    def im2col(self, x, kernel, stride, padding, dilation):
        n, c = x.shape[:2]
        out_h, out_w = conv_out_hw(x.shape, kernel, stride, padding, dilation)
        cols = np.empty((c * kernel[0] * kernel[1], n * out_h * out_w), x.dtype)
        _im2col(np.ascontiguousarray(x), cols, *kernel, *stride, *padding, *dilation, out_h, out_w)
        return cols

    def bn_stats(self, x):
        mean, var = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
        _bn_stats(_as_ncl(x), mean, var)
        return mean, var

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
        x = np.zeros(x_shape, cols.dtype)
        _col2im(np.ascontiguousarray(cols), x, *kernel, *stride, *padding, *dilation, out_h, out_w)
        return x

    def _conv_path(self, x, weight, stride, padding, dilation, groups):
        """How this backend computes a conv: (path, plan), path one of "default", "pointwise",
        "by_tap" (plan: the taps' windows), "winograd" or "blocks" (plan: the im2col blocks)."""
        kernel = tuple(weight.shape[2:])
        if groups != 1:
            return "default", None
        if _is_pointwise(kernel, stride, padding):
            return "pointwise", None
        out_hw = conv_out_hw(x.shape, kernel, stride, padding, dilation)
        taps, area = kernel[0] * kernel[1], out_hw[0] * out_hw[1]
        windows = _tap_windows(x.shape[2:], kernel, stride, padding, dilation, out_hw)
        image_entries = sum(rows * cols for _, _, (rows, cols), _ in windows)    # of im2col's taps * area
        if image_entries < SPARSE_TAPS_BELOW * taps * area:
            return "by_tap", windows
        if kernel == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and max(padding) <= 2:
            return "winograd", None
        if x.shape[0] * x.shape[1] * taps * area * x.itemsize > COLS_BLOCK_BYTES:
            return "blocks", _cols_blocks(x.shape, taps, area, x.itemsize)
        return "default", None

    def conv2d_forward(self, x, weight, stride, padding, dilation, groups):
        """Four shapes get their own path; any other conv takes the default (one im2col, one GEMM).

        * A 1x1 kernel (of one group) multiplies each image's pixels as they lie, y[n] = W @ x[n]:
          no transposed copy of x, unlike the default's pointwise "im2col".
        * A dilated kernel on a small map, whose taps read mostly padding (less than
          SPARSE_TAPS_BELOW of its im2col is the image), is computed tap by tap:
          y[:, :, window] += W[:, :, i, j] @ x[:, :, window shifted by the tap], each window cropped
          to the outputs whose tap (i, j) reads the image. On a 21x21 map (output stride 16 on a
          321x321 image) ASPP at rates 6 / 12 / 18 then does 66% / 38% / 18% of the dense products:
          the paper's Figure 4 is this effect. Each tap's GEMM keeps all C input channels as its
          inner dimension, so it runs near OpenBLAS's peak where it is wide enough; on dense
          kernels the nine narrower GEMMs and the gathers lose to one GEMM, hence the threshold.
        * A 3x3, stride-1, undilated kernel (ResNet's bottlenecks) is Winograd's F(2x2, 3x3)
          (``winograd.py``): 16 GEMMs with 4/9 of the multiply-adds, on transformed tiles 4x the
          input where im2col's columns are 9x it. Its input gradient is the same kind of conv.
        * A conv whose im2col would exceed COLS_BLOCK_BYTES is computed in blocks of (image,
          channels): y[n] = sum over channel blocks of W[:, block] @ cols[block]. im2col's buffer
          is kh*kw times the input; for a 3x3 conv on ResNet-50's 2048 channels at 21x21 it is
          65 MB. In blocks, the peak is one block, and each block is read by its GEMM while it
          is still in the CPU's cache, not from main memory.
        """
        path, plan = self._conv_path(x, weight, stride, padding, dilation, groups)
        geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
        if path == "pointwise":
            n, k = x.shape[0], weight.shape[0]
            return np.matmul(weight.reshape(k, -1), _as_ncl(x)).reshape((n, k) + x.shape[2:])
        if path == "by_tap":
            return self._by_tap_forward(x, weight, geometry, plan)
        if path == "winograd":
            return winograd.conv3x3(x, weight, padding)
        if path == "blocks":
            return self._blocked_forward(x, weight, geometry, plan)
        return super().conv2d_forward(x, weight, stride, padding, dilation, groups)

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        """The forward's paths. A 1x1 kernel: dx[n] = W^T @ dy[n] and dW = sum_n dy[n] @ x[n]^T,
        on the arrays as they lie. Tap by tap: dW[:, :, i, j] = dy[window] @ x[shifted window]^T and
        dx[shifted window] += W[:, :, i, j]^T @ dy[window]. Winograd: both by Winograd (dx is
        a 3x3 conv of dy, dW the adjoint of the forward's transforms). In blocks of (image,
        channels): dW[:, block] += dy[n] @ cols^T and dx[n, block] = col2im(W[:, block]^T @ dy[n]),
        each block's buffers freed before the next."""
        path, plan = self._conv_path(x, weight, stride, padding, dilation, groups)
        geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
        if path == "pointwise":
            w, dy = weight.reshape(weight.shape[:2]), _as_ncl(grad)
            dx = np.matmul(w.T, dy).reshape(x.shape) if needs_dx else None
            dweight = np.matmul(dy, _as_ncl(x).transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape) \
                if needs_dweight else None
            return dx, dweight
        if path == "by_tap":
            return self._by_tap_backward(grad, x, weight, stride, plan, needs_dx, needs_dweight)
        if path == "winograd":
            grad = np.ascontiguousarray(grad)
            return (winograd.conv3x3_input_grad(grad, weight, padding) if needs_dx else None,
                    winograd.conv3x3_weight_grad(grad, x, padding) if needs_dweight else None)
        if path == "blocks":
            return self._blocked_backward(grad, x, weight, geometry, plan, needs_dx, needs_dweight)
        return super().conv2d_backward(grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight)

    def _by_tap_forward(self, x, weight, geometry, windows):
        stride, x = geometry[1], np.ascontiguousarray(x)       # once, not once per tap's window
        out = np.zeros((x.shape[0], weight.shape[0]) + conv_out_hw(x.shape, *geometry), x.dtype)
        w_taps = _weight_taps(weight)
        for (i, j), out_corner, size, in_corner in windows:
            _add_window(w_taps[i, j] @ _window(x, in_corner, size, stride), out, out_corner, size, (1, 1))
        return out

    def _by_tap_backward(self, grad, x, weight, stride, windows, needs_dx, needs_dweight):
        grad, x = np.ascontiguousarray(grad), np.ascontiguousarray(x)   # once, not once per tap
        w_taps = _weight_taps(weight)
        dweight = np.zeros(weight.shape, weight.dtype) if needs_dweight else None  # taps reading only padding: 0
        dx = np.zeros(x.shape, x.dtype) if needs_dx else None
        for (i, j), out_corner, size, in_corner in windows:
            dy = _window(grad, out_corner, size, (1, 1))                    # (K, N*rows*cols)
            if needs_dweight:
                dweight[:, :, i, j] = dy @ _window(x, in_corner, size, stride).T
            if needs_dx:
                _add_window(w_taps[i, j].T @ dy, dx, in_corner, size, stride)
        return dx, dweight

    def _blocked_forward(self, x, weight, geometry, blocks):
        k = weight.shape[0]
        w = weight.reshape(k, -1)
        taps = w.shape[1] // x.shape[1]
        out = np.zeros((x.shape[0], k) + conv_out_hw(x.shape, *geometry), x.dtype)
        for b, c0, c1 in blocks:
            cols = self.im2col(x[b:b + 1, c0:c1], *geometry)
            out[b] += (w[:, c0 * taps:c1 * taps] @ cols).reshape(out.shape[1:])
        return out

    def _blocked_backward(self, grad, x, weight, geometry, blocks, needs_dx, needs_dweight):
        k = weight.shape[0]
        w, dy = weight.reshape(k, -1), _as_ncl(grad)
        taps = w.shape[1] // x.shape[1]
        dweight = np.zeros_like(w) if needs_dweight else None
        dx = np.empty_like(x) if needs_dx else None
        for b, c0, c1 in blocks:
            rows = slice(c0 * taps, c1 * taps)
            if needs_dweight:
                dweight[:, rows] += dy[b] @ self.im2col(x[b:b + 1, c0:c1], *geometry).T
            if needs_dx:
                dx[b:b + 1, c0:c1] = self.col2im(w[:, rows].T @ dy[b], (1, c1 - c0) + x.shape[2:], *geometry)
        return dx, None if dweight is None else dweight.reshape(weight.shape)

    # -- fused hot-path primitives ---------------------------------------------------------
    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        scale = 1 / np.sqrt(var + eps)                       # the (C,) work stays in NumPy
        if weight is not None:
            scale = scale * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        out = np.empty(x.shape, np.result_type(x.dtype, scale.dtype))
        residual = np.empty((0, 1, 1), out.dtype) if residual is None else _as_ncl(residual)
        _channel_affine(_as_ncl(x), scale.astype(out.dtype), shift.astype(out.dtype), residual, relu, _as_ncl(out))
        return out

    def relu_backward(self, grad, out):
        dx = np.empty(grad.shape, grad.dtype)
        _relu_backward(np.ascontiguousarray(grad).ravel(), np.ascontiguousarray(out).ravel(), dx.ravel())
        return dx

    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        c = x.shape[1]
        inv_std = 1 / np.sqrt(var + eps)
        scale = inv_std if weight is None else inv_std * weight
        dx = np.empty(x.shape, np.result_type(grad.dtype, x.dtype))
        dweight, dbias = np.empty(c, mean.dtype), np.empty(c, mean.dtype)
        if relu_out is not None:  # a pass of its own: a branch in the kernel's inner loops cost more (measured)
            grad = self.relu_backward(grad, relu_out)
        _batch_norm_backward(_as_ncl(grad), _as_ncl(x), mean, inv_std, scale, training, _as_ncl(dx), dweight, dbias)
        return dx, dweight, dbias

    def update_running_stats(self, running_mean, running_var, mean, var, momentum, count):
        """In place: (C,) arrays, for which NumPy's own in-place ufuncs are all it takes."""
        for running, batch, factor in ((running_mean, mean, 1.0), (running_var, var, count / (count - 1))):
            running *= 1 - momentum
            running += (momentum * factor * batch).astype(running.dtype)
        return running_mean, running_var

    def softmax_cross_entropy(self, logits, target, weight, ignore_index):
        n, _, length = logits.shape
        lse = np.empty((n, 1, length), logits.dtype)
        weight = np.empty(0, logits.dtype) if weight is None else weight
        total, weight_sum = _softmax_cross_entropy(np.ascontiguousarray(logits), np.ascontiguousarray(target),
                                                   weight, ignore_index, lse)
        norm = weight_sum if weight_sum != 0 else 1.0
        dtype = logits.dtype.type
        return np.asarray(dtype(total / norm)), lse, np.asarray(dtype(norm))

    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        dlogits = np.empty(logits.shape, logits.dtype)
        weight = np.empty(0, logits.dtype) if weight is None else weight
        _softmax_cross_entropy_backward(np.ascontiguousarray(logits), np.ascontiguousarray(target), weight,
                                        ignore_index, lse, float(grad) / float(norm), dlogits)
        return dlogits

    def sgd_step(self, params, grads, buffers, lr, momentum, weight_decay, dampening, nesterov):
        """In place: each parameter and buffer is updated where it lies, in one parallel pass."""
        params, buffers = [np.ascontiguousarray(p) for p in params], list(buffers)
        for k, (p, g) in enumerate(zip(params, grads)):
            first = buffers[k] is None
            if momentum and first:
                buffers[k] = np.empty_like(p)          # a buffer of its own, never the gradient
            buf = buffers[k] if momentum else p
            _sgd_update(p.reshape(-1), np.ascontiguousarray(g, p.dtype).reshape(-1), buf.reshape(-1),
                        float(lr), momentum, weight_decay, dampening, nesterov, first)
        return params, buffers
