"""Pooling, written on the convolution's im2col: a pooling window is a kernel's patch.

``unfold`` makes every (dilated) window a column; max pooling is then the max down each
column and average pooling the mean. Their backward passes come from ``unfold``'s own
(col2im) and those of max and mean, so no pooling-specific gradient code exists.
"""

import numpy as np

from ..autograd import Function
from ..backends.base import conv_out_hw
from ..tensor import Tensor
from .operands import IntPair, as_pair, check_floating, check_not_empty
from .linalg import matmul
from .reduce import max as max_op
from .reduce import mean
from .shape import pad as pad_op
from .shape import reshape


class Unfold(Function):
    """cols = im2col(x): (C*kh*kw, N*L);  dx = col2im(dcols), its adjoint."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation):
        ctx.x_shape, ctx.geometry = x.shape, (kernel, stride, padding, dilation)
        return ctx.backend.im2col(x, kernel, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.col2im(grad, ctx.x_shape, *ctx.geometry)


def _windows(x, kernel_size, stride, padding, dilation, pad_value, op):
    """Every pooling window of every channel as one column: (kh*kw, N*C*out_h*out_w)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be (N, C, H, W), got shape {x.shape}")
    check_not_empty(op, x)
    kernel = as_pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair(op, "stride", stride, 1)
    padding, dilation = as_pair(op, "padding", padding, 0), as_pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
    n, c, h, w = x.shape
    if pad_value != 0 and max(padding) > 0:
        # Max pooling pads with -inf (padding never wins); im2col itself pads with zeros.
        x = pad_op(x, (padding[1], padding[1], padding[0], padding[0]), value=pad_value)
        h, w, padding = h + 2 * padding[0], w + 2 * padding[1], (0, 0)
    out_h, out_w = conv_out_hw((n, c, h, w), kernel, stride, padding, dilation)
    if min(out_h, out_w) < 1:
        raise ValueError(f"{op}: the output would be {out_h}x{out_w} for input {h}x{w} and kernel {kernel}")
    planes = reshape(x, (n * c, 1, h, w))
    cols = Unfold.apply(planes, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    return cols, (n, c, out_h, out_w)


def max_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               dilation: IntPair = 1) -> Tensor:
    """y[n, c, oh, ow] = max over the window at (oh*s - p, ow*s - p); padding reads -inf.

    x: (N, C, H, W). The gradient goes to the window's maximum, shared equally among ties
    (PyTorch gives it all to one of them; the two agree wherever the maximum is unique).
    """
    cols, out_shape = _windows(x, kernel_size, stride, padding, dilation, -np.inf, "max_pool2d")
    return reshape(max_op(cols, axis=0), out_shape)


def avg_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> Tensor:
    """y = mean over the window, padding counted as zeros (PyTorch's count_include_pad=True)."""
    check_floating("avg_pool2d", x=x)
    cols, out_shape = _windows(x, kernel_size, stride, padding, 1, 0.0, "avg_pool2d")
    return reshape(mean(cols, axis=0), out_shape)


def adaptive_avg_pool2d(x: Tensor, output_size: IntPair) -> Tensor:
    """Average over PyTorch's adaptive bins: output cell i covers input rows
    [floor(i*H/out), ceil((i+1)*H/out)). Being linear and separable, it is
    y = P_h @ x @ P_w^T with one averaging matrix per axis; (1, 1) is the global mean."""
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: x must be (N, C, H, W), got shape {x.shape}")
    check_floating("adaptive_avg_pool2d", x=x)
    out_h, out_w = as_pair("adaptive_avg_pool2d", "output_size", output_size, 1)
    p_h = _adaptive_matrix(x.shape[2], out_h, x.dtype)
    p_w = _adaptive_matrix(x.shape[3], out_w, x.dtype)
    return matmul(matmul(p_h, x), p_w.T)


def _adaptive_matrix(size, out, dtype):
    matrix = np.zeros((out, size), dtype)
    for i in range(out):
        start, stop = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix
