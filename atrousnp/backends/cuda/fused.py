"""The fused hot-path primitives as kernels: batch norm, ReLU's backward, softmax cross-entropy, SGD.

``backends/numpy.py`` defines each as a chain of NumPy operations; on a GPU every link of such a
chain is a launch (some 30 µs of host time) and an allocation, for a few microseconds of GPU
work. Here each is one kernel, or two where a reduction must finish before its result is used:

* per-channel sums (batch-norm statistics and backward) cut each channel's N*H*W values into
  parts (``reduce.row_parts``), so that channels x parts blocks fill the GPU even for 64
  channels; a block's threads stride through its part and combine their sums by warp shuffles
  (``reduce.block_reduce``), and a second launch, a thread per channel, adds each channel's
  parts in order: these sums are in float64, for accuracy (their docstrings say so);
* per-element work (the normalisation with its residual and ReLU, ReLU's backward, the SGD
  update) is one grid-stride loop, each thread working out its channel from its index by a
  32-bit division (``index.divmod32``), in the arrays' own dtype: numba types a Python
  literal such as ``0.0`` or ``1`` as a 64-bit number, which would turn float32 arithmetic
  into float64 (1/64 of the rate on consumer GPUs), so constants take the dtype of an array
  (``x.dtype.type(1)``) and a zero is stored, not chosen by ``... if ... else 0``;
* per-pixel work (softmax cross-entropy) gives each pixel a thread that walks the classes.

A missing optional array (no weight, no residual) is passed as an empty one, and the kernel
asks its size: numba compiles one kernel for both cases.
"""

import math

import numpy as np
from numba import cuda, float64
from numba import types as t

from ..scalar_rules import sgd_update
from . import launch as launching
from .index import divmod32
from .launch import THREADS, launch, launch_per_row
from .layout import flat
from .reduce import block_reduce, fold_parts, row_parts

sgd_rule = cuda.jit(device=True)(sgd_update)


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


@cuda.jit
def xent_pixels_kernel(logits, target, weight, ignore_index, c, length, lse, pixel_loss, pixel_weight):
    """Per pixel p of logits: (N, C, L) (flat): lse = log(sum exp), stable through the max; the
    weighted loss w_p * (lse - logits[t]) and the weight w_p (both 0 where ignored)."""
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    for p in range(cuda.grid(1), lse.size, cuda.gridsize(1)):
        image, pixel = divmod32(p, length)
        base = image * c * length + pixel
        top = logits[base]
        for k in range(1, c):
            top = max(top, logits[base + k * length])
        total = zero
        for k in range(c):
            total += math.exp(logits[base + k * length] - top)
        lse[p] = math.log(total) + top
        t = target[p]
        if t != ignore_index and 0 <= t < c:
            w = weight[t] if weight.size else one
            pixel_loss[p] = w * (lse[p] - logits[base + t * length])
            pixel_weight[p] = w
        else:
            pixel_loss[p] = zero
            pixel_weight[p] = zero


@cuda.jit
def xent_total_kernel(partials, parts, loss, norm):
    """One thread: loss = sum(pixel_loss) / norm, norm = sum(pixel_weight) (or 1 if that is 0),
    from the parts of each sum (partials: loss parts, then weight parts), in order, in float64."""
    if cuda.grid(1) == 0:
        total, weights = 0.0, 0.0
        for p in range(parts):
            total += partials[p]
            weights += partials[parts + p]
        norm[0] = weights if weights != 0 else 1.0
        loss[0] = total / norm[0]


@cuda.jit
def xent_backward_kernel(grad, logits, target, weight, ignore_index, lse, norm, c, length, dlogits):
    """dlogits = grad / norm * w_p * (softmax - onehot(t)); one thread per pixel, 0 where ignored."""
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    for p in range(cuda.grid(1), lse.size, cuda.gridsize(1)):
        image, pixel = divmod32(p, length)
        base = image * c * length + pixel
        t = target[p]
        factor = zero
        if t != ignore_index and 0 <= t < c:
            factor = (weight[t] if weight.size else one) * grad[0] / norm[0]
        for k in range(c):
            softmax = math.exp(logits[base + k * length] - lse[p])
            dlogits[base + k * length] = factor * (softmax - one) if k == t else factor * softmax


# Parameters per SGD launch: a launch's arguments travel in a 4 KiB parameter buffer, and each
# array argument takes 56 bytes of it (pointers, sizes, shape, strides); three tuples of 16 fit.
TENSORS_PER_LAUNCH = 16


