"""Winograd's minimal filtering F(2x2, 3x3): a 3x3, stride-1 convolution (undilated, or dilated
by its phases, below) in 16/36 of the multiplications, for the Numba backend (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016).

Direct convolution computes each output from 9 products per input channel. Winograd computes a
2x2 block of outputs at once from the 4x4 input tile d that covers it, as

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, over the 16 entries of a 4x4 tile)

with the constant matrices below: 16 products for 4 outputs, 4 per output instead of 9. The
sum over input channels commutes with the transforms, so each of the 16 entries of a tile is a
GEMM over channels:

    U[e] = (G g G^T)[e]: (K, C)        weights, transformed once per call
    V[e] = (B^T d B)[e]: (C, N*tiles)  input tiles, transformed
    M[e] = U[e] @ V[e]:  (K, N*tiles)  16 GEMMs with 4/9 of the dense conv's multiply-adds
    y tile = A^T M A                   M transformed back to each 2x2 output block

A dilated kernel, at rate d, is an undilated one on each phase of the output: the outputs whose
row is r modulo d read only the input rows s modulo d, s = (r - padding) mod d, three in a row
of them, as an undilated kernel reads three neighbours (the same for columns). So a dilated conv
is dh*dw undilated convs (fewer where the output is smaller than the rate), each on one phase
of the input; their tiles sit side by side in V's columns and share one set of 16 GEMMs, about as
wide as the undilated conv's on the whole map (each phase rounds up to whole tiles: at rate 4 on
21x21, 12 tiles a side instead of 11).

Backward is Winograd too. The input gradient is a 3x3 conv of the output gradient (the kernel
turned 180 degrees, its channels swapped); the weight gradient runs each step above in reverse,
as its adjoint: dM = A dY A^T per tile, dU[e] = dM[e] @ V[e]^T (16 GEMMs over the tiles), and
dW = G^T dU G.

V is 4x the input (16 numbers per 4 pixels), where im2col's columns are 9x it; so the
transforms move less memory than im2col does, and the GEMMs do less than half the work. The
price is numerical: the transforms add and subtract, so float32 results carry a few more
rounding errors than the direct sum (tests compare them with the NumPy oracle at 1e-5).
The constants are exact in binary (0, +-1, +-1/2), which is why F(2x2, 3x3), not a larger
tile, is the safe choice in float32.
"""

import collections

import numpy as np
from numba import njit, prange

from . import gemm_batch
from .threads import parallel_kernel

# The transforms G: (4, 3), B^T: (4, 4), A^T: (2, 4). The kernels below write out their
# products entry by entry; tests/test_winograd.py holds them to these matrices.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])


@njit(cache=True, inline="always")
def _g(a, b, c):
    """G @ (a, b, c): the 1-D transform of three kernel taps into four."""
    return a, 0.5 * (a + b + c), 0.5 * (a - b + c), c


@parallel_kernel
def _transform_weight(weight, u):
    """u[e, k, c] = (G g G^T)[e] for each 3x3 kernel g = weight[k, c]; weight: (K, C, 3, 3), in
    NumPy's order or stored tap by tap (a dilated conv's, nn/conv.py), read where it lies; u:
    (16, K, C). Scalars, not small arrays: the 9 taps are read once and the 16 entries written once."""
    k_out, c = weight.shape[:2]
    for k in prange(k_out):
        for ch in range(c):
            g = weight[k, ch]
            a0, a1, a2, a3 = _g(g[0, 0], g[1, 0], g[2, 0])    # the columns of G g
            b0, b1, b2, b3 = _g(g[0, 1], g[1, 1], g[2, 1])
            c0, c1, c2, c3 = _g(g[0, 2], g[1, 2], g[2, 2])
            u[0, k, ch], u[1, k, ch], u[2, k, ch], u[3, k, ch] = _g(a0, b0, c0)      # its rows, times G^T
            u[4, k, ch], u[5, k, ch], u[6, k, ch], u[7, k, ch] = _g(a1, b1, c1)
            u[8, k, ch], u[9, k, ch], u[10, k, ch], u[11, k, ch] = _g(a2, b2, c2)
            u[12, k, ch], u[13, k, ch], u[14, k, ch], u[15, k, ch] = _g(a3, b3, c3)


