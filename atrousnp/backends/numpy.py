"""The teaching backend: every primitive in plain, vectorised NumPy, and every fused op written
as the maths it is. It is the definition the other backends are tested against
(tests/test_fused.py), and the one to step through with a debugger: ``anp.set_backend("numpy")``.
"""

import numpy as np

from . import scalar_rules
from .primitives import Backend, conv_out_hw, is_pointwise


_UNARY = {"neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
          "sigmoid": scalar_rules.sigmoid, "relu": scalar_rules.relu, "step": scalar_rules.step}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "pow": np.power, "eq": np.equal, "ne": np.not_equal, "gt": np.greater, "ge": np.greater_equal,
           "lt": np.less, "le": np.less_equal}


class NumpyBackend(Backend):
    name = "numpy"
    float_dtypes = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype)

    def asarray(self, host_array, dtype=None):
        return np.asarray(host_array, dtype=dtype)

    def copy_from_host(self, target, host_array):
        np.copyto(target, host_array, casting="same_kind")

    def to_host(self, a):
        return np.array(a, copy=True)

    def owns(self, a):
        return isinstance(a, np.ndarray)

    def astype(self, a, dtype):
        return a.astype(dtype, copy=False)

    def map(self, op, a):
        return np.asarray(_UNARY[op](a)).astype(a.dtype, copy=False)

    def zip(self, op, a, b):
        return np.asarray(_BINARY[op](a, b))

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def reduce(self, op, a, axes, keepdims):
        if op == "sum":
            return np.asarray(np.sum(a, axis=axes, keepdims=keepdims))
        if op == "max":
            return np.asarray(np.max(a, axis=axes, keepdims=keepdims))
        if op == "argmax":
            (axis,) = axes
            return np.asarray(np.argmax(a, axis=axis, keepdims=keepdims))
        raise ValueError(f"reduce: unknown op {op!r}")

    def matmul(self, a, b):
        return np.matmul(a, b)

    def reshape(self, a, shape):
        return np.reshape(a, shape)

    def transpose(self, a, axes):
        return np.transpose(a, axes)

    def broadcast_to(self, a, shape):
        return np.broadcast_to(a, shape)

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    def getitem(self, a, index):
        return np.asarray(a[index])

    def index_add(self, shape, index, values):
        out = np.zeros(shape, values.dtype)
        np.add.at(out, index, values)
        return out

    def pad(self, a, widths, value):
        return np.pad(a, widths, mode="constant", constant_values=value)

    def concat(self, arrays, axis):
        return np.concatenate(arrays, axis=axis)

    def bn_stats(self, x):
        return x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))

    def im2col(self, x, kernel, stride, padding, dilation):
        n, c = x.shape[:2]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        out_h, out_w = conv_out_hw(x.shape, kernel, stride, padding, dilation)
        x_padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(1, 0, 2, 3)
        cols = np.empty((c, kh, kw, n, out_h, out_w), x.dtype)
        # One strided slice per kernel tap: tap (i, j) sees pixel (oh*s + i*d, ow*s + j*d).
        for i in range(kh):
            for j in range(kw):
                top, left = i * dh, j * dw
                cols[:, i, j] = x_padded[:, :, top:top + sh * (out_h - 1) + 1:sh,
                                         left:left + sw * (out_w - 1) + 1:sw]
        return cols.reshape(c * kh * kw, n * out_h * out_w)

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
        cols = cols.reshape(c, kh, kw, n, out_h, out_w)
        x_padded = np.zeros((c, n, h + 2 * ph, w + 2 * pw), cols.dtype)
        # The same taps as im2col, with += where im2col reads: overlapping taps add up.
        for i in range(kh):
            for j in range(kw):
                top, left = i * dh, j * dw
                x_padded[:, :, top:top + sh * (out_h - 1) + 1:sh,
                         left:left + sw * (out_w - 1) + 1:sw] += cols[:, i, j]
        return np.ascontiguousarray(x_padded[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))

    # -- fused ops, as their maths ----------------------------------------------------------

    def conv2d_forward(self, x, weight, stride, padding, dilation, groups):
        """y[n, g] = W_g @ cols_g[n], cols = im2col(x) as (G, C/G*kh*kw, N, L), L = out_h*out_w."""
        n, k = x.shape[0], weight.shape[0]
        geometry = (weight.shape[2:], stride, padding, dilation)
        cols = self._grouped_cols(x, groups, geometry)                             # (G, CKK_g, N*L)
        w = weight.reshape(groups, k // groups, -1)                                # (G, K_g, CKK_g)
        per_image = cols.reshape(cols.shape[0], cols.shape[1], n, -1).transpose(2, 0, 1, 3)   # (N, G, CKK_g, L)
        return np.matmul(w, per_image).reshape((n, k) + conv_out_hw(x.shape, *geometry))

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        """dW_g = dy_g @ cols_g^T and dx = col2im(W_g^T @ dy_g), dy_g: (G, K/G, N*L). cols is made
        again rather than kept from the forward: a network keeps no im2col buffer per layer alive
        between forward and backward."""
        k = weight.shape[0]
        geometry = (weight.shape[2:], stride, padding, dilation)
        dy = grad.transpose(1, 0, 2, 3).reshape(groups, k // groups, -1)
        w = weight.reshape(groups, k // groups, -1)
        dweight = (dy @ self._grouped_cols(x, groups, geometry).transpose(0, 2, 1)).reshape(weight.shape) \
            if needs_dweight else None
        dx = self._col2im_grouped(w.transpose(0, 2, 1) @ dy, x.shape, geometry) if needs_dx else None
        return dx, dweight

    def _grouped_cols(self, x, groups, geometry):
        """im2col of x: (N, C, H, W) as (G, C/G*kh*kw, N*L); for a pointwise kernel, x transposed."""
        n, c = x.shape[:2]
        if is_pointwise(*geometry[:3]):
            cols = x.transpose(1, 0, 2, 3).reshape(c, -1)
        else:
            cols = self.im2col(x, *geometry)
        return cols.reshape(groups, cols.shape[0] // groups, cols.shape[1])

    def _col2im_grouped(self, dcols, x_shape, geometry):
        """col2im of (G, C/G*kh*kw, N*L) back to x_shape; for a pointwise kernel, a transpose."""
        n, c, h, w = x_shape
        if is_pointwise(*geometry[:3]):
            return np.ascontiguousarray(dcols.reshape(c, n, h, w).transpose(1, 0, 2, 3))
        return self.col2im(dcols.reshape(-1, dcols.shape[2]), x_shape, *geometry)

    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        """y = (x - mean) / sqrt(var + eps) * weight + bias (+ residual), then max(y, 0) if ``relu``;
        x: (N, C, ...), the statistics and affine parameters (C,), shaped to broadcast per channel."""
        per_channel = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - mean.reshape(per_channel)) / np.sqrt(var.reshape(per_channel) + eps)
        if weight is not None:
            y = y * weight.reshape(per_channel)
        if bias is not None:
            y = y + bias.reshape(per_channel)
        if residual is not None:
            y = y + residual
        return np.maximum(y, 0) if relu else y

    def relu_backward(self, grad, out):
        """grad where the ReLU's output is positive, 0 elsewhere (0 also where grad is NaN or
        infinite there, as PyTorch's threshold_backward)."""
        return np.where(out > 0, grad, grad.dtype.type(0))

    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        """(dx, dweight, dbias), x_hat = (x - mean) / sqrt(var + eps), over M = N*H*W values per channel:
        dbias = sum(g), dweight = sum(g * x_hat),
        dx = weight / sqrt(var + eps) * (g - dbias / M - x_hat * dweight / M)   (training: the
        statistics depend on x), or weight / sqrt(var + eps) * g (evaluation)."""
        if relu_out is not None:
            grad = self.relu_backward(grad, relu_out)
        per_channel = (1, -1) + (1,) * (x.ndim - 2)
        axes = (0,) + tuple(range(2, x.ndim))
        inv_std = 1 / np.sqrt(var + eps)
        x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        dbias, dweight = grad.sum(axis=axes), (grad * x_hat).sum(axis=axes)
        if training:
            m = x.size // x.shape[1]
            grad = grad - dbias.reshape(per_channel) / m - x_hat * (dweight.reshape(per_channel) / m)
        scale = inv_std if weight is None else inv_std * weight
        return grad * scale.reshape(per_channel), dweight, dbias

    def update_running_stats(self, running_mean, running_var, mean, var, momentum, count):
        """running = (1 - m) * running + m * batch, the batch's variance made unbiased first."""
        unbiased_var = var * (count / (count - 1))
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * unbiased_var
        return new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)

    def softmax_cross_entropy(self, logits, target, weight, ignore_index):
        """(loss, lse, norm) for logits: (N, C, L), target: (N, L). ``picked`` holds each pixel's
        weight at its label's class and 0 elsewhere (0 everywhere where ignored), so that
        loss = sum(picked * (lse - logits)) / sum(picked)."""
        lse = _log_sum_exp(logits)                                                   # (N, 1, L)
        picked = _target_weights(target, logits.shape[1], weight, ignore_index, logits.dtype)   # (N, C, L)
        total, norm = (picked * (lse - logits)).sum(), picked.sum()
        if norm == 0:                                   # every pixel ignored: the loss is 0, not 0 / 0
            norm = np.ones((), logits.dtype)
        return np.asarray(total / norm, logits.dtype), lse, np.asarray(norm, logits.dtype)

    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        """grad / norm * (softmax * w_p - picked): w_p, a pixel's weight, is picked's sum over classes."""
        picked = _target_weights(target, logits.shape[1], weight, ignore_index, logits.dtype)
        softmax = np.exp(logits - lse)
        return ((softmax * picked.sum(axis=1, keepdims=True) - picked) * (grad / norm)).astype(logits.dtype)


def _log_sum_exp(logits):
    """log(sum_c exp(logits)) along axis 1, through the maximum so that exp never overflows."""
    top = logits.max(axis=1, keepdims=True)
    return np.log(np.exp(logits - top).sum(axis=1, keepdims=True)) + top


def _target_weights(target, c, weight, ignore_index, dtype):
    """(N, C, L): w[t] at class t = target[n, l] (1 without class weights), 0 elsewhere and at
    ignored pixels."""
    picked = (target[:, None, :] == np.arange(c)[None, :, None]).astype(dtype)
    if weight is not None:
        picked = picked * weight.reshape(1, c, 1)
    picked[np.broadcast_to((target == ignore_index)[:, None, :], picked.shape)] = 0
    return picked
