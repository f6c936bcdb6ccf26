"""Numba-jitted CPU backend.

It computes on NumPy arrays, so it inherits every primitive from the NumPy backend and
replaces those where a jitted, parallel loop beats vectorised NumPy. GEMMs stay in
NumPy's BLAS, which no hand loop beats.

Kernels are compiled once per dtype and cached on disk (``cache=True``), so only the
first run on a machine pays for compilation.
"""

import numpy as np
from numba import njit, prange

from .base import conv_out_size
from .numpy_backend import NumpyBackend


@njit(parallel=True, cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    n, c, h, w = x.shape
    rows = c * kh * kw
    cols = np.empty((n, rows, out_h * out_w), x.dtype)
    for task in prange(n * rows):           # one (image, channel, tap) row per task
        b, row = task // rows, task % rows
        ch, i, j = row // (kh * kw), (row // kw) % kh, row % kw
        for oh in range(out_h):
            y = oh * sh - ph + i * dh
            for ow in range(out_w):
                xx = ow * sw - pw + j * dw
                inside = 0 <= y < h and 0 <= xx < w
                cols[b, row, oh * out_w + ow] = x[b, ch, y, xx] if inside else 0
    return cols


@njit(parallel=True, cache=True)
def _col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    x = np.zeros((n, c, h, w), cols.dtype)
    for plane in prange(n * c):              # one (image, channel) plane per task: no write races
        b, ch = plane // c, plane % c
        for i in range(kh):
            for j in range(kw):
                row = (ch * kh + i) * kw + j
                for oh in range(out_h):
                    y = oh * sh - ph + i * dh
                    if 0 <= y < h:
                        for ow in range(out_w):
                            xx = ow * sw - pw + j * dw
                            if 0 <= xx < w:
                                x[b, ch, y, xx] += cols[b, row, oh * out_w + ow]
    return x


class NumbaBackend(NumpyBackend):
    name = "numba"

    def im2col(self, x, kernel, stride, padding, dilation):
        out_h, out_w = (conv_out_size(x.shape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                        for a in (0, 1))
        return _im2col(np.ascontiguousarray(x), *kernel, *stride, *padding, *dilation, out_h, out_w)

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        out_h, out_w = (conv_out_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                        for a in (0, 1))
        return _col2im(np.ascontiguousarray(cols), *x_shape, *kernel, *stride, *padding, *dilation,
                       out_h, out_w)
