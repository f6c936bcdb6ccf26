"""The other fused primitives as kernels: softmax cross-entropy and SGD. Why a fused op is one
kernel rather than a chain of launches, why constants come in typed, and how a missing optional
array (here: no class weights) is passed, ``batch_norm.py`` says; what is particular here:

* softmax cross-entropy gives each pixel a thread that walks the classes, and its two totals
  (the weighted loss and the weight) are folded in parts and added in order, in float64;
* SGD's update is one grid-stride loop over a chunk of parameters, in their own dtype
  (``dtype.type(momentum)``).
"""

import math

import numpy as np
from numba import cuda
from numba import types as t

from ..scalar_rules import sgd_update
from . import launch as launching
from .index import divmod32
from .launch import launch
from .layout import flat
from .reduce import fold_parts, row_parts

sgd_rule = cuda.jit(device=True)(sgd_update)


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
    """Cross-entropy's and SGD's primitives of the CUDA backend, as methods it inherits (as
    ``BatchNormPrimitives``, which says what ``self`` provides; astype() too, here)."""

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


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i1, i, f, flag = dtype[::1], t.int64[::1], t.int64, dtype, t.boolean
    chunk = t.UniTuple(a1, TENSORS_PER_LAUNCH)
    return [
        ("xent pixels", xent_pixels_kernel, (a1, i1, a1, i, i, i, a1, a1, a1)),
        ("xent total", xent_total_kernel, (a1, i, a1, a1)),
        ("xent backward", xent_backward_kernel, (a1, a1, i1, a1, i, a1, a1, i, i, a1)),
        ("sgd", sgd_kernel, (chunk, chunk, chunk, t.UniTuple(i, TENSORS_PER_LAUNCH), i, a1) + (f,) * 3
                           + (flag, flag)),
    ]
