"""Convolution on the GPU: im2col/col2im kernels, and conv2d as GEMMs that read in place.

``backends/numpy.py`` defines conv2d_forward/backward as im2col, transposes and batched matmuls.
Here the same products run as strided GEMMs (``gemm.py``) that read each image's columns of the
im2col matrix, the weight transposed and the output gradient where they lie, so a convolution
is two launches forward (im2col, GEMM) and four backward (im2col, two GEMMs, col2im), and a
1x1 convolution skips im2col and col2im altogether: its patches are the input's pixels.

With G groups, group g's weight rows are g*K/G.., its im2col rows g*CKK/G.. and its input and
output channels g*C/G.. and g*K/G..: each group is one GEMM over the images (G is 1 in DeepLab).
"""

from numba import cuda
from numba import types as t

from ..primitives import conv_out_hw, is_pointwise
from .gemm import Operand, gemm
from .index import INDEX, divmod32
from .layout import flat
from .launch import MAX_GRID, SIMULATED, configured


@cuda.jit
def _im2col_kernel(x, cols, n_img, channels, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]; x (N, C, H, W) and
    cols (C*kh*kw, N*out_h*out_w) given flat.

    Why this shape of work: worked out from one flat index per element, an entry costs nine
    64-bit divisions (for c, i, j, n, oh and ow): 673 instructions of sm_90 code per element,
    where the copy itself is a load and a store. Here block (x, y, z) of the grid takes output
    row ``line`` = (n, oh) along y and channel c along z (grid-stride loops over both: one
    division per line), its threads take consecutive ow (so a warp writes consecutive columns
    of cols, coalesced), and each thread walks its patch's kh x kw taps with additions alone,
    indexing with unsigned integers where the index cannot be negative (numba then adds no
    wraparound check). The innermost loop is one element of cols per turn."""
    zero = cols.dtype.type(0)
    total_cols = n_img * out_h * out_w
    for line in range(cuda.blockIdx.y, n_img * out_h, cuda.gridDim.y):
        b, oh = divmod32(line, out_h)
        for c in range(cuda.blockIdx.z, channels, cuda.gridDim.z):
            plane = (b * channels + c) * h * w                     # x[b, c, 0, 0]
            for ow in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, out_w,
                            cuda.gridDim.x * cuda.blockDim.x):
                at = c * kh * kw * total_cols + line * out_w + ow   # cols[(c, 0, 0), (b, oh, ow)]
                y = oh * sh - ph
                for i in range(kh):
                    xx = ow * sw - pw
                    for j in range(kw):
                        if 0 <= y < h and 0 <= xx < w:
                            cols[INDEX(at)] = x[INDEX(plane + y * w + xx)]
                        else:
                            cols[INDEX(at)] = zero
                        at += total_cols
                        xx += dw
                    y += dh


@cuda.jit
def _col2im_kernel(cols, x, n_img, channels, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """x[n, c, y, xx] = sum of the cols entries copied from it: each pixel gathers, so no atomics.
    cols and x flat, the work laid out as im2col's (a line (n, y) per grid y, a channel per grid
    z, consecutive xx along a block's threads); a tap's output position is a 32-bit division."""
    zero = x.dtype.type(0)
    total_cols = n_img * out_h * out_w
    for line in range(cuda.blockIdx.y, n_img * h, cuda.gridDim.y):
        b, y = divmod32(line, h)
        for c in range(cuda.blockIdx.z, channels, cuda.gridDim.z):
            for xx in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, w, cuda.gridDim.x * cuda.blockDim.x):
                total = zero
                for i in range(kh):
                    top = y + ph - i * dh
                    if top < 0:
                        continue
                    oh, off_grid = divmod32(top, sh)
                    if off_grid != 0 or oh >= out_h:
                        continue
                    at = (c * kh + i) * kw * total_cols + (b * out_h + oh) * out_w     # cols[(c, i, 0), (b, oh, 0)]
                    left = xx + pw
                    for j in range(kw):
                        if left >= 0:
                            ow, off_grid = divmod32(left, sw)
                            if off_grid == 0 and ow < out_w:
                                total += cols[INDEX(at + ow)]
                        at += total_cols
                        left -= dw
                x[INDEX(((b * channels + c) * h + y) * w + xx)] = total


def _layout(n, c, lines, width):
    """(grid, block) for im2col/col2im: ``lines`` along y, c along z, ``width`` along x in whole warps."""
    if SIMULATED:
        return (1, 1, 1), 4
    threads = min(128, 32 * -(-width // 32))
    return (-(-width // threads), min(lines, MAX_GRID[1]), min(c, MAX_GRID[2])), threads


def im2col(backend, x, kernel, stride, padding, dilation):
    n, c = x.shape[:2]
    out_h, out_w = conv_out_hw(tuple(x.shape), kernel, stride, padding, dilation)
    cols = backend.empty((c * kernel[0] * kernel[1], n * out_h * out_w), x.dtype)
    if cols.size:
        configured(_im2col_kernel, *_layout(n, c, n * out_h, out_w))(
            flat(x), flat(cols), *x.shape, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return cols


def col2im(backend, cols, x_shape, kernel, stride, padding, dilation):
    out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
    x = backend.empty(tuple(x_shape), cols.dtype)
    if x.size:
        n, c, h, w = x_shape
        configured(_col2im_kernel, *_layout(n, c, n * h, w))(
            flat(cols), flat(x), *x_shape, *kernel, *stride, *padding, *dilation, out_h, out_w)
    return x


def _patches(backend, x, geometry):
    """The patch matrix of every image, (C*kh*kw, L) each, as an Operand batched over images: the
    input itself for a pointwise kernel, else a new im2col matrix. Group g's rows start at
    offset g * (C/G*kh*kw) * row stride in both."""
    n, c = x.shape[:2]
    if is_pointwise(*geometry[:3]):
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
        pointwise = is_pointwise(*geometry[:3])
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
    a1 = dtype[::1]
    return [("im2col", _im2col_kernel, (a1, a1) + (t.int64,) * 14),
            ("col2im", _col2im_kernel, (a1, a1) + (t.int64,) * 14)]
