"""What the cuda backend costs (launch and copy counters, its caching allocator's memory), and
CUDA graphs, which take the launches' host cost away.

    import atrousnp as anp
    before = anp.cuda.counters()
    train_step()
    print(anp.cuda.counters(since=before))   # {'launches': ..., 'device_mallocs': 0, ...}
    anp.cuda.memory_stats()                  # bytes allocated, reserved (allocated + cached), peak
    anp.cuda.empty_cache()                   # give the cached blocks back to the driver
    step = anp.cuda.graph(train_step)        # a whole step as one CUDA graph launch

A launch costs some 30 µs of host time through numba and a device malloc (with its free) some
180 µs, so ``launches * 30 µs + device_mallocs * 180 µs`` estimates the host time a step spends
on them: the floor of the step's time however fast the GPU is. Each call builds the cuda backend
if need be (see ``atrousnp.backends.cuda``); in numba's CUDA simulator the same numbers are kept.
"""

from .backends import get_backend


def graph(step):
    """``step`` (a training step on the cuda backend, taking NumPy arrays) captured once as a CUDA
    graph and replayed at every later call, so that its hundreds of kernels cost one launch:

        step = anp.cuda.graph(train_step)   # train_step(images, labels) -> the loss Tensor
        for images, labels in batches:      # the same shapes every time
            loss = step(images, labels)     # 1st call eager, 2nd captures, then replays
            schedule.step()                 # the new rate reaches the graph in place
            print(loss.item())

    Each call returns the Tensors that ``step`` returned at capture, holding this call's values.
    The lesson, and the rules a step keeps (the same shapes; state changed in place; no host
    copies inside but of its arguments), are in ``atrousnp/backends/cuda/graph.py``. In numba's
    CUDA simulator the step's kernels are recorded and replayed one by one: the same results,
    no speed-up."""
    from .backends.cuda.graph import StepGraph
    backend = get_backend()
    if backend.name != "cuda":
        raise ValueError(f"anp.cuda.graph: the current backend is {backend.name!r}; a CUDA graph captures the "
                         "cuda backend's launches (anp.set_backend('cuda') first). On the CPU there is no launch "
                         "cost to save: call the step itself")
    return StepGraph(step, backend)


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