@parallel_kernel
def _transform_input(x, v, ph, pw, tiles_h, tiles_w):
    """v[e, c, b*tiles + t] = (B^T d B)[e] for the 4x4 tile d of x[b, c] whose top-left input
    pixel is (2*ty - ph, 2*tx - pw), zero outside the image; v: (16, C, N*tiles_h*tiles_w).

    A row of tiles at a time, in two steps whose inner loops run along the row with no branch, a
    shape the compiler can vectorise: B^T down every column of the tiles' four input rows (copied,
    zero-padded, into ``rows``), then B across each tile, writing each of v's 16 planes as one
    contiguous run per row of tiles. Tile by tile, with the padding checked per pixel, the same
    transform took 1.1-1.9x as long on ResNet's shapes (batch 2, medians of 15, two or three
    runs: 64 channels at 81x81 1.47 -> 0.88 ms, 128 at 41x41 1.03-1.51 -> 0.78, 512 at 21x21
    1.17 -> 0.75, 256 at 21x21 0.58 -> 0.51). ``width`` is the input columns the row of tiles
    covers: pw of padding on the left, then the image's columns, then zeros as far as the last
    tile reaches (a dilated conv's phase may have more or less padding on the right than pw)."""
    n, c, h, w = x.shape
    tiles = tiles_h * tiles_w
    width = 2 * tiles_w + 2                          # the input columns a row of tiles covers
    lo, hi = pw, min(width, w + pw)                  # where the image's columns lie among them
    for plane in prange(n * c):                      # one (image, channel) plane per task
        b, ch = plane // c, plane % c
        rows = np.zeros((4, width), v.dtype)         # zero left of lo and right of hi, always
        cols = np.empty((4, width), v.dtype)         # B^T rows, column by column
        for ty in range(tiles_h):
            for i in range(4):
                r = 2 * ty - ph + i
                if 0 <= r < h:
                    rows[i, lo:hi] = x[b, ch, r, :hi - lo]
                else:
                    rows[i, lo:hi] = 0
            for q in range(width):
                d0, d1, d2, d3 = rows[0, q], rows[1, q], rows[2, q], rows[3, q]
                cols[0, q], cols[1, q], cols[2, q], cols[3, q] = d0 - d2, d1 + d2, d2 - d1, d1 - d3
            first = b * tiles + ty * tiles_w
            for i in range(4):                       # (B^T d) B, row i of every tile in the row
                t = cols[i]
                v0, v1, v2, v3 = v[4 * i, ch], v[4 * i + 1, ch], v[4 * i + 2, ch], v[4 * i + 3, ch]
                for tx in range(tiles_w):
                    t0, t1, t2, t3 = t[2 * tx], t[2 * tx + 1], t[2 * tx + 2], t[2 * tx + 3]
                    v0[first + tx] = t0 - t2
                    v1[first + tx] = t1 + t2
                    v2[first + tx] = t2 - t1
                    v3[first + tx] = t1 - t3


@parallel_kernel
def _transform_output(m, y, tiles_h, tiles_w):
    """y[b, k, 2*ty:2*ty+2, 2*tx:2*tx+2] = A^T M A for each tile, M[e] = m[e, k, b*tiles + t],
    cut at y's edges; m: (16, K, N*tiles)."""
    n, k_out, out_h, out_w = y.shape
    tiles = tiles_h * tiles_w
    for plane in prange(n * k_out):
        b, k = plane // k_out, plane % k_out
        s = np.empty((2, 4), y.dtype)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                col = b * tiles + ty * tiles_w + tx
                for j in range(4):                   # A^T M
                    m0, m1, m2, m3 = m[j, k, col], m[4 + j, k, col], m[8 + j, k, col], m[12 + j, k, col]
                    s[0, j] = m0 + m1 + m2
                    s[1, j] = m1 - m2 - m3
                for i in range(2):                   # (A^T M) A
                    r = 2 * ty + i
                    if r < out_h:
                        y[b, k, r, 2 * tx] = s[i, 0] + s[i, 1] + s[i, 2]
                        if 2 * tx + 1 < out_w:
                            y[b, k, r, 2 * tx + 1] = s[i, 1] - s[i, 2] - s[i, 3]


