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

from . import scalar_rules, tap_regions
from .base import conv_out_hw
from .numpy_backend import NumpyBackend

# Numba's OpenMP layer leaves its threads spinning after a parallel loop, and they take the
# cores from the BLAS GEMM that follows im2col (a conv's forward+backward ran 20% slower);
# the workqueue layer's threads sleep. A user's own NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@njit(cache=True, inline="always")
def _inside(offset, stride, size, count):
    """The range [lo, hi) of output positions o in [0, count) whose input position
    o * stride + offset lies inside [0, size): outside it a tap reads padding."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if offset >= size else min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True)
def _im2col(x, cols, i0, ni, j0, nj, oh0, rh, ow0, rw, sh, sw, ph, pw, dh, dw):
    """Fill cols: (C*ni*nj, N*rh*rw) with the patches of x: (N, C, H, W) for the taps i0 <= i < i0+ni,
    j0 <= j < j0+nj and the outputs oh0 <= oh < oh0+rh, ow0 <= ow < ow0+rw (all of them for a
    whole im2col; a region of them where a convolution skips the padding, see tap_regions.py)."""
    n, c, h, w = x.shape
    taps, area = ni * nj, rh * rw
    for task in prange(c * taps * n):                      # one (channel, tap, image) segment per task
        row, b = task // n, task % n
        ch, i, j = row // taps, (row // nj) % ni, row % nj
        top = oh0 * sh + (i0 + i) * dh - ph                # input pixel of the region's output (0, 0)
        left = ow0 * sw + (j0 + j) * dw - pw
        oh_lo, oh_hi = _inside(top, sh, h, rh)
        ow_lo, ow_hi = _inside(left, sw, w, rw)
        src, dst = x[b, ch].ravel(), cols[row, b * area:(b + 1) * area]
        if oh_lo > 0 or oh_hi < rh or ow_lo > 0 or ow_hi < rw:
            dst[:] = 0                                     # the tap reads padding somewhere
        for oh in range(oh_lo, oh_hi):
            start = (oh * sh + top) * w + left
            dst[oh * rw + ow_lo:oh * rw + ow_hi] = src[start + ow_lo * sw:start + ow_hi * sw:sw]


@njit(parallel=True, cache=True)
def _col2im(cols, x, i0, ni, j0, nj, oh0, rh, ow0, rw, sh, sw, ph, pw, dh, dw):
    """Add every entry of cols: (C*ni*nj, N*rh*rw), laid out as _im2col's, into its pixel of
    x: (N, C, H, W). Adds to what x holds, so the regions of a convolution accumulate."""
    n, c, h, w = x.shape
    taps, area = ni * nj, rh * rw
    for plane in prange(n * c):              # one (image, channel) plane per task: no write races
        b, ch = plane // c, plane % c
        dst = x[b, ch].ravel()
        for tap in range(taps):
            i, j = tap // nj, tap % nj
            top = oh0 * sh + (i0 + i) * dh - ph
            left = ow0 * sw + (j0 + j) * dw - pw
            oh_lo, oh_hi = _inside(top, sh, h, rh)
            ow_lo, ow_hi = _inside(left, sw, w, rw)
            src = cols[ch * taps + tap, b * area:(b + 1) * area]
            for oh in range(oh_lo, oh_hi):
                start = (oh * sh + top) * w + left
                for ow in range(ow_lo, ow_hi):     # a loop, not slice +=, which would build a temporary
                    dst[start + ow * sw] += src[oh * rw + ow]


@njit(parallel=True, cache=True)
def _bn_stats(x, mean, var):
    """Per-channel mean and biased variance in two passes (the second sums squared
    deviations, which cancels nothing), accumulated in float64. One channel per task."""
    n, c, h, w = x.shape
    count = n * h * w
    for ch in prange(c):
        total = 0.0
        for b in range(n):
            for v in x[b, ch].ravel():
                total += v
        mu = total / count
        squares = 0.0
        for b in range(n):
            for v in x[b, ch].ravel():
                squares += (v - mu) * (v - mu)
        mean[ch], var[ch] = mu, squares / count


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


@njit(parallel=True, cache=True)
def _batch_norm_backward(grad, x, relu_out, mean, inv_std, scale, training, dx, dweight, dbias):
    """Two passes per channel, one channel per task: the sums of g and g * x_hat, then dx; g is
    grad masked by relu_out > 0 when relu_out is given (non-empty). x_hat is recomputed in both
    passes rather than stored; sums accumulate in float64."""
    n, c, length = x.shape
    count = n * length
    masked = relu_out.shape[0] > 0
    for ch in prange(c):
        mu, inv = mean[ch], inv_std[ch]
        sum_g, sum_gx = 0.0, 0.0
        for b in range(n):
            for i in range(length):
                g = grad[b, ch, i] if not masked or relu_out[b, ch, i] > 0 else 0.0
                sum_g += g
                sum_gx += g * ((x[b, ch, i] - mu) * inv)
        dbias[ch], dweight[ch] = sum_g, sum_gx
        k = scale[ch]
        mean_g, mean_gx = (sum_g / count, sum_gx / count) if training else (0.0, 0.0)
        for b in range(n):
            for i in range(length):
                g = grad[b, ch, i] if not masked or relu_out[b, ch, i] > 0 else 0.0
                x_hat = (x[b, ch, i] - mu) * inv
                dx[b, ch, i] = k * (g - mean_g - x_hat * mean_gx)


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


_sgd_rule = njit(inline="always", cache=True)(scalar_rules.sgd_update)


@njit(parallel=True, cache=True)
def _sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """One parameter's SGD step, in place on param and buf (flat arrays of one size; buf is param
    itself without momentum, so it is written first)."""
    for i in prange(param.size):
        new_param, buf[i] = _sgd_rule(param[i], grad[i], buf[i], lr, momentum, weight_decay, dampening, nesterov, first)
        param[i] = new_param


def _region_cols(x, region, stride, padding, dilation):
    """im2col of one region, ((oh0, oh1, i0, i1), (ow0, ow1, j0, j1)) as tap_regions.py makes them."""
    (oh0, oh1, i0, i1), (ow0, ow1, j0, j1) = region
    cols = np.empty((x.shape[1] * (i1 - i0) * (j1 - j0), x.shape[0] * (oh1 - oh0) * (ow1 - ow0)), x.dtype)
    _im2col(x, cols, i0, i1 - i0, j0, j1 - j0, oh0, oh1 - oh0, ow0, ow1 - ow0, *stride, *padding, *dilation)
    return cols


def _add_region_cols(cols, x, region, stride, padding, dilation):
    (oh0, oh1, i0, i1), (ow0, ow1, j0, j1) = region
    _col2im(cols, x, i0, i1 - i0, j0, j1 - j0, oh0, oh1 - oh0, ow0, ow1 - ow0, *stride, *padding, *dilation)


def _region_weight(weight, rows, columns):
    """The weight's block of the region's valid taps, as a (K, C * taps) matrix."""
    return weight[:, :, rows[2]:rows[3], columns[2]:columns[3]].reshape(weight.shape[0], -1)


def _as_ncl(a):
    """A C-contiguous view of (N, C, ...) as (N, C, L)."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)



