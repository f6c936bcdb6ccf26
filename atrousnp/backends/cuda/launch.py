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


def configured(kernel, grid, block):
    """``kernel[grid, block]``, counted as one launch (while a step is captured, the capture's:
    on its stream, or recorded)."""
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
    """``kernel`` configured to cover ``n`` items: one thread each on a GPU, one block in the simulator."""
    threads = max(1, min(THREADS, n))
    blocks = 1 if SIMULATED else (n + threads - 1) // threads
    return configured(kernel, blocks, threads)


def launch_per_row(kernel, rows, threads=None):
    """``kernel`` with a block per row (a block-stride loop covers the rest): for per-channel work
    whose threads cooperate through shared memory. In the simulator one block of one thread, for
    which a barrier costs nothing (``threads`` overrides that, for tests of the cooperation)."""
    if threads is None:
        threads = 1 if SIMULATED else THREADS
    if not SIMULATED and threads % 32:
        raise ValueError(f"launch_per_row: threads={threads}: blocks that combine by warp shuffles need whole warps "
                         "(a multiple of 32)")
    return configured(kernel, 1 if SIMULATED else max(1, rows), threads)
