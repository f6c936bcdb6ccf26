"""A caching device allocator, as PyTorch's: freed blocks are kept and handed out again.

Asking the driver for memory (cudaMalloc) and giving it back (cudaFree) costs some 180 µs each,
and a training step allocates thousands of arrays, of the same few sizes every step. So a freed
block is not given back: it goes on a free list for its size, and the next request of that
size takes it, at the cost of a dictionary look-up. Sizes are rounded up (to 512 bytes below
1 MiB, to an eighth of a power of two above: at most 12.5% more) so that nearly equal requests
share blocks. After the first training step every request finds a block: a step makes no
device malloc at all. ``empty_cache()`` gives the cached blocks back to the driver.

Reuse is safe without synchronising because every kernel here runs on one stream, in order: a
block's next user is queued after its last one.

``CachingPool`` is the bookkeeping alone, plain Python. Two adapters connect it:

* on a GPU, numba's External Memory Management plugin interface: numba asks the plugin for
  every device allocation (``device_array``, ``to_device``) and calls the finalizer of the
  pointer it gets back when the last array using that memory is gone;
* in the CUDA simulator, where device arrays wrap NumPy arrays, a NumPy array over the block's
  bytes plays the pointer, and its finalizer returns the block in the same way.
"""

import bisect
import contextlib
import functools
import weakref

import numpy as np

MiB = 1 << 20


def rounded_size(nbytes):
    """The block size that serves a request of ``nbytes``."""
    if nbytes <= MiB:
        return max(512, -(-nbytes // 512) * 512)
    step = 1 << (nbytes.bit_length() - 4)          # an eighth of the power of two below nbytes
    return -(-nbytes // step) * step


class CachingPool:
    """Free lists of device blocks by size; ``malloc(size)`` makes a new block when none is free.

    While a ``Private`` pool is in use (``use_private``: a CUDA graph being captured), requests are
    served from its own free lists, and its blocks go back to them when freed: a graph's
    replays write the addresses it captured, so no array outside the graph may be given one of
    them until the graph is gone (``release``). PyTorch keeps a private pool per graph likewise."""

    def __init__(self, malloc, address=None):
        self.malloc = malloc
        self.address = address or host_address   # a block -> the address of its first byte
        self.free = {}                # size -> blocks
        self.private = None           # the Private pool that serves requests now, if any
        self.allocated = 0            # bytes in blocks handed out
        self.cached = 0               # bytes in blocks on the free lists (private ones too)
        self.peak = 0
        self.device_mallocs = 0
        self.device_frees = 0

    def take(self, nbytes):
        """(block, give_back): a cached block of ``nbytes`` rounded up, or a new one, and the
        function that returns it to the free lists it came from (call it once, when the block is
        no longer used)."""
        size = rounded_size(nbytes)
        home = self.private
        blocks = (self.free if home is None else home.free).get(size)
        if blocks:
            block = blocks.pop()
            self.cached -= size
        else:
            block = self.malloc(size)
            self.device_mallocs += 1
            if home is not None:
                home.add(self.address(block), size)
        self.allocated += size
        self.peak = max(self.peak, self.allocated)
        return block, functools.partial(self._give_back, size, block, home)

    def _give_back(self, size, block, home):
        free = self.free if home is None or home.released else home.free
        free.setdefault(size, []).append(block)
        self.allocated -= size
        self.cached += size

    @contextlib.contextmanager
    def use_private(self, private):
        """Serve every request from ``private`` inside the with-block."""
        self.private = private
        try:
            yield private
        finally:
            self.private = None

    def release(self, private):
        """A graph is gone: its cached blocks join the shared free lists, and so will the blocks
        its arrays still hold, when they are freed."""
        private.released = True
        for size, blocks in private.free.items():
            self.free.setdefault(size, []).extend(blocks)
        private.free.clear()

    def empty_cache(self):
        """Drop every shared cached block: the driver frees them when nothing refers to them any
        more. A live graph's private blocks stay."""
        dropped = sum(len(blocks) * size for size, blocks in self.free.items())
        self.device_frees += sum(len(blocks) for blocks in self.free.values())
        self.free.clear()
        self.cached -= dropped

    def stats(self):
        return {"allocated_bytes": self.allocated, "reserved_bytes": self.allocated + self.cached,
                "peak_allocated_bytes": self.peak, "device_mallocs": self.device_mallocs,
                "device_frees": self.device_frees}


class Private:
    """The free lists of one CUDA graph's blocks (see ``CachingPool``), and where its blocks lie:
    memory at an address that it ``holds`` is the graph's own, and any other memory its
    kernels use (parameters, kept constants) the graph pins for as long as it lives."""

    def __init__(self):
        self.free = {}
        self.released = False
        self.starts, self.ends = [], []      # its blocks' address ranges, in order

    def add(self, start, size):
        at = bisect.bisect(self.starts, start)
        self.starts.insert(at, start)
        self.ends.insert(at, start + size)

    def holds(self, address):
        at = bisect.bisect(self.starts, address) - 1
        return at >= 0 and address < self.ends[at]


def host_address(block):
    """The address of a host buffer's first byte (the simulator's blocks are bytearrays)."""
    return np.frombuffer(block, np.uint8).ctypes.data


def simulated_pool():
    """A pool of host ``bytearray`` blocks, for the simulator's NumPy-backed device arrays."""
    return CachingPool(bytearray)


def simulated_array(pool, shape, dtype):
    """A NumPy array of ``shape`` and ``dtype`` on a pool block; the block goes back to the pool
    when this array and every view of it are gone.

    ``np.frombuffer`` makes an array that does not own its memory (a ``memoryview`` does), and
    NumPy makes every view of it point at it as its base: so it lives exactly as long as the
    last view, which is what the finalizer needs. Its bytes start as 0xFF, as reused GPU memory
    starts as whatever was there: a float read before it is written is NaN."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    block, give_back = pool.take(nbytes)
    owner = np.frombuffer(block, np.uint8, count=nbytes)
    owner[:] = 0xFF  # NaN in every float: a kernel that reads what it never wrote fails in tests, not by chance
    weakref.finalize(owner, give_back)
    return owner.view(dtype).reshape(shape)


def caching_memory_manager(pool_factory):
    """numba's EMM plugin class over a CachingPool (on a GPU only: it needs numba's driver).

    numba's own manager (``NumbaCUDAMemoryManager``) stays the one that talks to the driver: it
    makes the pool's blocks. What numba gets for each allocation is a new pointer into a block,
    whose finalizer returns the block to the pool instead of freeing it."""
    from numba.cuda.cudadrv.driver import MemoryPointer, NumbaCUDAMemoryManager  # a GPU's driver: not in the simulator

    class CachingMemoryManager(NumbaCUDAMemoryManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pool = pool_factory(super().memalloc, lambda block: block.device_pointer_value)

        def memalloc(self, size):
            block, give_back = self.pool.take(size)
            return MemoryPointer(weakref.proxy(self.context), block.device_pointer, size, finalizer=give_back)

        def reset(self):
            self.pool.empty_cache()
            super().reset()

    return CachingMemoryManager