# -- the weight gradient: the adjoint of each step above, in reverse order -----------------
# y = A^T [U * V] A is linear in U, so dU[e] = sum over tiles of (A dY A^T)[e] * V[e]: with the
# output gradient's 2x2 blocks transformed, dU[e] = dM[e] @ V[e]^T is again 16 GEMMs over the
# tiles, and dW = G^T dU G per kernel. The same 4/9 of a dense conv's multiply-adds.


@njit(cache=True, inline="always")
def _a(top, bottom):
    """A @ (top, bottom), A = (A^T)^T: (4, 2); the adjoint of the output transform's 1-D step."""
    return top, top + bottom, top - bottom, -bottom


@parallel_kernel
def _transform_output_grad(grad, dm, tiles_h, tiles_w):
    """dm[e, k, b*tiles + t] = (A dY A^T)[e] for the 2x2 block dY of grad[b, k] at tile t (zero
    past grad's edges): the adjoint of ``_transform_output``; dm: (16, K, N*tiles)."""
    n, k_out, out_h, out_w = grad.shape
    tiles = tiles_h * tiles_w
    for plane in prange(n * k_out):
        b, k = plane // k_out, plane % k_out
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                r, q = 2 * ty, 2 * tx
                right, below = q + 1 < out_w, r + 1 < out_h
                y00 = grad[b, k, r, q]
                y01 = grad[b, k, r, q + 1] if right else 0.0
                y10 = grad[b, k, r + 1, q] if below else 0.0
                y11 = grad[b, k, r + 1, q + 1] if right and below else 0.0
                a0, a1, a2, a3 = _a(y00, y10)        # A dY, its columns
                b0, b1, b2, b3 = _a(y01, y11)
                col = b * tiles + ty * tiles_w + tx
                dm[0, k, col], dm[1, k, col], dm[2, k, col], dm[3, k, col] = _a(a0, b0)      # its rows, times A^T
                dm[4, k, col], dm[5, k, col], dm[6, k, col], dm[7, k, col] = _a(a1, b1)
                dm[8, k, col], dm[9, k, col], dm[10, k, col], dm[11, k, col] = _a(a2, b2)
                dm[12, k, col], dm[13, k, col], dm[14, k, col], dm[15, k, col] = _a(a3, b3)


@njit(cache=True, inline="always")
def _g_t(p0, p1, p2, p3):
    """G^T @ (p0, p1, p2, p3): the adjoint of ``_g``, four entries back into three taps."""
    return p0 + 0.5 * (p1 + p2), 0.5 * (p1 - p2), 0.5 * (p1 + p2) + p3


@parallel_kernel
def _transform_weight_grad(du, dweight):
    """dweight[k, c] = G^T dU G for dU[e] = du[e, k, c]: the adjoint of ``_transform_weight``;
    du: (16, K, C), dweight: (K, C, 3, 3), in any order."""
    k_out, c = dweight.shape[:2]
    for k in prange(k_out):
        rows = np.empty((4, 3), dweight.dtype)
        for ch in range(c):
            for i in range(4):                       # dU G, row i
                rows[i, 0], rows[i, 1], rows[i, 2] = _g_t(du[4 * i, k, ch], du[4 * i + 1, k, ch],
                                                          du[4 * i + 2, k, ch], du[4 * i + 3, k, ch])
            for j in range(3):                       # G^T (dU G), column j
                dweight[k, ch, 0, j], dweight[k, ch, 1, j], dweight[k, ch, 2, j] = _g_t(
                    rows[0, j], rows[1, j], rows[2, j], rows[3, j])


