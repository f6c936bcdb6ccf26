"""Convolution on the GPU: im2col/col2im kernels, and conv2d as GEMMs that read in place.

``backends/base.py`` defines conv2d_forward/backward as im2col, transposes and batched matmuls.
Here the same products run as strided GEMMs (``gemm.py``) that read each image's columns of the
im2col matrix, the weight transposed and the output gradient where they lie, so a convolution
is two launches forward (im2col, GEMM) and four backward (im2col, two GEMMs, col2im), and a
1x1 convolution skips im2col and col2im altogether: its patches are the input's pixels.

With G groups, group g's weight rows are g*K/G.., its im2col rows g*CKK/G.. and its input and
output channels g*C/G.. and g*K/G..: each group is one GEMM over the images (G is 1 in DeepLab).
"""

from numba import cuda
from numba import types as t

from ..base import _is_pointwise, conv_out_hw
from .gemm import Operand, gemm
from .layout import flat
from .launch import launch


@cuda.jit
def _im2col_kernel(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]; one thread per entry."""
    n_img, _, h, w = x.shape
    total_cols = n_img * out_h * out_w
    for idx in range(cuda.grid(1), cols.shape[0] * total_cols, cuda.gridsize(1)):
        row, col = idx // total_cols, idx % total_cols
        c, i, j = row // (kh * kw), (row // kw) % kh, row % kw
        b, rest = col // (out_h * out_w), col % (out_h * out_w)
        y = (rest // out_w) * sh - ph + i * dh
        xx = (rest % out_w) * sw - pw + j * dw
        inside = 0 <= y < h and 0 <= xx < w
        cols[row, col] = x[b, c, y, xx] if inside else 0


@cuda.jit
def _col2im_kernel(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """x[n, c, y, xx] = sum of the cols entries copied from it: each pixel gathers, so no atomics."""
    n_img, c_in, h, w = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        xx, y = idx % w, (idx // w) % h
        c, b = (idx // (w * h)) % c_in, idx // (w * h * c_in)
        total = 0.0  # a literal: "cols[0, 0] * 0" would be NaN wherever cols holds an inf
        for i in range(kh):
            top = y + ph - i * dh
            if top < 0 or top % sh != 0 or top // sh >= out_h:
                continue
            for j in range(kw):
                left = xx + pw - j * dw
                if left < 0 or left % sw != 0 or left // sw >= out_w:
                    continue
                total += cols[(c * kh + i) * kw + j, (b * out_h + top // sh) * out_w + left // sw]
        x[b, c, y, xx] = total


def im2col(backend, x, kernel, stride, padding, dilation):
    n, c = x.shape[:2]
    out_h, out_w = conv_out_hw(tuple(x.shape), kernel, stride, padding, dilation)
    cols = backend.empty((c * kernel[0] * kernel[1], n * out_h * out_w), x.dtype)
    launch(_im2col_kernel, cols.size)(x, cols, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return cols


def col2im(backend, cols, x_shape, kernel, stride, padding, dilation):
    out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
    x = backend.empty(tuple(x_shape), cols.dtype)
    launch(_col2im_kernel, x.size)(cols, x, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return x


def _patches(backend, x, geometry):
    """The patch matrix of every image, (C*kh*kw, L) each, as an Operand batched over images: the
    input itself for a pointwise kernel, else a new im2col matrix. Group g's rows start at
    offset g * (C/G*kh*kw) * row stride in both."""
    n, c = x.shape[:2]
    if _is_pointwise(*geometry[:3]):
        length = x.shape[2] * x.shape[3]
        return Operand(flat(x), 0, c * length, length, 1)
    cols = im2col(backend, x, *geometry)
    total = cols.shape[1]
    return Operand(flat(cols), 0, total // n, total, 1)


def _group(operand, g, rows):
    return operand._replace(offset=operand.offset + g * rows * operand.row)


def conv2d_forward(backend, x, weight, stride, padding, dilation, groups):
    geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
    n, k = x.shape[0], weight.shape[0]
    out_h, out_w = conv_out_hw(tuple(x.shape), *geometry)
    length, k_g, ckk_g = out_h * out_w, k // groups, weight.size // k
    out = backend.empty((n, k, out_h, out_w), x.dtype)
    patches = _patches(backend, x, geometry)
    for g in range(groups):
        w = Operand(flat(weight), g * k_g * ckk_g, 0, ckk_g, 1)                      # W_g, the same for every image
        gemm(w, _group(patches, g, ckk_g), Operand(flat(out), g * k_g * length, k * length, length, 1),
             k_g, ckk_g, length, n, backend.empty)
    return out


def conv2d_backward(backend, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
    geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
    n, k = x.shape[0], weight.shape[0]
    length, k_g, ckk_g = grad.shape[2] * grad.shape[3], k // groups, weight.size // k
    dy = [Operand(flat(grad), g * k_g * length, k * length, length, 1) for g in range(groups)]   # dy_g[n]: (K_g, L)
    dx = dweight = None
    if needs_dweight:
        dweight = backend.empty(tuple(weight.shape), weight.dtype)
        patches = _patches(backend, x, geometry)
        for g in range(groups):                        # dW_g = sum over images of dy_g[n] @ patches_g[n]^T
            p = _group(patches, g, ckk_g)
            patches_t = Operand(p.array, p.offset, p.batch, p.col, p.row)
            gemm(dy[g], patches_t, Operand(flat(dweight), g * k_g * ckk_g, 0, ckk_g, 1),
                 k_g, length, ckk_g, n, backend.empty, sum_batches=True)
        del patches, p, patches_t  # free the im2col matrix before dcols is made
    if needs_dx:
        pointwise = _is_pointwise(*geometry[:3])
        c = x.shape[1]
        target = backend.empty(tuple(x.shape), x.dtype) if pointwise else \
            backend.empty((weight.size // k * groups, n * length), x.dtype)     # dcols, like im2col's cols
        for g in range(groups):                        # W_g^T @ dy_g[n], into each image's columns
            w_t = Operand(flat(weight), g * k_g * ckk_g, 0, 1, ckk_g)
            out = Operand(flat(target), g * ckk_g * length, c * length, length, 1) if pointwise else \
                Operand(flat(target), g * ckk_g * n * length, length, n * length, 1)
            gemm(w_t, dy[g], out, ckk_g, k_g, length, n, backend.empty)
        dx = target if pointwise else col2im(backend, target, tuple(x.shape), *geometry)
    return dx, dweight


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a2, a4 = dtype[:, ::1], dtype[:, :, :, ::1]
    return [("im2col", _im2col_kernel, (a4, a2) + (t.int64,) * 10),
            ("col2im", _col2im_kernel, (a2, a4) + (t.int64,) * 10)]
