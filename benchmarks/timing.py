"""Timing for the benchmarks: medians, the device PyTorch should use, and how to wait for a GPU.

GPU kernels are queued and return at once, so a timer must wait for the queue to drain
before it reads the clock; on the CPU backends there is nothing to wait for.
"""

import statistics
import time


def median_seconds(fn, repeats, synchronize):
    """Median wall time of ``fn`` over ``repeats`` runs, after one warm-up (compilation, buffers)."""
    fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_device(backend):
    """The PyTorch device that matches atrousnp's backend: "cuda" for cuda, else "cpu"."""
    return "cuda" if backend == "cuda" else "cpu"


def synchronizer(backend):
    """A function that waits for every kernel queued so far by atrousnp on ``backend``."""
    if backend != "cuda":
        return lambda: None
    from numba import cuda
    return cuda.synchronize


def strict_float32(torch):
    """Make PyTorch compute float32 as float32: on Ampere and later GPUs cuDNN's convolutions
    otherwise run in TF32 (10-bit mantissas) by default, which is not the arithmetic atrousnp
    does. Returns torch."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def torch_synchronizer(torch, device):
    """The same for PyTorch on ``device``."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)
