"""How kernels are launched, and the counters that show what a step costs.

A GPU runs a kernel in microseconds, but launching one from Python through numba's dispatcher
costs some 30 µs of host time, and a device allocation without a cache (a cudaMalloc and a
cudaFree) some 180 µs. A training step made of thousands of small kernels therefore leaves the
GPU idle, waiting for the host. The counters make that visible without a GPU profiler: a step's
launches, device allocations and host<->device copies (``atrousnp.cuda.counters()``).

Every one-dimensional kernel loops over its items with a grid-stride loop,
    for i in range(cuda.grid(1), n, cuda.gridsize(1)),
so any launch covers them all. On a GPU each thread gets one item. The simulator runs each GPU
thread as a Python thread, and starting one costs some 70 loop turns: there a kernel gets one
block of a few threads that loop. Barriers cost it most, so it also gets the barrier-free GEMM
(one thread per output entry) and thread-per-row reductions; the tests still run the tiled GEMM
and the block reductions directly, on small shapes. The results are the same.
"""

import functools

import numba
from numba import cuda

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
THREADS = 4 if SIMULATED else 128


class Counters:
    """Running totals of kernel launches and host<->device copies (device allocations are the
    memory pool's). ``snapshot()`` and ``since(snapshot)`` measure a stretch of code."""

    FIELDS = ("launches", "host_to_device", "device_to_host")

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, 0)

    def snapshot(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    def since(self, snapshot):
        return {name: getattr(self, name) - snapshot[name] for name in self.FIELDS}


COUNTERS = Counters()

# Count launches without running the kernels: a step's launches and allocations follow from
# shapes alone (nothing in a step reads device data back), so in the simulator a full-size
# model's step can be counted in seconds (benchmarks/profile_step.py --count-only). Results are garbage.
COUNT_ONLY = False


# The graph.Capture that launches go to while a step is captured as a CUDA graph, or None.
CAPTURE = None


# What a GPU accepts (CUDA's limits for every compute capability since 3.0): a launch outside
# them fails on hardware, while the simulator would run it; checked at every launch here, so
# that the simulator refuses it too.
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2 ** 31 - 1, 65535, 65535)
MAX_STATIC_SHARED_BYTES = 48 * 1024


def check_geometry(name, grid, block, shared_bytes=0):
    """A ValueError naming ``name`` if a launch of ``grid`` blocks of ``block`` threads (ints or
    tuples of up to 3) with ``shared_bytes`` of static shared memory is one a GPU refuses. A
    grid of 0 blocks is one (CUDA_ERROR_INVALID_VALUE): work with no items launches nothing."""
    grid, block = _dims(grid), _dims(block)
    problems = []
    if min(grid + block) < 1:
        problems.append("an empty grid or block (skip work with no items instead of launching it)")
    problems += [f"grid {'xyz'[d]} of {grid[d]} > {MAX_GRID[d]}" for d in range(3) if grid[d] > MAX_GRID[d]]
    problems += [f"block {'xyz'[d]} of {block[d]} > {MAX_BLOCK[d]}" for d in range(3) if block[d] > MAX_BLOCK[d]]
    if block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
        problems.append(f"{block[0] * block[1] * block[2]} threads a block > {MAX_THREADS_PER_BLOCK}")
    if shared_bytes > MAX_STATIC_SHARED_BYTES:
        problems.append(f"{shared_bytes} bytes of static shared memory > {MAX_STATIC_SHARED_BYTES}")
    if problems:
        raise ValueError(f"cuda: a launch of {name} with grid {grid} and block {block} would fail on a GPU: "
                         + "; ".join(problems))


def _dims(size):
    dims = tuple(size) if isinstance(size, tuple) else (size,)
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def configured(kernel, grid, block, shared_bytes=0):
    """``kernel[grid, block]``, counted as one launch (while a step is captured, the capture's:
    on its stream, or recorded), once its geometry is checked against a GPU's limits."""
    check_geometry(kernel.__name__, grid, block, shared_bytes)
    COUNTERS.launches += 1
    if COUNT_ONLY:
        return lambda *args: None
    return kernel[grid, block] if CAPTURE is None else CAPTURE.configured(kernel, grid, block)


@functools.cache
def multiprocessors():
    """The GPU's streaming multiprocessors (132 on an H100): how many blocks run at once, at
    least. The simulator has none; it says 4, so that the grid policies still make choices."""
    return 4 if SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT


def launch(kernel, n):
    """``kernel`` configured to cover ``n`` items: one thread each on a GPU, one block in the
    simulator; for no items, nothing is launched. The grid-stride loop covers any n, so the
    grid is capped at the limit of grid x."""
    if n == 0:
        return _nothing
    threads = min(THREADS, n)
    blocks = 1 if SIMULATED else min(MAX_GRID[0], (n + threads - 1) // threads)
    return configured(kernel, blocks, threads)


def _nothing(*args):
    """What ``launch`` gives for no items: a kernel that launches nothing."""


def launch_per_row(kernel, rows, threads=None):
    """``kernel`` with a block per row (a block-stride loop covers the rest), none for no rows:
    for per-channel work whose threads cooperate through shared memory. In the simulator one
    block of one thread, for which a barrier costs nothing (``threads`` overrides that, for
    tests of the cooperation)."""
    if threads is None:
        threads = 1 if SIMULATED else THREADS
    if not SIMULATED and threads % 32:
        raise ValueError(f"launch_per_row: threads={threads}: blocks that combine by warp shuffles need whole warps "
                         "(a multiple of 32)")
    if rows == 0:
        return _nothing
    return configured(kernel, 1 if SIMULATED else min(MAX_GRID[0], rows), threads)
