"""Data-parallel training over MPI: K processes compute what one process computes with K times the batch.

Run a script under MPI (``mpiexec -n 4 python train.py``, on one machine or several); each
process is a *rank* holding a full copy of the model and a 1/K share of every global batch:

    start      broadcast_parameters(model)   every rank starts from rank 0's weights
    forward    each rank on its share; batch norm's statistics summed over all ranks
               (convert_sync_batch_norm(model) makes every BatchNorm2d a SyncBatchNorm2d)
    backward   each rank's gradients of its share of the loss
    average    allreduce_gradients(params)   the mean over ranks, so every rank takes one step
    step       identical on every rank: the models stay identical without ever being sent again

With the loss of each share scaled to its part of the global mean (``share_of_mean``), the
averaged gradient is the gradient of the global batch's loss, and synchronised batch norm
makes the statistics those of the global batch. K ranks then train the model that one process
trains with the whole batch, up to the order of floating-point sums.

    mpi.py              ranks, allreduce (bucketed gradients), broadcast, a batch's share, failing
    sync_batch_norm.py  SyncBatchNorm2d, as PyTorch's torch.nn.SyncBatchNorm

Nothing in ``atrousnp.nn`` or ``atrousnp.functional`` imports this package.
"""

from .mpi import (allreduce_gradients, allreduce_sum, barrier, broadcast_object, broadcast_parameters, fail, init,
                  is_main, rank, share_of_mean, shard, world_size)
from .sync_batch_norm import SyncBatchNorm2d, convert_sync_batch_norm, sync_batch_norm

__all__ = ["SyncBatchNorm2d", "allreduce_gradients", "allreduce_sum", "barrier", "broadcast_object",
           "broadcast_parameters", "convert_sync_batch_norm", "fail", "init", "is_main", "rank", "share_of_mean",
           "shard", "sync_batch_norm", "world_size"]
