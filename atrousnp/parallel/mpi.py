"""MPI through mpi4py: the ranks of a job, and the sums and copies between them.

``init()`` joins the world that ``mpiexec`` started; without it every function here acts for a
world of one process, so code written for K ranks runs unchanged in a plain ``python`` process.
The engine is mpi4py (``pip install -e ".[mpi]"`` brings mpi4py and MPICH).
"""

import sys
import time
import traceback

import numpy as np

from ..tensor import Tensor

_comm = None
BUCKET_BYTES = 25 * 2 ** 20  # PyTorch DDP's default bucket: few calls, each large enough to run at link speed


def init():
    """Join the MPI world that ``mpiexec`` started (a world of one under plain ``python``).

    A rank that raises an uncaught exception prints it, names itself, and aborts the whole job,
    so ``mpiexec`` exits non-zero at once rather than the other ranks waiting forever in their
    next collective call. Returns (rank, world_size)."""
    global _comm
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"distributed training needs mpi4py and an MPI ({error}): "
                           "pip install -e '.[mpi]' (mpi4py and MPICH)") from error
    _comm = MPI.COMM_WORLD
    sys.excepthook = _abort_on_uncaught
    return rank(), world_size()


def fail(message, on_every_rank=False):
    """End with ``message`` on stderr and exit status 1: this process, or, in a job of several
    ranks, all of them (Abort), since the others would wait for this one forever. An error that
    ``on_every_rank`` raises alike (a setting that cannot work) is printed by rank 0 alone, and
    every rank exits by itself."""
    if world_size() == 1 or on_every_rank:
        raise SystemExit(message if is_main() else 1)
    _say_and_abort(f"rank {rank()} of {world_size()}: {message}\n")


def rank() -> int:
    return 0 if _comm is None else _comm.Get_rank()


def world_size() -> int:
    return 1 if _comm is None else _comm.Get_size()


def is_main() -> bool:
    """True on the rank that prints, writes checkpoints and draws pictures (rank 0)."""
    return rank() == 0


def barrier():
    if _comm is not None:
        _comm.Barrier()


def broadcast_object(obj):
    """Rank 0's ``obj`` (anything picklable: a message, a small dict) on every rank."""
    return obj if _comm is None else _comm.bcast(obj, root=0)


def allreduce_sum(array: np.ndarray) -> np.ndarray:
    """The elementwise sum of ``array`` over all ranks (a new array; the input is unchanged)."""
    return _allreduce_in_place(np.array(array, copy=True))


def allreduce_gradients(params, bucket_bytes: int = BUCKET_BYTES):
    """Replace each parameter's ``.grad`` by its mean over all ranks.

    The gradients are packed into flat buckets of about ``bucket_bytes`` (one per dtype run),
    each summed by one in-place Allreduce: a ResNet-50 DeepLabv3 has 161 parameter tensors,
    and one call per tensor would pay MPI's per-message latency 161 times. A parameter
    without a gradient on this rank counts as zeros, so every rank packs the same layout."""
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    for bucket in _buckets(params, bucket_bytes):
        flat = _allreduce_in_place(np.concatenate([_grad_host(p).ravel() for p in bucket]))  # one dtype
        flat /= world_size()
        start = 0
        for p in bucket:
            p.grad = Tensor._wrap(p._backend.asarray(flat[start:start + p.numel()].reshape(p.shape)), p._backend)
            start += p.numel()


def broadcast_parameters(module):
    """Copy rank 0's parameters and buffers (batch norm's running statistics) to every rank, into
    each array where it lies (its memory layout, e.g. a dilated conv's weight stored tap by tap,
    stays)."""
    if world_size() == 1:
        return
    tensors = list(module.parameters()) + list(module.buffers())
    for bucket in _buckets(tensors, BUCKET_BYTES):
        flat = np.concatenate([t.numpy().ravel() for t in bucket])
        _comm.Bcast(flat, root=0)
        start = 0
        for t in bucket:
            t._backend.copy_from_host(t.data, flat[start:start + t.numel()].reshape(t.shape))
            start += t.numel()


def shard(global_batch: int) -> range:
    """The positions in a global batch that this rank computes: a contiguous 1/K of them."""
    size = world_size()
    if global_batch % size:
        raise ValueError(f"the global batch of {global_batch} does not divide among {size} processes; "
                         f"choose a batch size that is a multiple of {size}")
    per_rank = global_batch // size
    return range(rank() * per_rank, (rank() + 1) * per_rank)


def share_of_mean(local_count: int) -> float:
    """The factor for a loss that is a mean over ``local_count`` items on this rank:
    ``factor * local_mean`` averaged over the ranks is the mean over all ranks' items (the
    global batch's loss), whatever each rank's count (the ignore label makes them differ)."""
    total = int(allreduce_sum(np.array([local_count], np.int64))[0])
    return local_count * world_size() / total if total else 0.0


def _allreduce_in_place(buffer):
    """``buffer`` replaced by its elementwise sum over all ranks; returns it."""
    if world_size() > 1:
        from mpi4py import MPI
        _comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
    return buffer


def _buckets(tensors, bucket_bytes):
    """Consecutive runs of tensors of one dtype, each about ``bucket_bytes`` (or one larger tensor)."""
    bucket, size = [], 0
    for t in tensors:
        if bucket and (size + t.numel() * t.dtype.itemsize > bucket_bytes or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.dtype.itemsize
    if bucket:
        yield bucket


def _grad_host(p):
    return np.zeros(p.shape, p.dtype) if p.grad is None else p.grad.numpy()


def _abort_on_uncaught(kind, error, trace):
    report = "".join(traceback.format_exception(kind, error, trace))
    _say_and_abort(f"rank {rank()} of {world_size()} failed:\n{report}")


# How long a failing rank waits between writing its message and aborting the job. MPICH's
# launcher tears the job down when a rank calls Abort, and output written just before can be
# lost on the way (Chapel's PR 14464 and flux-core's issue 3894 report the same): in one CI run
# of 1031 tests, a failing rank's flushed report never reached mpiexec's stderr.
ABORT_GRACE_SECONDS = 0.5


def _say_and_abort(message):
    """Write ``message`` to stderr, give the launcher time to forward it, and abort every rank."""
    sys.stderr.write(message)
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_SECONDS)
    _comm.Abort(1)
