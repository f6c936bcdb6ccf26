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
3. **Vector reads, no bank conflicts.** Shared memory is 32 banks of 4-byte words; the threads
   of a warp that touch different words of one bank wait for one another. A thread's 8 rows
   are two runs of 4 consecutive ones (ty*4.. and 64 + ty*4..), and so are its columns, so each
   run is one 16-byte read (``LDS.128``): 4 reads feed 64 multiply-adds. A quarter-warp's 8
   threads then read 128 consecutive bytes of b's slab, conflict-free, and a's reads are
   broadcasts (its warp holds 2 values of ty). The slabs are stored k-major, a's transposed,
   each row padded by 4 words, so that the stores from global memory, whichever way the
   operand runs, also land in 32 different banks: without the pad, 8 threads writing one
   column of an 8-deep slab would hit one bank 8 times.
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
6. **A loop of multiply-adds and nothing else.** The machine code of the loop over the slab's
   depth is what runs most (``python tests/compile_cuda_kernels.py --sass`` prints it for
   sm_90): every instruction in it that is not an FFMA is overhead. So each thread works out
   where its loads come from and go to once, before the loop over k (they move only by k0 and
   the buffer), and indexes shared memory with unsigned integers: numba adds a check for
   negative indices (Python's wraparound) to every signed index, and in the loop those checks
   and the index arithmetic were 81 of 145 instructions. The depth loop does two rows of the
   slab per turn (``_multiply_slab_row`` twice), so its counter and branch are paid once per
   128 FFMA: 128 FFMA in 146 instructions (0.88; the check asks for 0.75 or more).
7. **Fill the GPU.** An H100 has 132 SMs, each running one such block at a time (its 168
   registers a thread, by ``ptxas -v``, leave room for one). A weight gradient of a 64-channel
   conv is a 64x576 output, 5 blocks, with k = N*H*W in the tens of thousands: 127 SMs would
   idle. So when the tiles are fewer than the SMs, k is split
   (``split-k``): each of s blocks per tile sums its own stretch of k into a workspace, and a
   second kernel adds the s partial tiles in a fixed order (deterministic, unlike atomics).
8. **Skinny products get narrow tiles.** The classifier's GEMM has 21 rows (classes) and the
   image pooling's 1 column (a pooled pixel): in a 128x128 tile 107/128 or 127/128 of the
   block's work would be padding, and there would be few blocks. A product with at most 32
   rows (or columns) runs in 32x128 (or 128x32) tiles of 128 threads (``tile_for``): 4x more
   blocks, a quarter of the padding, and split-k fills the SMs that are left.
9. **Grid limits.** Grid y and z hold at most 65,535 blocks each: a launch covers at most that
   many tile rows and batch entries x splits, and a larger product is launched in chunks.

The simulator runs every GPU thread as a Python thread, so it runs the same kernel on a small
tile (``SIMULATOR_TILE``: 2x2 threads of 2x2 sums) in the tests, and the backend there uses a
one-thread-per-entry kernel without barriers (``_simple_gemm_kernel``).
"""

import functools
from typing import NamedTuple

import numba
from numba import cuda
from numba import types as t

from .index import INDEX, divmod32     # INDEX: unsigned, so numba adds no wraparound check (lesson 6)
from .launch import MAX_GRID, SIMULATED, configured, launch, multiprocessors
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
FEW_ROWS_TILE = Tile(32, 128, 8, 8, 16)      # at most 32 rows: the classifier's 21 classes
FEW_COLS_TILE = Tile(128, 32, 8, 16, 8)      # at most 32 columns: a pooled pixel's 1
SIMULATOR_TILE = Tile(4, 4, 2, 2, 2)
PAD = 4                  # words after each row of a shared slab (lesson 3)
RUN = 4                  # consecutive rows (columns) of a thread's block, read as one vector (lesson 3)
MIN_SPLIT_STEPS = 8      # a split-k share is at least this many steps along k


def tile_for(n, m):
    """The GPU tile for an (n, m) output (lesson 8)."""
    if n <= FEW_ROWS_TILE.rows and m > n:
        return FEW_ROWS_TILE
    if m <= FEW_COLS_TILE.cols:
        return FEW_COLS_TILE
    return GPU_TILE


def shared_bytes(tile, itemsize):
    """The static shared memory of a tile's two double-buffered slabs."""
    return 2 * tile.depth * (tile.rows + PAD + tile.cols + PAD) * itemsize


@cuda.jit(device=True)
def _slab_entry(e, first_len, second_len, second_is_unit):
    """The (first, second) index of a thread's e-th value of a first_len x second_len slab: the
    block's consecutive e walk along the slab's axis whose stride is 1 in memory (lesson 4)."""
    if second_is_unit:
        return e // second_len, e % second_len
    return e % first_len, e // first_len


@functools.cache
def tiled_gemm_kernel(dtype, tile=GPU_TILE):
    """The kernel for one dtype and tile. Block (x, y, z) of a launch works on column tile x, row
    tile y0 + y and, of the output batches * splits, number z0 + z: output batch (z0 + z) //
    splits and its split (z0 + z) % splits of the steps along k (with ``sum_batches`` those steps
    run through every batch entry in turn)."""
    rows, cols, depth, threads_y, threads_x = tile
    threads = threads_y * threads_x
    per_y, per_x = rows // threads_y, cols // threads_x
    run_y, run_x = min(RUN, per_y), min(RUN, per_x)
    a_loads, b_loads = rows * depth // threads, depth * cols // threads
    a_pitch, b_pitch = rows + PAD, cols + PAD                  # words from one k of a slab to the next
    a_words, b_words = depth * a_pitch, depth * b_pitch        # words of one slab
    a_shape, b_shape = (2 * a_words,), (2 * b_words,)
    align = None if SIMULATED else 16      # bytes: a 16-byte read needs 16-byte aligned rows (the simulator has none)
    if depth % 2 or per_y % run_y or per_x % run_x:
        raise ValueError(f"tiled_gemm_kernel: {tile} needs an even depth and whole runs of {RUN}")

    @cuda.jit(device=True)
    def _multiply_slab_row(a_slabs, a_at, b_slabs, b_at, a_col, b_row, sums):
        """sums += the outer product of this thread's rows of one k of a's slab (from a_at) and its
        columns of b's (from b_at): runs of consecutive words, which become vector reads."""
        for i in range(per_y):
            a_col[i] = a_slabs[a_at + INDEX(i // run_y * threads_y * run_y + i % run_y)]
        for j in range(per_x):
            b_row[j] = b_slabs[b_at + INDEX(j // run_x * threads_x * run_x + j % run_x)]
        for i in range(per_y):
            for j in range(per_x):
                sums[i, j] += a_col[i] * b_row[j]

    @cuda.jit
    def kernel(a, a_off, a_bs, a_rs, a_cs, b, b_off, b_bs, b_rs, b_cs, out, o_off, o_bs, o_rs, o_cs,
               n, k, m, batches, sum_batches, splits, y0, z0):
        a_slabs = cuda.shared.array(a_shape, dtype, alignment=align)   # two of a's slab, transposed: [buffer][k][row]
        b_slabs = cuda.shared.array(b_shape, dtype, alignment=align)   # two of b's slab: [buffer][k][column]
        a_next, b_next = cuda.local.array(a_loads, dtype), cuda.local.array(b_loads, dtype)
        a_from, b_from = cuda.local.array(a_loads, t.int64), cuda.local.array(b_loads, t.int64)
        a_to, b_to = cuda.local.array(a_loads, INDEX), cuda.local.array(b_loads, INDEX)
        a_k, b_k = cuda.local.array(a_loads, t.int64), cuda.local.array(b_loads, t.int64)
        a_col, b_row = cuda.local.array(per_y, dtype), cuda.local.array(per_x, dtype)
        sums = cuda.local.array((per_y, per_x), dtype)
        zero = dtype(0)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        thread = ty * threads_x + tx
        row0, col0, block_z = (y0 + cuda.blockIdx.y) * rows, cuda.blockIdx.x * cols, z0 + cuda.blockIdx.z
        z_out, split = block_z // splits, block_z % splits
        a_along_k, b_along_cols = a_cs == 1, b_cs == 1                 # each operand's unit-stride axis
        k_steps = (k + depth - 1) // depth
        total_steps = k_steps * (batches if sum_batches else 1)
        per_split = (total_steps + splits - 1) // splits
        first, last = split * per_split, min(total_steps, (split + 1) * per_split)
        z = first // k_steps if sum_batches and k_steps else z_out     # the batch entry and k of the first step
        k0 = first % k_steps * depth if k_steps else 0

        # Where this thread's loads come from (less z and k0) and go to, and the k past which
        # each reads nothing (k itself where its row or column is outside the product).
        for q in range(a_loads):
            r, c = _slab_entry(thread + q * threads, rows, depth, a_along_k)
            a_from[q], a_to[q], a_k[q] = a_off + (row0 + r) * a_rs + c * a_cs, INDEX(c * a_pitch + r), \
                c if row0 + r < n else k
        for q in range(b_loads):
            r, c = _slab_entry(thread + q * threads, depth, cols, b_along_cols)
            b_from[q], b_to[q], b_k[q] = b_off + r * b_rs + (col0 + c) * b_cs, INDEX(r * b_pitch + c), \
                r if col0 + c < m else k
        for i in range(per_y):
            for j in range(per_x):
                sums[i, j] = zero

        for step in range(first, last + 1):
            buffer = INDEX((step - first) & 1)
            if step > first:                                            # store the slabs loaded last turn
                for q in range(a_loads):
                    a_slabs[buffer * INDEX(a_words) + a_to[q]] = a_next[q]
                for q in range(b_loads):
                    b_slabs[buffer * INDEX(b_words) + b_to[q]] = b_next[q]
                cuda.syncthreads()
            if step < last:                                             # load the next slabs into registers
                a_step, b_step = z * a_bs + k0 * a_cs, z * b_bs + k0 * b_rs
                for q in range(a_loads):
                    a_next[q] = a[a_from[q] + a_step] if k0 + a_k[q] < k else zero
                for q in range(b_loads):
                    b_next[q] = b[b_from[q] + b_step] if k0 + b_k[q] < k else zero
                k0 += depth
                if k0 >= k:                                             # the next batch entry (sum_batches)
                    k0, z = 0, z + 1
            if step > first:                                            # multiply the stored slabs
                a_at = buffer * INDEX(a_words) + INDEX(ty) * INDEX(run_y)
                b_at = buffer * INDEX(b_words) + INDEX(tx) * INDEX(run_x)
                for s in range(0, depth, 2):
                    _multiply_slab_row(a_slabs, a_at, b_slabs, b_at, a_col, b_row, sums)
                    _multiply_slab_row(a_slabs, a_at + INDEX(a_pitch), b_slabs, b_at + INDEX(b_pitch), a_col, b_row,
                                       sums)
                    a_at += INDEX(2 * a_pitch)
                    b_at += INDEX(2 * b_pitch)

        o_base = o_off + block_z * o_bs
        for i in range(per_y):
            for j in range(per_x):
                r = row0 + i // run_y * threads_y * run_y + ty * run_y + i % run_y
                c = col0 + j // run_x * threads_x * run_x + tx * run_x + j % run_x
                if r < n and c < m:
                    out[o_base + r * o_rs + c * o_cs] = sums[i, j]
    return kernel


@cuda.jit
def sum_splits_kernel(partials, splits, out, o_off, o_bs, o_rs, o_cs, n, m):
    """out[z] = the sum over s of partials[z * splits + s] ((n, m) each, contiguous), s in order."""
    for idx in range(cuda.grid(1), partials.size // splits, cuda.gridsize(1)):
        z, entry = divmod32(idx, n * m)
        r, c = divmod32(entry, m)
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
        total = out.dtype.type(0)  # not out[...] * 0: out is uninitialised, and NaN * 0 is NaN
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
    out_batches = 1 if sum_batches else batches
    if n * m * out_batches == 0:
        return
    if not tiled:
        launch(_simple_gemm_kernel, out_batches * n * m)(*a, *b, *out, n, k, m, batches, sum_batches)
        return
    tile = tile or (SIMULATOR_TILE if SIMULATED else tile_for(n, m))
    col_tiles, row_tiles = -(-m // tile.cols), -(-n // tile.rows)
    steps = -(-k // tile.depth) * (batches if sum_batches else 1)
    splits = splits or split_count(col_tiles * row_tiles * out_batches, steps, multiprocessors())
    kernel = tiled_gemm_kernel(numba.from_dtype(out.array.dtype), tile)
    target = out
    if splits > 1:
        partials = empty((out_batches * splits * n * m,), out.array.dtype)
        target = Operand(partials, 0, n * m, m, 1)
    most_y, most_z = MAX_GRID[1], MAX_GRID[2]
    for y0 in range(0, row_tiles, most_y):                              # chunks within grid y's and z's limits
        for z0 in range(0, out_batches * splits, most_z):
            grid = (col_tiles, min(most_y, row_tiles - y0), min(most_z, out_batches * splits - z0))
            configured(kernel, grid, (tile.threads_x, tile.threads_y),
                       shared_bytes(tile, out.array.dtype.itemsize))(*a, *b, *target, n, k, m, batches, sum_batches,
                                                                     splits, y0, z0)
    if splits > 1:
        launch(sum_splits_kernel, out_batches * n * m)(partials, splits, *out, n, m)


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i = dtype[::1], t.int64
    gemm_args = (a1, i, i, i, i) * 3 + (i, i, i, i, t.boolean)
    return [("tiled gemm", tiled_gemm_kernel(dtype), gemm_args + (i, i, i)),
            ("tiled gemm, few rows", tiled_gemm_kernel(dtype, FEW_ROWS_TILE), gemm_args + (i, i, i)),
            ("tiled gemm, few columns", tiled_gemm_kernel(dtype, FEW_COLS_TILE), gemm_args + (i, i, i)),
            ("sum splits", sum_splits_kernel, (a1, i, a1) + (i,) * 6),
            ("simple gemm", _simple_gemm_kernel, gemm_args)]
