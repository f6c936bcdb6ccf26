"""A caching device allocator, as PyTorch's: freed blocks are kept and handed out again.

Asking the driver for memory (cudaMalloc) and giving it back (cudaFree) costs some 180 µs each,
and a training step allocates thousands of arrays, of the same few sizes every step. So a freed
block is not given back: it goes on a free list for its size, and the next request of that
size takes it, at the cost of a dictionary look-up. Sizes are rounded up (to 512 bytes below
1 MiB, to an eighth of a power of two above: at most 12.5% more) so that nearly equal requests
share blocks. After the first training step every request finds a block: a step makes no
device malloc at all. ``empty_cache()`` gives the cached blocks back to the driver.

Two rules keep the cache from holding memory the GPU needs, as PyTorch's caching allocator does:

* **A failed allocation empties the cache and tries once more**, and only then raises an
  ``OutOfMemoryError`` that says how much the pool reserved and how much of it was cached.
* **A cache larger than the arrays in use is not grown.** Sizes are classes, and a block of one
  class never serves another: inference at 5 scales x flip over images of many sizes asks for
  new sizes with every image, and a cache that kept each would grow without bound. So when a
  request needs a new block while more bytes sit cached than are in arrays, the cache is
  emptied first: the pool then reserves at most about twice the bytes in use. A training step
  asks for the same sizes every time, finds them cached, and never meets this rule.

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


def _size(nbytes):
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB // 10 else f"{nbytes} bytes"


class OutOfMemoryError(MemoryError):
    """The device has no room for a block, even once the pool's cached blocks were given back."""


class CachingPool:
    """Free lists of device blocks by size; ``malloc(size)`` makes a new block when none is free.

    While a ``Private`` pool is in use (``use_private``: a CUDA graph being captured), requests are
    served from its own free lists, and its blocks go back to them when freed: a graph's
    replays write the addresses it captured, so no array outside the graph may be given one of
    them until the graph is gone (``release``). PyTorch keeps a private pool per graph likewise."""

    def __init__(self, malloc, address=None, flush=None):
        self.malloc = malloc                       # size -> a new block; MemoryError when the device is full
        self.address = address or host_address     # a block -> the address of its first byte
        self.flush = flush or (lambda: None)       # has the driver free the blocks the pool dropped
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
            block = self._new_block(size)
            self.device_mallocs += 1
            if home is not None:
                home.add(self.address(block), size)
        self.allocated += size
        self.peak = max(self.peak, self.allocated)
        return block, functools.partial(self._give_back, size, block, home)

    def _new_block(self, size):
        """A block from the driver: after emptying a cache larger than the arrays in use, and once
        more after emptying the cache when the driver has no room (see the module docstring)."""
        if self.cached > self.allocated:
            self.empty_cache()
        try:
            return self.malloc(size)
        except MemoryError:
            reserved, cached = self.allocated + self.cached, self.cached
            self.empty_cache()
            try:
                return self.malloc(size)
            except MemoryError as error:
                raise OutOfMemoryError(
                    f"cuda: out of memory for a block of {_size(size)}: atrousnp's pool had {_size(reserved)} reserved, "
                    f"{_size(cached)} of it cached and given back before the retry; {_size(self.allocated)} is in "
                    "arrays still in use (a smaller batch or crop needs less)") from error

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
        """Drop every shared cached block and have the driver free them (``flush``: numba queues
        a freed pointer and frees a batch of them later). A live graph's private blocks stay."""
        dropped = sum(len(blocks) * size for size, blocks in self.free.items())
        self.device_frees += sum(len(blocks) for blocks in self.free.values())
        self.free.clear()
        self.cached -= dropped
        self.flush()

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


class SimulatedDevice:
    """The simulator's device memory: ``bytearray`` blocks, and optionally a ``capacity`` in bytes
    past which ``malloc`` raises MemoryError, so that the pool's out-of-memory paths are tested.
    A block is freed when nothing refers to it any more, as numba frees a pointer."""

    def __init__(self, capacity=None):
        self.capacity = capacity
        self.in_use = 0

    def malloc(self, size):
        if self.capacity is not None and self.in_use + size > self.capacity:
            raise MemoryError(f"simulated device: {size} bytes asked, {self.capacity - self.in_use} free")
        block = _Block(size)
        self.in_use += size
        weakref.finalize(block, self._free, size)
        return block

    def _free(self, size):
        self.in_use -= size


class _Block(bytearray):
    """A bytearray that can be weakly referred to (for its finalizer)."""


def simulated_pool(capacity=None):
    """A pool of host blocks, for the simulator's NumPy-backed device arrays (see SimulatedDevice)."""
    return CachingPool(SimulatedDevice(capacity).malloc)


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
    from numba.cuda.cudadrv.driver import (CudaAPIError, MemoryPointer,  # a GPU's driver: not in the simulator
                                           NumbaCUDAMemoryManager, binding)

    class CachingMemoryManager(NumbaCUDAMemoryManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pool = pool_factory(self._device_malloc, lambda block: block.device_pointer_value,
                                     lambda: self.deallocations.clear())    # numba's queue of pending frees

        def _device_malloc(self, size):
            """numba's allocation (which retries once after freeing what it has queued), with an
            out-of-memory error as a MemoryError for the pool."""
            try:
                return NumbaCUDAMemoryManager.memalloc(self, size)
            except CudaAPIError as error:
                if error.code != binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                    raise
                raise MemoryError(f"cuMemAlloc of {size} bytes: {error}") from error

        def memalloc(self, size):
            block, give_back = self.pool.take(size)
            return MemoryPointer(weakref.proxy(self.context), block.device_pointer, size, finalizer=give_back)

        def reset(self):
            self.pool.empty_cache()
            super().reset()

    return CachingMemoryManager
