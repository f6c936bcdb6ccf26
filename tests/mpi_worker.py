"""Run by tests/test_parallel.py under ``mpiexec -n K``: one check per mode, each rank saving
what it computed to OUT/rank<r>.npz for the test (a plain process) to compare with one process.

    mpiexec -n 2 python tests/mpi_worker.py gradients OUT
"""

import sys

import numpy as np

import atrousnp as anp
import atrousnp.functional as F
from atrousnp import parallel


def small_model():
    """The small DeepLabv3 in float64, so that 2 ranks and 1 process agree to rounding."""
    model = anp.models.deeplabv3_small(num_classes=4, rng=np.random.default_rng(0)).astype("float64")
    rng = np.random.default_rng(1)
    images, labels = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 4, (4, 32, 32))
    labels[0, :10] = 255  # the ranks' counts of labelled pixels differ
    return model, images, labels


def gradients(out):
    """This rank's share of the batch through a synchronised model; gradients averaged."""
    model, images, labels = small_model()
    parallel.convert_sync_batch_norm(model)
    share = parallel.shard(len(images))
    loss = F.cross_entropy(model(anp.tensor(images[share.start:share.stop])), labels[share.start:share.stop])
    factor = parallel.share_of_mean(int((labels[share.start:share.stop] != 255).sum()))
    (loss * factor).backward()
    parallel.allreduce_gradients(model.parameters())
    return {**{name: p.grad.numpy() for name, p in model.named_parameters()},
            **{name: b.numpy() for name, b in model.named_buffers()}}


def sync_batch_norm(out):
    """relu(bn(x) + residual) with statistics over both ranks, forward and backward."""
    rng = np.random.default_rng(2)
    x, residual, upstream = rng.standard_normal((3, 4, 3, 5, 5)) * np.array([1, 3, 0.5]).reshape(3, 1, 1) + 1
    share = parallel.shard(4)
    layer = parallel.SyncBatchNorm2d(3, dtype=np.float64)
    layer.weight.data = rng.uniform(0.5, 2, 3)
    x_share = anp.tensor(x[share.start:share.stop], requires_grad=True)
    r_share = anp.tensor(residual[share.start:share.stop], requires_grad=True)
    y = layer(x_share, residual=r_share, relu=True)
    (y * anp.tensor(upstream[share.start:share.stop])).sum().backward()
    return {"y": y.numpy(), "dx": x_share.grad.numpy(), "dresidual": r_share.grad.numpy(),
            "dweight": layer.weight.grad.numpy(), "dbias": layer.bias.grad.numpy(),
            "running_mean": layer.running_mean.numpy(), "running_var": layer.running_var.numpy()}


def fail(out):
    """Rank 1 raises after the job started; rank 0 waits in a collective that never completes."""
    if parallel.rank() == 1:
        raise RuntimeError("rank 1 lost its data")
    parallel.barrier()
    return {}


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    anp.set_backend("numpy")
    parallel.init()
    result = globals()[mode](out)
    np.savez(f"{out}/rank{parallel.rank()}.npz", **result)
