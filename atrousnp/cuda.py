"""What the cuda backend costs: launch and copy counters, and its caching allocator's memory.

    import atrousnp as anp
    before = anp.cuda.counters()
    train_step()
    print(anp.cuda.counters(since=before))   # {'launches': ..., 'device_mallocs': 0, ...}
    anp.cuda.memory_stats()                  # bytes allocated, reserved (allocated + cached), peak
    anp.cuda.empty_cache()                   # give the cached blocks back to the driver

A launch costs some 30 µs of host time through numba and a device malloc (with its free) some
180 µs, so ``launches * 30 µs + device_mallocs * 180 µs`` estimates the host time a step spends
on them: the floor of the step's time however fast the GPU is. Each call builds the cuda backend
if need be (see ``atrousnp.backends.cuda``); in numba's CUDA simulator the same numbers are kept.
"""

from .backends import get_backend


def counters(since=None):
    """Kernel launches, device mallocs and host<->device copies so far, or since an earlier
    ``counters()`` result."""
    backend = get_backend("cuda")
    now = dict(backend.counters.snapshot(), device_mallocs=backend.pool.stats()["device_mallocs"])
    return now if since is None else {name: now[name] - since[name] for name in now}


def memory_stats():
    """allocated_bytes (in arrays now), reserved_bytes (those plus the cached blocks),
    peak_allocated_bytes, device_mallocs and device_frees of the caching allocator."""
    return get_backend("cuda").pool.stats()


def empty_cache():
    """Give every cached (unused) block back to the driver; arrays in use are untouched."""
    get_backend("cuda").pool.empty_cache()
