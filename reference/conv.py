"""The definition of a dilated, strided, padded, grouped 2-d correlation, and of im2col, as loops."""

import numpy as np


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """y[n, k, oh, ow] = b[k] + sum_{c,i,j} w[k, c, i, j] * x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]

    x: (N, C, H, W), weight: (K, Cg, kh, kw) with Cg = C / groups, g = k // (K / groups).
    stride, padding, dilation: (h, w) pairs.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n_images, _, h, w = x.shape
    k_out, c_per_group, kh, kw = weight.shape
    k_per_group = k_out // groups
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n_images, k_out, out_h, out_w), np.result_type(x, weight))
    for n in range(n_images):
        for k in range(k_out):
            first_channel = (k // k_per_group) * c_per_group
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0.0 if bias is None else bias[k]
                    for c in range(c_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                total += (weight[k, c, i, j]
                                          * x_pad[n, first_channel + c, oh * sh + i * dh, ow * sw + j * dw])
                    y[n, k, oh, ow] = total
    return y


def conv2d_backward(grad, x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """(dx, dweight, dbias) of ``conv2d`` for grad: (N, K, out_h, out_w), as the same loops read
    backwards: every product w[k, c, i, j] * x_pad[...] of the forward pass sends grad[n, k, oh, ow]
    times the one factor to the gradient of the other."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n_images, _, h, w = x.shape
    k_out, c_per_group, kh, kw = weight.shape
    k_per_group = k_out // groups
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx_pad = np.zeros_like(x_pad)
    dweight = np.zeros_like(weight)
    dbias = grad.sum(axis=(0, 2, 3))
    for n in range(n_images):
        for k in range(k_out):
            first_channel = (k // k_per_group) * c_per_group
            for oh in range(grad.shape[2]):
                for ow in range(grad.shape[3]):
                    g = grad[n, k, oh, ow]
                    for c in range(c_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = oh * sh + i * dh, ow * sw + j * dw
                                dweight[k, c, i, j] += g * x_pad[n, first_channel + c, row, col]
                                dx_pad[n, first_channel + c, row, col] += g * weight[k, c, i, j]
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias


def im2col(x, kernel, stride, padding, dilation):
    """cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw], as loops: atrousnp's layout."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n_images, c, h, w = x.shape
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.zeros((c * kh * kw, n_images * out_h * out_w), x.dtype)
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                for n in range(n_images):
                    for oh in range(out_h):
                        for ow in range(out_w):
                            cols[(ch * kh + i) * kw + j, (n * out_h + oh) * out_w + ow] = \
                                x_pad[n, ch, oh * sh + i * dh, ow * sw + j * dw]
    return cols