class NumbaBackend(NumpyBackend):
    name = "numba"

    # Buffers are allocated here, by NumPy, not inside the kernels: NumPy asks for huge pages
    # on large arrays, and a 40 MB im2col buffer filled ran twice as fast as one Numba allocated.

    def im2col(self, x, kernel, stride, padding, dilation):
        out_h, out_w = conv_out_hw(x.shape, kernel, stride, padding, dilation)
        whole = ((0, out_h, 0, kernel[0]), (0, out_w, 0, kernel[1]))
        return _region_cols(np.ascontiguousarray(x), whole, stride, padding, dilation)

    def bn_stats(self, x):
        mean, var = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
        _bn_stats(np.ascontiguousarray(x), mean, var)
        return mean, var

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
        x = np.zeros(x_shape, cols.dtype)
        _add_region_cols(np.ascontiguousarray(cols), x, ((0, out_h, 0, kernel[0]), (0, out_w, 0, kernel[1])),
                         stride, padding, dilation)
        return x

    def conv2d_forward(self, x, weight, stride, padding, dilation, groups):
        """Where a dilated kernel reads much padding, one im2col + GEMM per region of the output
        in which the same taps are valid, skipping the padded ones (tap_regions.py)."""
        kernel = tuple(weight.shape[2:])
        out_hw = conv_out_hw(x.shape, kernel, stride, padding, dilation)
        regions = tap_regions.plan(x.shape, kernel, stride, padding, dilation, out_hw) if groups == 1 else None
        if regions is None:
            return super().conv2d_forward(x, weight, stride, padding, dilation, groups)
        x, (n, k) = np.ascontiguousarray(x), (x.shape[0], weight.shape[0])
        out = np.zeros((n, k) + out_hw, np.result_type(x.dtype, weight.dtype))   # outputs that read only padding stay 0
        for rows, columns in regions:
            if rows[2] == rows[3] or columns[2] == columns[3]:
                continue
            y = _region_weight(weight, rows, columns) @ _region_cols(x, (rows, columns), stride, padding, dilation)
            out[:, :, rows[0]:rows[1], columns[0]:columns[1]] = \
                y.reshape(k, n, rows[1] - rows[0], columns[1] - columns[0]).transpose(1, 0, 2, 3)
        return out

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        """Per region as the forward pass: dW[:, :, taps] += dy_r @ cols_r^T, dx += col2im_r(W_r^T @ dy_r)."""
        kernel = tuple(weight.shape[2:])
        regions = tap_regions.plan(x.shape, kernel, stride, padding, dilation, grad.shape[2:]) if groups == 1 else None
        if regions is None:
            return super().conv2d_backward(grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight)
        x, k = np.ascontiguousarray(x), weight.shape[0]
        dx = np.zeros(x.shape, x.dtype) if needs_dx else None
        dweight = np.zeros(weight.shape, weight.dtype) if needs_dweight else None
        for rows, columns in regions:
            if rows[2] == rows[3] or columns[2] == columns[3]:
                continue
            dy = np.ascontiguousarray(grad[:, :, rows[0]:rows[1], columns[0]:columns[1]].transpose(1, 0, 2, 3))
            dy = dy.reshape(k, -1)                                                   # (K, N * region pixels)
            if needs_dweight:
                cols = _region_cols(x, (rows, columns), stride, padding, dilation)
                taps = dweight[:, :, rows[2]:rows[3], columns[2]:columns[3]]
                taps += (dy @ cols.T).reshape(taps.shape)
                del cols
            if needs_dx:
                dcols = _region_weight(weight, rows, columns).T @ dy
                _add_region_cols(dcols, dx, (rows, columns), stride, padding, dilation)
        return dx, dweight

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
        relu_out = np.empty((0, 1, 1), x.dtype) if relu_out is None else _as_ncl(relu_out)
        _batch_norm_backward(_as_ncl(grad), _as_ncl(x), relu_out, mean, inv_std, scale, training,
                             _as_ncl(dx), dweight, dbias)
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
                        lr, momentum, weight_decay, dampening, nesterov, first)
        return params, buffers
