"""The Numba backend: NumPy arrays, computed by parallel, jitted loops where they beat NumPy.

It inherits every primitive from the NumPy backend and replaces those where a kernel
(``kernels.py``) reads its inputs once, writes its output once and runs on every core, where
NumPy's chain of single-threaded ufunc calls allocates and streams the whole array once per
call. GEMMs stay in NumPy's BLAS, which no hand loop beats; a conv chooses its way of feeding
them (``conv_paths.py``).
"""

import math

import numpy as np

from ..numpy import NumpyBackend
from ..primitives import Backend, conv_out_hw
from . import conv_paths, kernels, memory, threads
from .conv_paths import as_ncl


def as_planes(a):
    """(N, C, H, W) as a C-contiguous (N*C, H, W): one image's channel a plane."""
    return np.ascontiguousarray(a).reshape(-1, *a.shape[2:])


def memory_order(a):
    """a's axes of more than one element, from the one whose step in memory is longest to the
    one whose step is shortest (size-1 axes, whose strides mean nothing, left out)."""
    return tuple(sorted((axis for axis in range(a.ndim) if a.shape[axis] > 1), key=lambda axis: -a.strides[axis]))


def in_memory_order(a):
    """a's elements as a flat view in the order they lie in memory, or None if a is not a
    transpose of a contiguous array."""
    if a.flags.c_contiguous:                  # the common case, without sorting axes
        return a.reshape(-1)
    in_order = a.transpose(sorted(range(a.ndim), key=lambda axis: -a.strides[axis]))
    return in_order.reshape(-1) if in_order.flags.c_contiguous else None


def laid_out_like(p, a):
    """a (of p's shape) in p's memory order and dtype: a itself if it is so already, else a copy;
    a new uninitialised array if a is None."""
    if a is not None and a.dtype == p.dtype and (
            a.flags.c_contiguous and p.flags.c_contiguous   # the common case, without sorting axes
            or memory_order(a) == memory_order(p) and in_memory_order(a) is not None):
        return a
    out = np.empty_like(p)                    # order "K": p's layout
    if a is not None:
        out[...] = a
    return out


