"""Row reductions: sum, max and argmax of each row of a (rows, cols) matrix.

A thread per row where rows are many; a block per row where a few rows are long (a bias
gradient, a loss mean), so that the GPU is not left with a handful of busy threads. A block
combines its threads' partial results in shared memory (``block_reduce``).
"""

import functools

import numba
from numba import cuda
from numba import types as t

from .launch import SIMULATED, THREADS, configured, launch


@cuda.jit
def _reduce_rows_kernel(a, cols, op, out):
    """Row r of the (rows, cols) matrix a (flat) -> out[r]: op 0 sum, 1 max, 2 argmax."""
    for r in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if op == 0:
            total = 0.0
            for c in range(cols):
                total += a[r * cols + c]
            out[r] = total
        else:
            best, where = a[r * cols], 0
            for c in range(1, cols):
                if a[r * cols + c] > best:
                    best, where = a[r * cols + c], c
            out[r] = best if op == 1 else where


@cuda.jit(device=True)
def block_reduce(partial, value, op):
    """The sum (op 0) or max (op 1) of every thread's ``value`` in this block, returned to all.

    Tree reduction in the shared array ``partial`` (one slot per thread, a power of two long):
    each round, the first half of the live slots absorbs the second half."""
    if cuda.blockDim.x == 1:  # nothing to combine (the simulator's blocks): skip its costly barriers
        return value
    t = cuda.threadIdx.x
    partial[t] = value
    step = cuda.blockDim.x // 2
    while step > 0:
        cuda.syncthreads()
        if t < step:
            partial[t] = partial[t] + partial[t + step] if op == 0 else max(partial[t], partial[t + step])
        step //= 2
    cuda.syncthreads()
    result = partial[0]
    cuda.syncthreads()  # every thread has read it before the block writes partial again
    return result


@functools.cache
def _reduce_wide_rows_kernel(dtype):
    """Like _reduce_rows_kernel for sum and max, but one block per row: each thread folds every
    THREADS-th entry of the row, and the block combines the threads' results. For a few long rows
    (a bias gradient, a loss mean), where one thread per row would leave the GPU idle."""
    @cuda.jit
    def kernel(a, cols, op, out):
        partial = cuda.shared.array(THREADS, dtype)
        for r in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):
            folded = 0.0 if op == 0 else a[r * cols]
            for c in range(cuda.threadIdx.x, cols, cuda.blockDim.x):
                value = a[r * cols + c]
                folded = folded + value if op == 0 else max(folded, value)
            result = block_reduce(partial, folded, op)
            if cuda.threadIdx.x == 0:
                out[r] = result
    return kernel


def reduce_rows(op, a, cols, out, by_block):
    """out[r] = op (sum, max or argmax) over row r of the (rows, cols) matrix a (flat).

    ``by_block``: a block per row, for sum and max of floats, where rows are longer than their
    count; otherwise a thread per row."""
    code = ("sum", "max", "argmax").index(op)
    if by_block:
        blocks = 1 if SIMULATED else max(1, out.size)
        configured(_reduce_wide_rows_kernel(numba.from_dtype(a.dtype)), blocks, THREADS)(a, cols, code, out)
    else:
        launch(_reduce_rows_kernel, out.size)(a, cols, code, out)


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i = dtype[::1], t.int64
    return [("reduce rows", _reduce_rows_kernel, (a1, i, i, a1)),
            ("reduce rows argmax", _reduce_rows_kernel, (a1, i, i, t.int64[::1])),
            ("reduce wide rows", _reduce_wide_rows_kernel(dtype), (a1, i, i, a1))]
