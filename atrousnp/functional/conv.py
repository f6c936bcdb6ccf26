"""Dilated (atrous) 2-d convolution through im2col + GEMM, and its backward.

For x: (N, C, H, W) and weight: (K, C/groups, kh, kw), output pixel (n, k, oh, ow) is

    y = b[k] + sum_{c, i, j} w[k, c, i, j] * x_pad[n, g*C/groups + c, oh*s_h + i*d_h, ow*s_w + j*d_w]

(g the group of k): a correlation whose taps sit d pixels apart, so a 3x3 kernel at rate d
sees a (2d+1) x (2d+1) window with the parameters of a 3x3 one. Output size per axis:
out = floor((H + 2p - d(k-1) - 1) / s) + 1.

im2col lays each dilated patch out as one column, cols: (C*kh*kw, N*L) with L = out_h*out_w
(docs/atrous_convolution.md), so the whole convolution is one GEMM per group, over every image:

    forward   y[n] = W_g @ cols_g[n]       W_g: (G, K/G, C/G*kh*kw), cols_g: (G, C/G*kh*kw, N*L)
    backward  dW = dy_g @ cols_g^T         dy_g: (G, K/G, N*L), dy transposed
              dx = col2im(W_g^T @ dy_g)    col2im is im2col's adjoint: it sums overlapping taps

The backend primitives ``conv2d_forward`` and ``conv2d_backward`` run exactly these steps;
``backends/numpy.py`` holds them as written with im2col, col2im and matmul, and a backend may lay
the same GEMMs out its own way (the CUDA one reads each image's columns of cols in place).
Forward saves x rather than cols, and backward rebuilds cols: one im2col more, but a network
keeps no im2col buffer per layer alive between forward and backward.
"""

from ..autograd import Function
from ..backends.primitives import conv_out_hw
from ..tensor import Tensor
from .operands import IntPair, as_pair, check_floating, check_not_empty
from .shape import batched
from .shape import pad as pad_op


class Conv2d(Function):

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        be = ctx.backend
        ctx.params = stride, padding, dilation, groups
        ctx.save_for_backward(x, weight)
        out = be.conv2d_forward(x, weight, stride, padding, dilation, groups)
        if bias is not None:
            out = be.zip("add", out, be.reshape(bias, (1, -1, 1, 1)))
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (x, weight) = ctx.backend, ctx.saved
        needs_dx, needs_dweight, needs_dbias = ctx.needs_input_grad[:3]
        dx, dweight = be.conv2d_backward(grad, x, weight, *ctx.params, needs_dx, needs_dweight)
        dbias = be.reduce("sum", grad, (0, 2, 3), keepdims=False) if needs_dbias else None
        return dx, dweight, dbias


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
           padding: IntPair | str = 0, dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """2-d cross-correlation with stride, zero padding, dilation (atrous rate) and groups.

    x: (N, C, H, W), or (C, H, W) unbatched; weight: (K, C/groups, kh, kw); bias: (K,) or None.
    stride, padding, dilation: an int or an (h, w) pair; padding may be "valid" (none) or
    "same" (stride 1: output size = input size; an odd total pads one more pixel after than
    before, as PyTorch). Returns (N, K, out_h, out_w), or (K, out_h, out_w) unbatched.
    """
    return batched(x, lambda x: _conv2d(x, weight, bias, stride, padding, dilation, groups))


def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    stride, dilation = as_pair("conv2d", "stride", stride, 1), as_pair("conv2d", "dilation", dilation, 1)
    _check_shapes(x, weight, bias, groups)
    kernel = weight.shape[2:]
    if isinstance(padding, str):
        x, padding = _same_padding(x, kernel, stride, dilation, padding)
    padding = as_pair("conv2d", "padding", padding, 0)
    out_hw = conv_out_hw(x.shape, kernel, stride, padding, dilation)
    if min(out_hw) < 1:
        raise ValueError(
            f"conv2d: the output would be {out_hw[0]}x{out_hw[1]}: input {x.shape[2]}x{x.shape[3]} "
            f"(after padding {padding}) is smaller than the dilated kernel, whose span is "
            f"{dilation[0] * (kernel[0] - 1) + 1}x{dilation[1] * (kernel[1] - 1) + 1} "
            f"(kernel {tuple(kernel)}, dilation {dilation})")
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _check_shapes(x, weight, bias, groups):
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be (K, C/groups, kh, kw), got shape {weight.shape}")
    check_not_empty("conv2d", x)
    check_floating("conv2d", x=x, weight=weight, bias=bias)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    k, c_per_group = weight.shape[:2]
    c = x.shape[1]
    if c % groups or k % groups:
        raise ValueError(f"conv2d: groups={groups} must divide both the input channels ({c}) "
                         f"and the output channels ({k})")
    if c != c_per_group * groups:
        raise ValueError(f"conv2d: x has {c} channels (shape {x.shape}) but weight of shape "
                         f"{weight.shape} with groups={groups} expects {c_per_group * groups}")
    if bias is not None and tuple(bias.shape) != (k,):
        raise ValueError(f"conv2d: bias must have shape ({k},), got {bias.shape}")


def _same_padding(x, kernel, stride, dilation, padding):
    if padding == "valid":
        return x, (0, 0)
    if padding != "same":
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
    totals = [dilation[a] * (kernel[a] - 1) for a in (0, 1)]
    if all(t % 2 == 0 for t in totals):
        return x, (totals[0] // 2, totals[1] // 2)
    # An odd total cannot be split evenly: pad explicitly, one more pixel after than before.
    (th, tw) = totals
    return pad_op(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2)), (0, 0)