class NumbaBackend(NumpyBackend):
    name = "numba"
    float_dtypes = Backend.float_dtypes

    def __init__(self):
        """Selecting this backend (set_backend, use_backend or the default, at first use) sets
        numba's threading layer for the process: OpenMP with threads that sleep when idle where
        that can be made sure of, else workqueue (``threads.py``), unless the user chose one. It
        also asks malloc to keep freed memory for the next step's arrays (``memory.py``), unless
        the user chose malloc's settings. OpenBLAS's threads are left as they are: letting them
        sleep pays on large maps only (``blas.py``, which a user calls)."""
        threads.choose_threading_layer()
        memory.keep_freed_memory()

    def matmul(self, a, b):
        """a @ b. A C-contiguous stack of matrices a: (..., n, k) times one matrix b: (k, m) is one
        GEMM, a's rows stacked as (... * n, k), where np.matmul calls one per matrix of a: bilinear
        resize's second product, (2, 21, 321, 21) @ (21, 321), took 3.5 ms as 42 GEMMs, 1.1 as one
        (the whole resize, forward, 3.7 -> 1.7 ms)."""
        if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:
            rows = np.matmul(a.reshape(math.prod(a.shape[:-1]), a.shape[-1]), b)
            return rows.reshape(a.shape[:-1] + b.shape[-1:])
        return np.matmul(a, b)

    def im2col(self, x, kernel, stride, padding, dilation):
        return conv_paths.im2col(x, kernel, stride, padding, dilation)

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        return conv_paths.col2im(cols, x_shape, kernel, stride, padding, dilation)

    def bn_stats(self, x):
        mean, var = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
        kernels.bn_stats(as_ncl(x), mean, var)
        return mean, var

    def conv2d_forward(self, x, weight, stride, padding, dilation, groups):
        """By the path ``conv_paths.choose`` picks for the conv's shape; on the "im2col" path the NumPy
        backend's im2col and GEMM, on this backend's im2col."""
        path, plan = conv_paths.choose(x, weight, stride, padding, dilation, groups)
        if path == "im2col":
            return super().conv2d_forward(x, weight, stride, padding, dilation, groups)
        return conv_paths.FORWARD[path](x, weight, (tuple(weight.shape[2:]), stride, padding, dilation), plan)

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        """By the forward's path (``conv_paths.BACKWARD``). grad must have the forward's output
        shape: the paths' kernels index it without bounds checks."""
        expected = (x.shape[0], weight.shape[0]) + conv_out_hw(x.shape, weight.shape[2:], stride, padding, dilation)
        if tuple(grad.shape) != expected:
            raise ValueError(f"conv2d_backward: grad has shape {tuple(grad.shape)}, but the conv of x {tuple(x.shape)} "
                             f"with weight {tuple(weight.shape)} has output shape {expected}")
        path, plan = conv_paths.choose(x, weight, stride, padding, dilation, groups)
        if path == "im2col":
            return super().conv2d_backward(grad, x, weight, stride, padding, dilation, groups, needs_dx,
                                           needs_dweight)
        return conv_paths.BACKWARD[path](grad, x, weight, (tuple(weight.shape[2:]), stride, padding, dilation), plan,
                                         needs_dx, needs_dweight)

    def zip(self, op, a, b):
        """A sum of two large C-contiguous arrays of one shape and dtype, as autograd's sums of
        gradients are, by a parallel kernel; below ``kernels.PARALLEL_ADD_MIN`` elements NumPy's
        own add, which does not pay for waking a thread, is faster."""
        if (op == "add" and isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and a.dtype.type in (np.float32, np.float64)
                and a.size >= kernels.PARALLEL_ADD_MIN and a.flags.c_contiguous and b.flags.c_contiguous):
            out = np.empty(a.shape, a.dtype)
            kernels.add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
            return out
        return super().zip(op, a, b)

    # -- fused ops, each one kernel ------------------------------------------------------------
    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        scale = 1 / np.sqrt(var + eps)                       # the (C,) work stays in NumPy
        if weight is not None:
            scale = scale * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        out = np.empty(x.shape, np.result_type(x.dtype, scale.dtype))
        residual = np.empty((0, 1, 1), out.dtype) if residual is None else as_ncl(residual)
        kernels.channel_affine(as_ncl(x), scale.astype(out.dtype), shift.astype(out.dtype), residual, relu,
                               as_ncl(out))
        return out

    def relu_backward(self, grad, out):
        dx = np.empty(grad.shape, grad.dtype)
        kernels.relu_backward(np.ascontiguousarray(grad).ravel(), np.ascontiguousarray(out).ravel(), dx.ravel())
        return dx

    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        c = x.shape[1]
        inv_std = 1 / np.sqrt(var + eps)
        scale = inv_std if weight is None else inv_std * weight
        dx = np.empty(x.shape, np.result_type(grad.dtype, x.dtype))
        dweight, dbias = np.empty(c, mean.dtype), np.empty(c, mean.dtype)
        relu_out = np.empty((0, 1, 1), dx.dtype) if relu_out is None else as_ncl(relu_out)
        kernels.batch_norm_backward(as_ncl(grad), as_ncl(x), relu_out, mean, inv_std, scale, training, as_ncl(dx),
                                    dweight, dbias)
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
        total, weight_sum = kernels.softmax_cross_entropy(np.ascontiguousarray(logits),
                                                          np.ascontiguousarray(target), weight, ignore_index, lse)
        norm = weight_sum if weight_sum != 0 else 1.0
        dtype = logits.dtype.type
        return np.asarray(dtype(total / norm)), lse, np.asarray(dtype(norm))

    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        dlogits = np.empty(logits.shape, logits.dtype)
        weight = np.empty(0, logits.dtype) if weight is None else weight
        kernels.softmax_cross_entropy_backward(np.ascontiguousarray(logits), np.ascontiguousarray(target), weight,
                                               ignore_index, lse, float(grad) / float(norm), dlogits)
        return dlogits

    def max_pool2d_forward(self, x, kernel, stride, padding, dilation, out_hw):
        """One pass over x: (N, C, H, W) to (N, C, out_h, out_w), where functional.max_pool2d's
        composition pads x, writes an im2col kh*kw times its size and reads that again for the max."""
        out = np.empty(x.shape[:2] + tuple(out_hw), x.dtype)
        kernels.max_pool(as_planes(x), as_planes(out), x.dtype.type(-np.inf), *kernel, *stride, *padding, *dilation)
        return out

    def sgd_step(self, params, grads, buffers, lr, momentum, weight_decay, dampening, nesterov):
        """In place: each parameter and buffer is updated where it lies, in one parallel pass over
        the parameter's memory in the order it is laid out (a dilated conv's weight is stored tap
        by tap: nn/conv.py); a gradient or buffer laid out otherwise is first copied to match."""
        params = [p if in_memory_order(p) is not None else np.ascontiguousarray(p) for p in params]
        buffers = list(buffers)
        for k, (p, g) in enumerate(zip(params, grads)):
            first = buffers[k] is None
            if momentum:
                buffers[k] = laid_out_like(p, buffers[k])        # a buffer of its own, never the gradient
            flat_p = in_memory_order(p)
            flat_buf = in_memory_order(buffers[k]) if momentum else flat_p
            kernels.sgd_update_kernel(flat_p, in_memory_order(laid_out_like(p, g)), flat_buf, float(lr), momentum,
                                      weight_decay, dampening, nesterov, first)
        return params, buffers
