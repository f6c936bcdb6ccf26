"""Batch norm's fused primitives as kernels: statistics, the normalisation with its residual and
ReLU, its backward, and the running statistics.

``backends/numpy.py`` defines each as a chain of NumPy operations; on a GPU every link of such a
chain is a launch (some 30 µs of host time) and an allocation, for a few microseconds of GPU
work. Here each is one kernel, or two where a reduction must finish before its result is used:

* per-channel sums (the statistics, and the backward's two sums) cut each channel's N*H*W
  values into parts (``reduce.row_parts``), so that channels x parts blocks fill the GPU even
  for 64 channels; a block's threads stride through its part and combine their sums by warp
  shuffles (``reduce.block_reduce``), and a second launch, a thread per channel, adds each
  channel's parts in order: these sums are in float64, for accuracy (their docstrings say so);
* per-element work (the normalisation with its residual and ReLU, ReLU's backward) is one
  grid-stride loop, each thread working out its channel from its index by a 32-bit division
  (``index.divmod32``), in the arrays' own dtype: numba types a Python literal such as ``0.0``
  or ``1`` as a 64-bit number, which would turn float32 arithmetic into float64 (1/64 of the
  rate on consumer GPUs), so constants take the dtype of an array (``x.dtype.type(1)``) and a
  zero is stored, not chosen by ``... if ... else 0``.

A missing optional array (no weight, no residual) is passed as an empty one, and the kernel
asks its size: numba compiles one kernel for both cases.
"""

import math

import numpy as np
from numba import cuda, float64
from numba import types as t

from .index import divmod32
from .launch import THREADS, launch, launch_per_row
from .layout import flat
from .reduce import block_reduce, row_parts


@cuda.jit(device=True)
def _channel_index(j, ch, c, length):
    """The flat index of the j-th value (of N*L) of channel ch in x: (N, C, L)."""
    image, pixel = divmod32(j, length)
    return (image * c + ch) * length + pixel


@cuda.jit(device=True)
def _channel_of(i, c, length):
    """The channel of flat index i of x: (N, C, L)."""
    return divmod32(divmod32(i, length)[0], c)[1]


@cuda.jit(device=True)
def _part_range(b, parts, count):
    """Block b's channel, and the stretch [first, last) of that channel's ``count`` values it folds."""
    per_part = (count + parts - 1) // parts
    ch, p = divmod32(b, parts)
    return ch, p * per_part, min(count, (p + 1) * per_part)


@cuda.jit(device=True)
def _channel_sums(partials, ch, parts):
    """Channel ch's two sums (partials[0] and partials[1]), each added up over its parts in order."""
    first, second = 0.0, 0.0
    for p in range(ch * parts, (ch + 1) * parts):
        first += partials[0, p]
        second += partials[1, p]
    return first, second