@cuda.jit
def sgd_kernel(params, grads, buffers, starts, total, lr, momentum, weight_decay, dampening, nesterov, first):
    """SGD on a chunk of parameters at once, in place: tuples of flat arrays, parameter t's
    elements numbered from starts[t] in one index space of ``total`` elements that the grid strides.
    The rate is read from the device (``lr[0]``), so that a replayed CUDA graph sees each step's."""
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = 0
        while t + 1 < len(starts) and starts[t + 1] <= i:
            t += 1
        param, buf, j = params[t], buffers[t], i - starts[t]
        new_param, buf[j] = sgd_rule(param[j], grads[t][j], buf[j], lr[0], momentum, weight_decay, dampening,
                                     nesterov, first)
        param[j] = new_param                   # after buf: without momentum, buf is param itself


class FusedPrimitives:
    """The fused primitives of the CUDA backend, as methods it inherits. Arrays are C-contiguous
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

    def softmax_cross_entropy(self, logits, target, weight, ignore_index):
        n, c, length = logits.shape
        lse = self.empty((n, 1, length), logits.dtype)
        pixel_terms = self.empty((2, n * length), logits.dtype)       # each pixel's weighted loss, and weight
        pixel_loss, pixel_weight = pixel_terms[0], pixel_terms[1]
        launch(xent_pixels_kernel, n * length)(flat(logits), flat(target), self._or_none(weight, logits.dtype),
                                               ignore_index, c, length, flat(lse), pixel_loss, pixel_weight)
        parts = row_parts(2, n * length)
        partials = fold_parts("sum", flat(pixel_terms), 2, n * length, parts, self.empty)
        loss, norm = self.empty((1,), logits.dtype), self.empty((1,), logits.dtype)
        launch(xent_total_kernel, 1)(partials, parts, loss, norm)
        return loss.reshape(()), lse, norm.reshape(())

    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        n, c, length = logits.shape
        dlogits = self.empty(tuple(logits.shape), logits.dtype)
        launch(xent_backward_kernel, n * length)(flat(grad), flat(logits), flat(target),
                                                 self._or_none(weight, logits.dtype), ignore_index, flat(lse),
                                                 flat(norm), c, length, flat(dlogits))
        return dlogits

    def sgd_step(self, params, grads, buffers, lr, momentum, weight_decay, dampening, nesterov):
        """In place, a launch per chunk of TENSORS_PER_LAUNCH parameters of one dtype: where one
        launch per parameter would cost a ResNet-50 161 launches, this costs 11 (PyTorch's
        ``multi_tensor_apply`` chunks its tensor lists the same way, for the same reason).
        ``lr`` is the optimiser's 0-d float64 device array: the kernel reads the rate from it (in
        the parameters' dtype), so that a replayed CUDA graph uses each step's."""
        buffers, groups = list(buffers), {}
        new_buffers = sum(buffers[k] is None for k in range(len(params))) if momentum else 0
        if new_buffers and launching.CAPTURE is not None:
            launching.CAPTURE.refuse_new_momentum(new_buffers)
        for k, p in enumerate(params):
            first = bool(momentum) and buffers[k] is None
            if first:
                buffers[k] = self.empty(tuple(p.shape), p.dtype)   # a buffer of its own, never the gradient
            groups.setdefault((p.dtype, first), []).append(k)
        rates = {dtype: self.astype(flat(lr), dtype) for dtype, _ in groups}     # the rate in each dtype
        for (dtype, first), indices in groups.items():
            for c in range(0, len(indices), TENSORS_PER_LAUNCH):
                chunk = indices[c:c + TENSORS_PER_LAUNCH]
                sizes = [params[k].size for k in chunk]
                starts = tuple(int(v) for v in np.cumsum([0] + sizes[:-1]))
                bufs = tuple(flat(buffers[k] if momentum else params[k]) for k in chunk)
                launch(sgd_kernel, sum(sizes))(tuple(flat(params[k]) for k in chunk),
                                               tuple(flat(self.astype(grads[k], params[k].dtype)) for k in chunk),
                                               bufs, starts, sum(sizes), rates[dtype], *(dtype.type(v) for v in (
                                                   momentum, weight_decay, dampening)), nesterov, first)
        return list(params), buffers



def _length(x):
    """The pixels per channel of x: (N, C, ...)."""
    return int(np.prod(x.shape[2:], dtype=np.int64))


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i1, i, f, f64, flag = dtype[::1], t.int64[::1], t.int64, dtype, t.float64, t.boolean
    chunk = t.UniTuple(a1, TENSORS_PER_LAUNCH)
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
        ("xent pixels", xent_pixels_kernel, (a1, i1, a1, i, i, i, a1, a1, a1)),
        ("xent total", xent_total_kernel, (a1, i, a1, a1)),
        ("xent backward", xent_backward_kernel, (a1, a1, i1, a1, i, a1, a1, i, i, a1)),
        ("sgd", sgd_kernel, (chunk, chunk, chunk, t.UniTuple(i, TENSORS_PER_LAUNCH), i, a1) + (f,) * 3
                           + (flag, flag)),
    ]
