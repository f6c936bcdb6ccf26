"""Row reductions (sum, max, argmax of each row of a (rows, cols) matrix) and the block-level
combining that the fused kernels share.

Two shapes of work, two plans:

* **Many short rows** (the argmax over classes of every pixel): a thread per row, in order.
* **Few long rows** (a bias gradient: C rows of N*H*W values; a loss: one row of every pixel).
  A thread per row would leave the GPU idle, and so would a block per row: an H100 has 132
  SMs, and a 64-channel batch norm would give it 64 blocks. So each row is cut into ``parts``
  (``row_parts``: enough for two blocks per SM), a block folds each part, and a second launch
  adds each row's parts in order, so the result never depends on which block finished first
  (atomics would).

Inside a block (``block_reduce``): each thread folds every blockDim-th value of its part; then a
warp's 32 threads combine theirs in registers with five shuffles (``cuda.shfl_down_sync``: lane i
reads lane i + 16, then i + 8, ...), the warps' results meet in one shared-memory word each,
and the first warp combines those the same way: two barriers in all, where a tree through
shared memory takes one per halving. The simulator has no shuffles; there the same function is
that shared-memory tree (``_tree_block_reduce``), which its tests run with several threads.
"""

import functools

import numba
from numba import cuda
from numba import types as t

from .index import divmod32
from .launch import SIMULATED, THREADS, launch, launch_per_row, multiprocessors

MIN_PART = 8 * THREADS   # values a block folds at least: fewer, and the second launch costs more than it saves


def row_parts(rows, cols):
    """Parts per row: enough for rows * parts to give every SM two blocks, each part at least MIN_PART long."""
    return max(1, min(-(-2 * multiprocessors() // max(rows, 1)), cols // MIN_PART))


@cuda.jit(device=True)
def _combine(a, b, op):
    return a + b if op == 0 else max(a, b)


@cuda.jit(device=True)
def _tree_block_reduce(partial, value, op):
    """The sum (op 0) or max (op 1) of every thread's ``value`` in this block, returned to all.

    Tree reduction in the shared array ``partial`` (one slot per thread, a power of two long):
    each round, the first half of the live slots absorbs the second half."""
    if cuda.blockDim.x == 1:  # nothing to combine (the simulator's blocks): skip its costly barriers
        return value
    i = cuda.threadIdx.x
    partial[i] = value
    step = cuda.blockDim.x // 2
    while step > 0:
        cuda.syncthreads()
        if i < step:
            partial[i] = _combine(partial[i], partial[i + step], op)
        step //= 2
    cuda.syncthreads()
    result = partial[0]
    cuda.syncthreads()  # every thread has read it before the block writes partial again
    return result


@cuda.jit(device=True)
def _warp_reduce(value, op):
    """The warp's 32 values combined into lane 0 (the other lanes hold partial results)."""
    offset = 16
    while offset > 0:
        value = _combine(value, cuda.shfl_down_sync(0xFFFFFFFF, value, offset), op)
        offset //= 2
    return value


@cuda.jit(device=True)
def _shuffle_block_reduce(partial, value, op):
    """As _tree_block_reduce, by warp shuffles (blockDim a multiple of 32; ``partial`` one slot per warp)."""
    lane, warp = cuda.threadIdx.x % 32, cuda.threadIdx.x // 32
    value = _warp_reduce(value, op)
    if lane == 0:
        partial[warp] = value
    cuda.syncthreads()
    if warp == 0:
        # lanes past the last warp repeat warp 0's result for max, and add 0 (in partial's dtype) for a sum
        value = partial[lane] if lane < cuda.blockDim.x // 32 else (partial[0] if op == 1 else partial.dtype.type(0))
        value = _warp_reduce(value, op)
        if lane == 0:
            partial[0] = value
    cuda.syncthreads()
    result = partial[0]
    cuda.syncthreads()  # every thread has read it before the block writes partial again
    return result


block_reduce = _tree_block_reduce if SIMULATED else _shuffle_block_reduce


@cuda.jit
def _reduce_rows_kernel(a, cols, op, out):
    """Row r of the (rows, cols) matrix a (flat) -> out[r]: op 0 sum, 1 max, 2 argmax."""
    for r in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if op == 2:
            best, where = a[r * cols], 0
            for c in range(1, cols):
                if a[r * cols + c] > best:
                    best, where = a[r * cols + c], c
            out[r] = where
        else:
            folded = a[r * cols]
            for c in range(1, cols):
                folded = _combine(folded, a[r * cols + c], op)
            out[r] = folded


@functools.cache
def _fold_parts_kernel(dtype):
    """partials[r * parts + p] = the sum (op 0) or max (op 1) of part p of row r, a block each."""
    @cuda.jit
    def kernel(a, cols, op, parts, partials):
        partial = cuda.shared.array(THREADS, dtype)
        zero = dtype(0)
        per_part = (cols + parts - 1) // parts
        for b in range(cuda.blockIdx.x, partials.size, cuda.gridDim.x):
            r, p = divmod32(b, parts)
            first, last = p * per_part, min(cols, (p + 1) * per_part)
            folded = zero if op == 0 else a[r * cols + min(first, cols - 1)]  # any of the row's values starts a max
            for c in range(first + cuda.threadIdx.x, last, cuda.blockDim.x):
                folded = _combine(folded, a[r * cols + c], op)
            result = block_reduce(partial, folded, op)
            if cuda.threadIdx.x == 0:
                partials[b] = result
    return kernel


def fold_parts(op, a, rows, cols, parts, empty, threads=None):
    """The (rows * parts,) partial sums or maxima of ``parts`` equal stretches of each row of a,
    in a device array from ``empty(shape, dtype)``."""
    partials = empty((rows * parts,), a.dtype)
    launch_per_row(_fold_parts_kernel(numba.from_dtype(a.dtype)), rows * parts, threads)(
        a, cols, ("sum", "max").index(op), parts, partials)
    return partials


def reduce_rows(op, a, cols, out, by_block, empty, parts=None, threads=None):
    """out[r] = op (sum, max or argmax) over row r of the (rows, cols) matrix a (flat).

    ``by_block``: for sum and max of floats where rows are longer than their count, blocks fold
    parts of each row (into an array from ``empty(shape, dtype)``) and a second launch adds the
    parts (see the module docstring); otherwise a thread per row. ``parts`` and ``threads``
    override the plan (tests use them)."""
    code = ("sum", "max", "argmax").index(op)
    if by_block:
        parts = parts or row_parts(out.size, cols)
        a, cols = fold_parts(op, a, out.size, cols, parts, empty, threads), parts
    launch(_reduce_rows_kernel, out.size)(a, cols, code, out)


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i = dtype[::1], t.int64
    return [("reduce rows", _reduce_rows_kernel, (a1, i, i, a1)),
            ("reduce rows argmax", _reduce_rows_kernel, (a1, i, i, t.int64[::1])),
            ("fold parts", _fold_parts_kernel(dtype), (a1, i, i, i, a1))]
