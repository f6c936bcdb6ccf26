"""The readable baseline backend: every primitive in plain, vectorised NumPy."""

import numpy as np

from . import scalar_rules
from .base import Backend, conv_out_hw


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