@cuda.jit
def bn_partial_stats_kernel(x, c, length, parts, partials):
    """Per (channel, part) block: the sum and the sum of squares of x - shift over the part, into
    partials[0] and partials[1], in float64. shift is the channel's first value: sums of values
    near their mean lose no digits when the variance is computed from them."""
    partial = cuda.shared.array(THREADS, float64)
    for b in range(cuda.blockIdx.x, c * parts, cuda.gridDim.x):
        ch, first, last = _part_range(b, parts, x.size // c)
        shift = x[ch * length]
        total, squares = 0.0, 0.0
        for j in range(first + cuda.threadIdx.x, last, cuda.blockDim.x):
            d = x[_channel_index(j, ch, c, length)] - shift
            total += d
            squares += d * d
        total = block_reduce(partial, total, 0)
        squares = block_reduce(partial, squares, 0)
        if cuda.threadIdx.x == 0:
            partials[0, b], partials[1, b] = total, squares


@cuda.jit
def bn_finish_stats_kernel(x, length, parts, partials, mean, var):
    """Mean and biased variance of each channel from its parts' shifted sums, in order, in
    float64 (a thread per channel)."""
    count = x.size // mean.size
    for ch in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        total, squares = _channel_sums(partials, ch, parts)
        shifted_mean = total / count
        mean[ch] = x[ch * length] + shifted_mean
        var[ch] = max(squares / count - shifted_mean * shifted_mean, 0.0)


@cuda.jit
def update_running_kernel(running_mean, running_var, mean, var, keep, momentum, unbiased_momentum):
    """In place: running = keep * running + momentum * batch (keep = 1 - momentum; the variance's
    momentum times the unbiasing factor); the factors come in the arrays' dtype."""
    for ch in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        running_mean[ch] = keep * running_mean[ch] + momentum * mean[ch]
        running_var[ch] = keep * running_var[ch] + unbiased_momentum * var[ch]


@cuda.jit
def bn_forward_kernel(x, mean, var, weight, bias, eps, residual, relu, c, length, out):
    """out = x * scale[c] + shift[c] (+ residual), ReLU'd if asked; each thread works out its
    channel's scale = weight / sqrt(var + eps) and shift = bias - mean * scale itself."""
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        ch = _channel_of(i, c, length)
        scale = one / math.sqrt(var[ch] + eps)
        if weight.size:
            scale *= weight[ch]
        value = (x[i] - mean[ch]) * scale
        if bias.size:
            value += bias[ch]
        if residual.size:
            value += residual[i]
        out[i] = zero if relu and value < zero else value


@cuda.jit
def relu_backward_kernel(grad, out, dx):
    zero = dx.dtype.type(0)
    for i in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        dx[i] = grad[i] if out[i] > zero else zero


@cuda.jit
def bn_backward_sums_kernel(grad, x, relu_out, mean, var, eps, c, length, parts, partials):
    """Per (channel, part) block: the sums of g and of g * x_hat over the part, into partials[0]
    and partials[1], in float64; g is grad masked by relu_out > 0 when relu_out is not empty."""
    partial = cuda.shared.array(THREADS, float64)
    for b in range(cuda.blockIdx.x, c * parts, cuda.gridDim.x):
        ch, first, last = _part_range(b, parts, x.size // c)
        mu, inv = mean[ch], 1 / math.sqrt(var[ch] + eps)
        sum_g, sum_gx = 0.0, 0.0
        for j in range(first + cuda.threadIdx.x, last, cuda.blockDim.x):
            i = _channel_index(j, ch, c, length)
            g = grad[i] if relu_out.size == 0 or relu_out[i] > 0 else 0
            sum_g += g
            sum_gx += g * (x[i] - mu) * inv
        sum_g = block_reduce(partial, sum_g, 0)
        sum_gx = block_reduce(partial, sum_gx, 0)
        if cuda.threadIdx.x == 0:
            partials[0, b], partials[1, b] = sum_g, sum_gx


@cuda.jit
def bn_backward_finish_kernel(mean, var, weight, eps, training, count, parts, partials, terms, dweight, dbias):
    """A thread per channel: its partial sums added in order, in float64, give dbias = sum g and
    dweight = sum g * x_hat, and the channel's three terms of dx = terms[0] * g - terms[1] -
    terms[2] * x, in x's dtype (see bn_backward_kernel)."""
    for ch in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        sum_g, sum_gx = _channel_sums(partials, ch, parts)
        dbias[ch], dweight[ch] = sum_g, sum_gx
        inv = 1 / math.sqrt(float64(var[ch]) + eps)
        scale = inv * weight[ch] if weight.size else inv
        mean_g = sum_g / count if training else 0.0
        mean_gx = sum_gx / count if training else 0.0
        # scale * (g - mean_g - (x - mu) * inv * mean_gx), as a * g - b - c * x:
        terms[0, ch] = scale
        terms[1, ch] = scale * (mean_g - mean[ch] * inv * mean_gx)
        terms[2, ch] = scale * inv * mean_gx


@cuda.jit
def bn_backward_kernel(grad, x, relu_out, c, length, terms, dx):
    """dx = terms[0] * g - terms[1] - terms[2] * x per element, with its channel's terms (from
    bn_backward_finish_kernel); g is grad masked by relu_out > 0 when relu_out is not empty."""
    zero = dx.dtype.type(0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        ch = _channel_of(i, c, length)
        g = grad[i] if relu_out.size == 0 or relu_out[i] > zero else zero
        dx[i] = terms[0, ch] * g - terms[1, ch] - terms[2, ch] * x[i]


class BatchNormPrimitives:
    """Batch norm's primitives of the CUDA backend, as methods it inherits. Arrays are C-contiguous
    device arrays; ``self`` provides empty(), and ``_or_none(a, dtype)``: a, or an empty array standing for it."""

    def bn_stats(self, x):
        c, length = x.shape[1], _length(x)
        parts = row_parts(c, x.size // c)
        partials = self.empty((2, c * parts), np.float64)
        launch_per_row(bn_partial_stats_kernel, c * parts)(flat(x), c, length, parts, partials)
        mean, var = self.empty((c,), x.dtype), self.empty((c,), x.dtype)
        launch(bn_finish_stats_kernel, c)(flat(x), length, parts, partials, mean, var)
        return mean, var

    def update_running_stats(self, running_mean, running_var, mean, var, momentum, count):
        typed = running_mean.dtype.type
        launch(update_running_kernel, mean.size)(running_mean, running_var, mean, var, typed(1 - momentum),
                                                 typed(momentum), typed(momentum * count / (count - 1)))
        return running_mean, running_var

    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        out = self.empty(tuple(x.shape), x.dtype)
        launch(bn_forward_kernel, x.size)(
            flat(x), mean, var, self._or_none(weight, x.dtype), self._or_none(bias, x.dtype), x.dtype.type(eps),
            self._or_none(None if residual is None else flat(residual), x.dtype), relu, x.shape[1], _length(x), flat(out))
        return out

    def relu_backward(self, grad, out):
        dx = self.empty(tuple(grad.shape), grad.dtype)
        launch(relu_backward_kernel, grad.size)(flat(grad), flat(out), flat(dx))
        return dx

    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        c, length = x.shape[1], _length(x)
        parts = row_parts(c, x.size // c)
        relu_out = self._or_none(None if relu_out is None else flat(relu_out), x.dtype)
        partials = self.empty((2, c * parts), np.float64)
        launch_per_row(bn_backward_sums_kernel, c * parts)(flat(grad), flat(x), relu_out, mean, var,
                                                           x.dtype.type(eps), c, length, parts, partials)
        terms = self.empty((3, c), x.dtype)
        dweight, dbias = self.empty((c,), x.dtype), self.empty((c,), x.dtype)
        launch(bn_backward_finish_kernel, c)(mean, var, self._or_none(weight, x.dtype), float(eps), training,
                                             x.size // c, parts, partials, terms, dweight, dbias)
        dx = self.empty(tuple(x.shape), x.dtype)
        launch(bn_backward_kernel, x.size)(flat(grad), flat(x), relu_out, c, length, terms, flat(dx))
        return dx, dweight, dbias


def _length(x):
    """The pixels per channel of x: (N, C, ...)."""
    return int(np.prod(x.shape[2:], dtype=np.int64))


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i, f, f64, flag = dtype[::1], t.int64, dtype, t.float64, t.boolean
    return [
        ("bn partial stats", bn_partial_stats_kernel, (a1, i, i, i, f64[:, ::1])),
        ("bn finish stats", bn_finish_stats_kernel, (a1, i, i, f64[:, ::1], a1, a1)),
        ("update running", update_running_kernel, (a1, a1, a1, a1, f, f, f)),
        ("bn forward", bn_forward_kernel, (a1, a1, a1, a1, a1, f, a1, flag, i, i, a1)),
        ("relu backward", relu_backward_kernel, (a1, a1, a1)),
        ("bn backward sums", bn_backward_sums_kernel, (a1, a1, a1, a1, a1, f, i, i, i, f64[:, ::1])),
        ("bn backward finish", bn_backward_finish_kernel, (a1, a1, a1, f64, flag, i, i, f64[:, ::1], dtype[:, ::1],
                                                           a1, a1)),
        ("bn backward", bn_backward_kernel, (a1, a1, a1, i, i, dtype[:, ::1], a1)),
    ]
