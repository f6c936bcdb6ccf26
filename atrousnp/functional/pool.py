"""Pooling, written on the convolution's im2col: a pooling window is a kernel's patch.

``unfold`` makes every (dilated) window a column; max pooling is then the max down each
column and average pooling the sum over a divisor (the window's size, or PyTorch's variants:
``avg_pool2d``). Their backward passes come from ``unfold``'s own (col2im) and those of max
and sum, so no pooling-specific gradient code exists. That composition is max pooling's
definition. Where no gradient is needed (inference), a backend may compute its forward in one
pass over x (``Backend.max_pool2d_forward``; numba does): ResNet's stem pools 2x64x161x161,
which the composition pads, then writes and reads as a 9 x 839,808 im2col.
"""

import numpy as np

from ..autograd import Function, backend_of, is_grad_enabled
from ..backends import get_backend
from ..backends.constants import kept
from ..tensor import Tensor
from .linalg import matmul
from .operands import IntPair, as_pair, check_floating, check_not_empty, constant
from .reduce import argmax
from .reduce import max as max_op
from .reduce import sum as sum_op
from .shape import pad as pad_op
from .shape import batched, reshape


class Unfold(Function):
    """cols = im2col(x): (C*kh*kw, N*L);  dx = col2im(dcols), its adjoint."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation):
        ctx.x_shape, ctx.geometry = x.shape, (kernel, stride, padding, dilation)
        return ctx.backend.im2col(x, kernel, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.col2im(grad, ctx.x_shape, *ctx.geometry)


def _pool_geometry(x, kernel_size, stride, padding, dilation, op, ceil_mode):
    """(kernel, stride, padding, dilation, overhang) and the output's (out_h, out_w), each
    setting checked. With ``ceil_mode`` the last window may hang past the padded input by
    ``overhang`` pixels (per axis); PyTorch drops a window that would start in the right padding."""
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    check_not_empty(op, x)
    kernel = as_pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair(op, "stride", stride, 1)
    padding, dilation = as_pair(op, "padding", padding, 0), as_pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
    n, c, h, w = x.shape
    out_hw = tuple(_pool_out_size(size, k, s, p, d, ceil_mode)
                   for size, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: the output would be {out_hw[0]}x{out_hw[1]} for input {h}x{w} and kernel {kernel}")
    overhang = tuple(max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
                     for out, size, k, s, p, d in zip(out_hw, (h, w), kernel, stride, padding, dilation))
    return (kernel, stride, padding, dilation, overhang), out_hw


def _windows(x, kernel_size, stride, padding, dilation, pad_value, op, ceil_mode=False):
    """Every pooling window of every channel as one column: (kh*kw, N*C*out_h*out_w), the output
    shape, and the geometry (``_pool_geometry``); padding and any ``ceil_mode`` overhang read
    ``pad_value``."""
    geometry, out_hw = _pool_geometry(x, kernel_size, stride, padding, dilation, op, ceil_mode)
    kernel, stride, padding, dilation, overhang = geometry
    n, c, h, w = x.shape
    if pad_value != 0 or max(overhang) > 0:
        # Max pooling pads with -inf (padding never wins); im2col itself pads with zeros, evenly.
        x = pad_op(x, (padding[1], padding[1] + overhang[1], padding[0], padding[0] + overhang[0]), value=pad_value)
        h, w = x.shape[2:]
        im2col_padding = (0, 0)
    else:
        im2col_padding = padding
    planes = reshape(x, (n * c, 1, h, w))
    cols = Unfold.apply(planes, kernel=kernel, stride=stride, padding=im2col_padding, dilation=dilation)
    return cols, (n, c) + out_hw, geometry


def _pool_out_size(size, kernel, stride, padding, dilation, ceil_mode):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window would start in the padding
        out -= 1
    return out


def max_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               dilation: IntPair = 1, ceil_mode: bool = False, return_indices: bool = False):
    """y[n, c, oh, ow] = max over the window at (oh*s - p, ow*s - p); padding reads -inf.

    x: (N, C, H, W) or (C, H, W). ``ceil_mode`` rounds the output size up, as PyTorch;
    ``return_indices`` also returns where each maximum is, as an index into its channel's
    flattened H*W plane (the first maximum of a window, as PyTorch). The gradient goes to
    the window's maximum, shared equally among ties (PyTorch gives it all to one of them; the
    two agree wherever the maximum is unique).
    """
    def pool(x):
        backend = backend_of("max_pool2d", x)
        if (backend.max_pool2d_forward is not None and not return_indices and x.dtype in backend.float_dtypes
                and not (is_grad_enabled() and x.requires_grad)):
            (kernel, stride_pair, padding_pair, dilation_pair, _), out_hw = _pool_geometry(
                x, kernel_size, stride, padding, dilation, "max_pool2d", ceil_mode)
            out = backend.max_pool2d_forward(x.data, kernel, stride_pair, padding_pair, dilation_pair, out_hw)
            return Tensor._wrap(out, backend)
        cols, out_shape, geometry = _windows(x, kernel_size, stride, padding, dilation, -np.inf, "max_pool2d",
                                             ceil_mode)
        out = reshape(max_op(cols, axis=0), out_shape)
        return (out, _max_indices(cols, out_shape, geometry, x.shape[3])) if return_indices else out
    return batched(x, pool)


def _max_indices(cols, out_shape, geometry, width):
    """The flat (h * W + w) input index of each window's first maximum, an int64 Tensor."""
    (kh, kw), stride, padding, dilation, _ = geometry
    tap = argmax(cols, axis=0).numpy().reshape(out_shape)
    tap_i, tap_j = np.divmod(tap, kw)
    rows = np.arange(out_shape[2])[:, None] * stride[0] - padding[0] + tap_i * dilation[0]
    columns = np.arange(out_shape[3])[None, :] * stride[1] - padding[1] + tap_j * dilation[1]
    return constant(cols, rows * width + columns, np.int64)