def _planes(count, rows, cols, dtype):
    """An empty (count, rows, cols) array whose planes do not lie a multiple of 4 KiB apart.
    The transforms read or write all 16 planes at once, and 16 streams 4 KiB apart fall into one
    set of the L1 cache, which holds 8 lines: padding each plane by 64 bytes made the weight
    transform of a 256x256 conv 6x faster (3.0 -> 0.5 ms) and its GEMM 20% faster."""
    itemsize = np.dtype(dtype).itemsize
    plane = rows * cols + (64 // itemsize if rows * cols * itemsize % 4096 == 0 else 0)
    flat = np.empty(count * plane, dtype)
    return np.lib.stride_tricks.as_strided(flat, (count, rows, cols), (plane * itemsize, cols * itemsize, itemsize))


Phase = collections.namedtuple("Phase", "rows_in cols_in rows_out cols_out padding tiles columns")


def _axis_phases(size, out_size, pad, rate):
    """[(input slice, output slice, padding, outputs)] for one axis. At rate d, the outputs
    o = r + d*a (a = 0, 1, ...) read the inputs o - pad + d*u (u = 0, 1, 2): all from the rows
    s + d*i, s = (r - pad) mod d, the input phase s, as an undilated 3x3 kernel would, with
    padding (pad - r + s) / d above (a whole number, as s = r - pad modulo d; from 0 to 2 where
    pad <= 2d). The padding below is whatever the count of outputs leaves."""
    phases = []
    for r in range(min(rate, out_size)):
        s = (r - pad) % rate
        phases.append((slice(s, size, rate), slice(r, out_size, rate), (pad - r + s) // rate,
                       (out_size - r + rate - 1) // rate))
    return phases


def _phases(n, in_hw, out_hw, padding, dilation):
    """The undilated convs that a 3x3 conv at rate (dh, dw) is, one per (row, column) phase of its
    output, each with its tiles' columns in the 16 planes: [Phase]. At rate 1, one: the conv."""
    plan, first = [], 0
    for rows_in, rows_out, ph, out_h in _axis_phases(in_hw[0], out_hw[0], padding[0], dilation[0]):
        for cols_in, cols_out, pw, out_w in _axis_phases(in_hw[1], out_hw[1], padding[1], dilation[1]):
            tiles = (out_h + 1) // 2, (out_w + 1) // 2
            count = n * tiles[0] * tiles[1]
            plan.append(Phase(rows_in, cols_in, rows_out, cols_out, (ph, pw), tiles, slice(first, first + count)))
            first += count
    return plan, first


def _input_tiles(x, plan, columns):
    """v: (16, C, columns), V[e] = B^T d B for every tile d of every phase of x: (N, C, H, W),
    each phase's tiles in its own columns."""
    x = np.ascontiguousarray(x)
    v = _planes(16, x.shape[1], columns, x.dtype)
    for phase in plan:
        _transform_input(x[:, :, phase.rows_in, phase.cols_in], v[:, :, phase.columns], *phase.padding,
                         *phase.tiles)
    return v


def conv3x3(x, weight, padding, dilation=(1, 1)):
    """y: (N, K, out_h, out_w), the stride-1 cross-correlation of x: (N, C, H, W) with weight:
    (K, C, 3, 3) at rate (dh, dw) and zero padding (ph, pw), by F(2x2, 3x3)."""
    return _multiply(x, _transformed_weight(weight, x.dtype), padding, dilation)


def _transformed_weight(weight, dtype):
    """u: (16, K, C), u[e, k, c] = (G g G^T)[e] for each kernel g = weight[k, c]."""
    k, c = weight.shape[:2]
    u = _planes(16, k, c, dtype)
    _transform_weight(weight.astype(dtype, copy=False), u)
    return u


def _multiply(x, u, padding, dilation):
    """y = A^T [U[e] @ V[e]] A for x's tiles, V[e] = B^T d B, given the 16 (K, C) matrices u (an
    array, or a list of them). At a rate above 1, the tiles of every phase (``_phases``) side by
    side in V's columns: one set of 16 GEMMs, about as wide as the undilated conv's."""
    n, _, h, w = x.shape
    k = u[0].shape[0]
    out_hw = h + 2 * padding[0] - 2 * dilation[0], w + 2 * padding[1] - 2 * dilation[1]
    plan, columns = _phases(n, (h, w), out_hw, padding, dilation)
    v = _input_tiles(x, plan, columns)
    m = gemm_batch.matmul_each(u, v, _planes(16, k, columns, x.dtype))   # the multiply-adds
    del v
    y = np.empty((n, k) + out_hw, x.dtype)
    for phase in plan:
        _transform_output(m[:, :, phase.columns], y[:, :, phase.rows_out, phase.cols_out], *phase.tiles)
    return y


def conv3x3_weight_grad(grad, x, padding, dilation=(1, 1), dweight=None):
    """dW: (K, C, 3, 3) of ``conv3x3`` for grad: (N, K, out_h, out_w): dU[e] = dM[e] @ V[e]^T
    over the same tiles as the forward, then G^T dU G, written into ``dweight`` where given (the
    backend gives an array in the weight's memory order, so that SGD pairs them element by
    element). V is transformed again from x rather than kept from the forward, as im2col's
    columns are: a network keeps no 4x-input buffer per layer."""
    n, c = x.shape[:2]
    k = grad.shape[1]
    plan, columns = _phases(n, x.shape[2:], grad.shape[2:], padding, dilation)
    v = _input_tiles(x, plan, columns)
    grad, dm = np.ascontiguousarray(grad, x.dtype), _planes(16, k, columns, x.dtype)
    for phase in plan:
        _transform_output_grad(grad[:, :, phase.rows_out, phase.cols_out], dm[:, :, phase.columns], *phase.tiles)
    du = gemm_batch.matmul_each(dm, v.transpose(0, 2, 1), _planes(16, k, c, x.dtype))
    del v, dm
    dweight = np.empty((k, c, 3, 3), x.dtype) if dweight is None else dweight
    _transform_weight_grad(du, dweight)
    return dweight


# Turning a 3x3 kernel by 180 degrees permutes the 16 entries of its transform. With J the 3x3
# exchange matrix (J g J is g turned), G J = P G, P the 4x4 exchange of the first and last rows
# (G's middle rows read the same backwards), so G (J g J) G^T = P (G g G^T) P^T: entry (a, b) is
# the unturned kernel's entry (p(a), p(b)), p = (3, 1, 2, 0).
TURNED = [4 * p_a + p_b for p_a in (3, 1, 2, 0) for p_b in (3, 1, 2, 0)]


def conv3x3_input_grad(grad, weight, padding, dilation=(1, 1)):
    """dx of ``conv3x3`` for grad: (N, K, out_h, out_w), padding at most 2 * dilation: the
    correlation of grad, padded by 2 * dilation - padding, with each kernel turned 180 degrees
    and the channels swapped, at the same rate: again a stride-1 3x3 conv, so Winograd computes
    it too. The weight goes through the same transform as in the forward (computed again here),
    read differently: the turn permutes the 16 entries (``TURNED``) and the swap transposes each
    (K, C) matrix, which the GEMM reads as it lies. No turned, channel-swapped copy of the weight
    is made: such a copy took about 1 ms a conv, 15 ms of a profiled training step."""
    if any(p > 2 * d for p, d in zip(padding, dilation)):
        raise ValueError(f"conv3x3_input_grad: padding {tuple(padding)} exceeds twice the rate {tuple(dilation)}: "
                         "the input gradient would need negative padding")
    u = _transformed_weight(weight, grad.dtype)
    return _multiply(grad, [u[TURNED[e]].T for e in range(16)],
                     (2 * dilation[0] - padding[0], 2 * dilation[1] - padding[1]), dilation)
