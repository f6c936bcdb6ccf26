"""Matrix products: out[z] = a[z] @ b[z] for a batch of z, with every operand read through strides.

An operand is a flat device array plus an element offset and three element strides: between
batch entries, rows and columns. A transposed matrix is the same memory with the row and column
strides swapped; a matrix broadcast over the batch has batch stride 0; image n's columns of an
im2col matrix start at offset n * L with row stride N * L. So the convolutions' GEMMs read
their operands where they lie, and no transpose or broadcast is ever copied first. With
``sum_batches`` the products of all batch entries are added into one output (the weight
gradient sums over the images).

Tiled kernel: a block of 16x16 threads computes a 64x64 tile of out; each thread keeps a 4x4
block of sums in registers (rows ty + 16i, columns tx + 16j, so that neighbouring threads read
neighbouring shared-memory words), and the block stages 64x16 of a and 16x64 of b in shared
memory per step along k: each value loaded from global memory is used 64 times.
"""

import functools
from typing import NamedTuple

import numba
from numba import cuda

from .launch import SIMULATED, configured, launch
from .layout import flat

BLOCK, STEP, PER_THREAD, SIDE = 64, 16, 4, 16


class Operand(NamedTuple):
    """A batch of matrices in a flat device array: entry (z, r, c) is at offset + z*batch + r*row + c*col."""
    array: object
    offset: int
    batch: int
    row: int
    col: int


def contiguous(array3d):
    """The operand of a C-contiguous (Z, rows, cols) device array."""
    z, rows, cols = array3d.shape
    return Operand(flat(array3d), 0, rows * cols, cols, 1)


@functools.cache
def _tiled_gemm_kernel(dtype):
    @cuda.jit
    def kernel(a, a_off, a_bs, a_rs, a_cs, b, b_off, b_bs, b_rs, b_cs, out, o_off, o_bs, o_rs, o_cs,
               n, k, m, batches, sum_batches):
        a_tile = cuda.shared.array((BLOCK, STEP), dtype)
        b_tile = cuda.shared.array((STEP, BLOCK), dtype)
        sums = cuda.local.array((PER_THREAD, PER_THREAD), dtype)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        thread = ty * SIDE + tx
        row0, col0 = cuda.blockIdx.y * BLOCK, cuda.blockIdx.x * BLOCK
        z_first = 0 if sum_batches else cuda.blockIdx.z
        z_last = batches if sum_batches else z_first + 1
        for i in range(PER_THREAD):
            for j in range(PER_THREAD):
                sums[i, j] = 0
        for z in range(z_first, z_last):
            a_base, b_base = a_off + z * a_bs, b_off + z * b_bs
            for start in range(0, k, STEP):
                for e in range(thread, BLOCK * STEP, SIDE * SIDE):      # each thread loads 4 of a's tile
                    r, c = e // STEP, e % STEP
                    inside = row0 + r < n and start + c < k
                    a_tile[r, c] = a[a_base + (row0 + r) * a_rs + (start + c) * a_cs] if inside else 0
                for e in range(thread, STEP * BLOCK, SIDE * SIDE):      # and 4 of b's
                    r, c = e // BLOCK, e % BLOCK
                    inside = start + r < k and col0 + c < m
                    b_tile[r, c] = b[b_base + (start + r) * b_rs + (col0 + c) * b_cs] if inside else 0
                cuda.syncthreads()
                for s in range(STEP):
                    for i in range(PER_THREAD):
                        a_value = a_tile[ty + SIDE * i, s]
                        for j in range(PER_THREAD):
                            sums[i, j] += a_value * b_tile[s, tx + SIDE * j]
                cuda.syncthreads()
        o_base = o_off + z_first * o_bs
        for i in range(PER_THREAD):
            for j in range(PER_THREAD):
                r, c = row0 + ty + SIDE * i, col0 + tx + SIDE * j
                if r < n and c < m:
                    out[o_base + r * o_rs + c * o_cs] = sums[i, j]
    return kernel


@cuda.jit
def _simple_gemm_kernel(a, a_off, a_bs, a_rs, a_cs, b, b_off, b_bs, b_rs, b_cs, out, o_off, o_bs, o_rs, o_cs,
                        n, k, m, batches, sum_batches):
    """The same product with one thread per output entry and a plain dot product (the simulator's)."""
    out_batches = 1 if sum_batches else batches
    for idx in range(cuda.grid(1), out_batches * n * m, cuda.gridsize(1)):
        zo, row, col = idx // (n * m), (idx // m) % n, idx % m
        total = 0.0  # not out[...] * 0: out is uninitialised, and NaN * 0 is NaN
        for z in range(0 if sum_batches else zo, batches if sum_batches else zo + 1):
            for s in range(k):
                total += a[a_off + z * a_bs + row * a_rs + s * a_cs] * b[b_off + z * b_bs + s * b_rs + col * b_cs]
        out[o_off + zo * o_bs + row * o_rs + col * o_cs] = total


def gemm(a, b, out, n, k, m, batches, sum_batches=False, tiled=not SIMULATED):
    """out[z] = a[z] @ b[z] ((n, k) @ (k, m)) for z < batches, or their sum over z into out[0].

    a, b, out: Operands (see the module docstring) of one float dtype."""
    args = (*a, *b, *out, n, k, m, batches, sum_batches)
    if tiled:
        grid = ((m + BLOCK - 1) // BLOCK, (n + BLOCK - 1) // BLOCK, 1 if sum_batches else batches)
        configured(_tiled_gemm_kernel(numba.from_dtype(out.array.dtype)), grid, (SIDE, SIDE))(*args)
    else:
        launch(_simple_gemm_kernel, (1 if sum_batches else batches) * n * m)(*args)