def avg_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """y = sum over the window / divisor, x: (N, C, H, W) or (C, H, W), with PyTorch's rules.

    The divisor is ``divisor_override`` if given; else the number of the window's pixels that
    lie on the input (with ``count_include_pad=False``) or on the input and its zero padding
    (the default), never counting where a ``ceil_mode`` window hangs past the padding. It is
    a constant map, counted by the same windows over a mask of ones.
    """
    check_floating("avg_pool2d", x=x)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override < 1):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")

    def pool(x):
        cols, out_shape, geometry = _windows(x, kernel_size, stride, padding, 1, 0.0, "avg_pool2d", ceil_mode)
        sums = reshape(sum_op(cols, axis=0), out_shape)
        divisor = divisor_override or _window_counts(x.shape[2:], geometry, count_include_pad)
        return sums / constant(x, np.asarray(divisor, np.float64), x.dtype)
    return batched(x, pool)


def _window_counts(size, geometry, count_include_pad):
    """(out_h, out_w): how many pixels of each window count, from a mask of the input (ones),
    its padding (ones when it counts, else zeros) and any ceil_mode overhang (zeros)."""
    kernel, stride, padding, _, overhang = geometry
    mask = np.pad(np.ones(size), [(p, p) for p in padding], constant_values=float(count_include_pad))
    mask = np.pad(mask, [(0, o) for o in overhang])[None, None]
    cols = get_backend("numpy").im2col(mask, kernel, stride, (0, 0), (1, 1))
    out_h = (mask.shape[2] - kernel[0]) // stride[0] + 1
    return cols.sum(axis=0).reshape(out_h, -1)


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average over PyTorch's adaptive bins: output cell i covers input rows
    [floor(i*H/out), ceil((i+1)*H/out)). Being linear and separable, it is
    y = P_h @ x @ P_w^T with one averaging matrix per axis; (1, 1) is the global mean.
    x: (N, C, H, W) or (C, H, W); ``output_size`` an int or a pair, None keeping that axis's size."""
    if x.ndim not in (3, 4):
        raise ValueError(f"adaptive_avg_pool2d: x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    check_floating("adaptive_avg_pool2d", x=x)
    pair = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    pair = tuple(size if out is None else out for out, size in zip(pair, x.shape[-2:]))
    out_h, out_w = as_pair("adaptive_avg_pool2d", "output_size", pair, 1)
    backend = backend_of("adaptive_avg_pool2d", x)
    p_h = kept(backend, ("adaptive_avg_pool2d", x.shape[-2], out_h, x.dtype.str),
               lambda: _adaptive_matrix(x.shape[-2], out_h, x.dtype))
    p_w_t = kept(backend, ("adaptive_avg_pool2d.T", x.shape[-1], out_w, x.dtype.str),
                 lambda: _adaptive_matrix(x.shape[-1], out_w, x.dtype).T)
    return matmul(matmul(p_h, x), p_w_t)


def _adaptive_matrix(size, out, dtype):
    matrix = np.zeros((out, size), dtype)
    for i in range(out):
        start, stop = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix
