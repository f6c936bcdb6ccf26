"""Matrix products: out[z] = a[z] @ b[z] for a batch of z, with every operand read through strides.

An operand is a flat device array plus an element offset and three element strides: between
batch entries, rows and columns. A transposed matrix is the same memory with the row and column
strides swapped; a matrix broadcast over the batch has batch stride 0; image n's columns of an
im2col matrix start at offset n * L with row stride N * L. So the convolutions' GEMMs read
their operands where they lie, and no transpose or broadcast is ever copied first. With
``sum_batches`` the products of all batch entries are added into one output (the weight
gradient sums over the images).

How the tiled kernel is fast, one lesson at a time (the numbers are the GPU's tile, ``GPU_TILE``):

1. **Reuse through shared memory.** A GEMM does 2nkm flops on (nk + km) inputs, but a thread
   that computes one output entry reads 2k values for 2k flops: two loads per multiply-add, and
   global memory's ~3 TB/s is under a fiftieth of what an H100's multiply-adds would then need
   (about 60 TFLOP/s in float32). So a block of 256 threads owns a 128x128 tile of out, and
   per step along k stages a 128x8 slab of a and an 8x128 slab of b in shared memory: 2048
   values loaded once, then used 128 times each.
2. **Reuse through registers.** Shared memory is itself slower than the FMA units, so each
   thread computes an 8x8 block of out: per k it reads 8 values of a and 8 of b into registers
   and does 64 multiply-adds with them, 4 flops per shared-memory read. Its 64 sums never leave
   registers until the end (every index into them is a constant once numba unrolls the loops,
   which is what lets the compiler keep a local array in registers).
3. **No bank conflicts.** Shared memory is 32 banks of 4-byte words; the threads of a warp that
   touch different words of one bank wait for one another. A thread's 8x8 block is not
   contiguous: it holds rows ty + 16i and columns tx + 16j. A warp (16 tx by 2 ty) then reads 16
   consecutive words of b's slab (16 banks) and 2 words of a's (which its threads share as a
   broadcast): conflict-free. The slabs are stored k-major, a's transposed, and each row is
   padded by 4 words, so that the stores from global memory, whichever way the operand runs,
   also land in 32 different banks: without the pad, 8 threads writing one column of an
   8-deep slab would hit one bank 8 times.
4. **Coalesced global loads.** A warp's 32 loads are one memory transaction when they read 32
   neighbouring words. So consecutive threads walk along the operand's unit-stride axis: along k
   for a row-major a, along rows for a transposed one (the kernel asks the strides at run time),
   and the output is written by consecutive threads to consecutive columns. (A float4 load would
   move 16 bytes per instruction, but numba has no way to read a float32 array as float4, so the
   loads are scalar, and coalesced.)
5. **Double buffering.** Two copies of each slab: while the block multiplies out of one, each
   thread already holds the next step's 8 values, loaded from global memory into registers
   before the multiply-adds begin, so their latency hides behind the arithmetic; they are stored
   into the other copy afterwards. One barrier per step instead of two.
6. **Fill the GPU.** An H100 has 132 SMs, each running one such block at a time (its 214
   registers a thread, by ``ptxas -v``, leave room for one). A weight gradient of a 64-channel
   conv is a 64x576 output, 5 blocks, with k = N*H*W in the tens of thousands: 127 SMs would
   idle. So when the tiles are fewer than the SMs, k is split
   (``split-k``): each of s blocks per tile sums its own stretch of k into a workspace, and a
   second kernel adds the s partial tiles in a fixed order (deterministic, unlike atomics).

The simulator runs every GPU thread as a Python thread, so it runs the same kernel on a small
tile (``SIMULATOR_TILE``: 2x2 threads of 2x2 sums) in the tests, and the backend there uses a
one-thread-per-entry kernel without barriers (``_simple_gemm_kernel``).
"""

import functools
from typing import NamedTuple

import numba
from numba import cuda
from numba import types as t

from .launch import SIMULATED, configured, launch, multiprocessors
from .layout import flat


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


class Tile(NamedTuple):
    """A block's share of the work: a rows x cols tile of out, ``depth`` of k per step, and
    threads_y x threads_x threads, each summing (rows / threads_y) x (cols / threads_x) entries."""
    rows: int
    cols: int
    depth: int
    threads_y: int
    threads_x: int


GPU_TILE = Tile(128, 128, 8, 16, 16)
SIMULATOR_TILE = Tile(4, 4, 2, 2, 2)
PAD = 4                  # words after each row of a shared slab (lesson 3)
MIN_SPLIT_STEPS = 8      # a split-k share is at least this many steps along k


@cuda.jit(device=True)
def _slab_entry(e, first_len, second_len, second_is_unit):
    """The (first, second) index of a thread's e-th value of a first_len x second_len slab: the
    block's consecutive e walk along the slab's axis whose stride is 1 in memory (lesson 4)."""
    if second_is_unit:
        return e // second_len, e % second_len
    return e % first_len, e // first_len


@functools.cache
def tiled_gemm_kernel(dtype, tile=GPU_TILE):
    """The kernel for one dtype and tile. Its grid is (column tiles, row tiles, output batches *
    splits); block z works on output batch z // splits and its split z % splits of the steps
    along k (with ``sum_batches`` those steps run through every batch entry in turn)."""
    rows, cols, depth, threads_y, threads_x = tile
    threads = threads_y * threads_x
    per_y, per_x = rows // threads_y, cols // threads_x
    a_loads, b_loads = rows * depth // threads, depth * cols // threads
    a_slab_shape, b_slab_shape = (2, depth, rows + PAD), (2, depth, cols + PAD)

    @cuda.jit
    def kernel(a, a_off, a_bs, a_rs, a_cs, b, b_off, b_bs, b_rs, b_cs, out, o_off, o_bs, o_rs, o_cs,
               n, k, m, batches, sum_batches, splits):
        a_slabs = cuda.shared.array(a_slab_shape, dtype)     # two of a's slab, transposed: [k][row]
        b_slabs = cuda.shared.array(b_slab_shape, dtype)     # two of b's slab: [k][column]
        a_next = cuda.local.array(a_loads, dtype)
        b_next = cuda.local.array(b_loads, dtype)
        a_col = cuda.local.array(per_y, dtype)
        b_row = cuda.local.array(per_x, dtype)
        sums = cuda.local.array((per_y, per_x), dtype)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        thread = ty * threads_x + tx
        row0, col0 = cuda.blockIdx.y * rows, cuda.blockIdx.x * cols
        z_out, split = cuda.blockIdx.z // splits, cuda.blockIdx.z % splits
        a_along_k, b_along_cols = a_cs == 1, b_cs == 1                 # each operand's unit-stride axis
        k_steps = (k + depth - 1) // depth
        total_steps = k_steps * (batches if sum_batches else 1)
        per_split = (total_steps + splits - 1) // splits
        first, last = split * per_split, min(total_steps, (split + 1) * per_split)

        for i in range(per_y):
            for j in range(per_x):
                sums[i, j] = 0

        for step in range(first, last + 1):
            buffer = (step - first) % 2
            if step > first:                                            # store the slabs loaded last turn
                for q in range(a_loads):
                    e = thread + q * threads
                    r, c = _slab_entry(e, rows, depth, a_along_k)
                    a_slabs[buffer, c, r] = a_next[q]
                for q in range(b_loads):
                    e = thread + q * threads
                    r, c = _slab_entry(e, depth, cols, b_along_cols)
                    b_slabs[buffer, r, c] = b_next[q]
                cuda.syncthreads()
            if step < last:                                             # load the next slabs into registers
                z = step // k_steps if sum_batches else z_out
                k0 = (step % k_steps) * depth
                for q in range(a_loads):
                    e = thread + q * threads
                    r, c = _slab_entry(e, rows, depth, a_along_k)
                    inside = row0 + r < n and k0 + c < k
                    a_next[q] = a[a_off + z * a_bs + (row0 + r) * a_rs + (k0 + c) * a_cs] if inside else 0
                for q in range(b_loads):
                    e = thread + q * threads
                    r, c = _slab_entry(e, depth, cols, b_along_cols)
                    inside = k0 + r < k and col0 + c < m
                    b_next[q] = b[b_off + z * b_bs + (k0 + r) * b_rs + (col0 + c) * b_cs] if inside else 0
            if step > first:                                            # multiply the stored slabs
                for s in range(depth):
                    for i in range(per_y):
                        a_col[i] = a_slabs[buffer, s, ty + threads_y * i]
                    for j in range(per_x):
                        b_row[j] = b_slabs[buffer, s, tx + threads_x * j]
                    for i in range(per_y):
                        for j in range(per_x):
                            sums[i, j] += a_col[i] * b_row[j]

        o_base = o_off + cuda.blockIdx.z * o_bs
        for i in range(per_y):
            for j in range(per_x):
                r, c = row0 + ty + threads_y * i, col0 + tx + threads_x * j
                if r < n and c < m:
                    out[o_base + r * o_rs + c * o_cs] = sums[i, j]
    return kernel


@cuda.jit
def sum_splits_kernel(partials, splits, out, o_off, o_bs, o_rs, o_cs, n, m):
    """out[z] = the sum over s of partials[z * splits + s] ((n, m) each, contiguous), s in order."""
    for idx in range(cuda.grid(1), partials.size // splits, cuda.gridsize(1)):
        z, r, c = idx // (n * m), (idx // m) % n, idx % m
        total = partials[z * splits * n * m + r * m + c]
        for s in range(1, splits):
            total += partials[(z * splits + s) * n * m + r * m + c]
        out[o_off + z * o_bs + r * o_rs + c * o_cs] = total


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


def split_count(tiles, steps, sms):
    """How many blocks share each output tile's steps along k: enough for the blocks to cover
    every SM once, each doing at least MIN_SPLIT_STEPS steps."""
    if tiles >= sms:
        return 1
    return max(1, min(-(-sms // tiles), steps // MIN_SPLIT_STEPS))


def gemm(a, b, out, n, k, m, batches, empty, sum_batches=False, tiled=not SIMULATED, tile=None, splits=None):
    """out[z] = a[z] @ b[z] ((n, k) @ (k, m)) for z < batches, or their sum over z into out[0].

    a, b, out: Operands (see the module docstring) of one float dtype; ``empty(shape, dtype)``
    makes the device array for split-k's partial tiles. ``tile`` and ``splits``
    override the tiled kernel's tile and its split of k (tests use them)."""
    if not tiled:
        launch(_simple_gemm_kernel, (1 if sum_batches else batches) * n * m)(*a, *b, *out, n, k, m, batches,
                                                                             sum_batches)
        return
    tile = tile or (SIMULATOR_TILE if SIMULATED else GPU_TILE)
    out_batches = 1 if sum_batches else batches
    grid_xy = (-(-m // tile.cols), -(-n // tile.rows))
    steps = -(-k // tile.depth) * (batches if sum_batches else 1)
    splits = splits or split_count(grid_xy[0] * grid_xy[1] * out_batches, steps, multiprocessors())
    kernel = tiled_gemm_kernel(numba.from_dtype(out.array.dtype), tile)
    target = out
    if splits > 1:
        partials = empty((out_batches * splits * n * m,), out.array.dtype)
        target = Operand(partials, 0, n * m, m, 1)
    configured(kernel, (*grid_xy, out_batches * splits), (tile.threads_x, tile.threads_y))(
        *a, *b, *target, n, k, m, batches, sum_batches, splits)
    if splits > 1:
        launch(sum_splits_kernel, out_batches * n * m)(partials, splits, *out, n, m)


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i = dtype[::1], t.int64
    gemm_args = (a1, i, i, i, i) * 3 + (i, i, i, i, t.boolean)
    return [("tiled gemm", tiled_gemm_kernel(dtype), gemm_args + (i,)),
            ("sum splits", sum_splits_kernel, (a1, i, a1) + (i,) * 6),
            ("simple gemm", _simple_gemm_kernel, gemm_args)]
