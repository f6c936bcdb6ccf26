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
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """Fill cols: (C*kh*kw, N*out_h*out_w) with the dilated patches of x: (N, C, H, W)."""
    n, c, h, w = x.shape
    taps, area = kh * kw, out_h * out_w
    for task in prange(c * taps * n):                      # one (channel, tap, image) segment per task
        row, b = task // n, task % n
        ch, i, j = row // taps, (row // kw) % kh, row % kw
        top, left = i * dh - ph, j * dw - pw               # input pixel of output (0, 0)
        oh_lo, oh_hi = _inside(top, sh, h, out_h)
        ow_lo, ow_hi = _inside(left, sw, w, out_w)
        src, dst = x[b, ch].ravel(), cols[row, b * area:(b + 1) * area]
        dst[:] = 0                                         # taps that read padding
        for oh in range(oh_lo, oh_hi):
            start = (oh * sh + top) * w + left
            dst[oh * out_w + ow_lo:oh * out_w + ow_hi] = src[start + ow_lo * sw:start + ow_hi * sw:sw]


@njit(parallel=True, cache=True)
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """Add every entry of cols: (C*kh*kw, N*out_h*out_w) into its pixel of x: (N, C, H, W), zeroed."""
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
                start = (oh * sh + top) * w + left
                for ow in range(ow_lo, ow_hi):     # a loop, not slice +=, which would build a temporary
                    dst[start + ow * sw] += src[oh * out_w + ow]


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


class NumbaBackend(NumpyBackend):
    name = "numba"

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
        _bn_stats(np.ascontiguousarray(x), mean, var)
        return mean, var

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
        x = np.zeros(x_shape, cols.dtype)
        _col2im(np.ascontiguousarray(cols), x, *kernel, *stride, *padding, *dilation, out_h, out_w)
        return x
