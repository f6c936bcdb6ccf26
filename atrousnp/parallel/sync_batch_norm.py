"""Synchronised batch norm: training statistics over every rank's share of the batch.

K ranks with B/K images each then normalise exactly as one process with B images would. This
is what lets data parallelism keep the paper's finding that batch norm needs a large batch
(Table 9: batch 4 loses 12.8 points of mIoU to batch 16), where a per-rank batch is small.

Forward: each rank's per-channel (mean, var, count) become the global ones through one
allreduce of the sums of x and x^2 (``global_statistics``). Backward: the batch-statistics
term of dx needs its two sums over every rank's batch too, since each x moved every rank's mean
and variance (``synchronised_backward``).
"""

import numpy as np

from ..functional.norm import (BatchNorm, batch_norm, check_batch_norm_inputs, through_residual,
                               update_running_statistics)
from ..nn import BatchNorm2d
from ..tensor import Tensor
from .mpi import allreduce_sum


class SyncBatchNorm(BatchNorm):
    """BatchNorm's forward; in training, a backward with the batch's sums taken over all ranks."""

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, residual, eps, relu, count):
        ctx.count = count
        return BatchNorm.forward(ctx, x, mean, var, weight, bias, residual, True, eps, relu)

    @staticmethod
    def backward(ctx, grad):
        be, (x, mean, var, weight, relu_out) = ctx.backend, ctx.saved
        grad, relu_out = through_residual(ctx, grad, relu_out)
        dx, dweight, dbias = synchronised_backward(be, grad, x, mean, var, weight, ctx.eps, relu_out, ctx.count)
        return dx, None, None, dweight, dbias, grad if ctx.has_residual else None


def sync_batch_norm(x: Tensor, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5, residual=None, relu=False) -> Tensor:
    """``functional.batch_norm`` for x: (N, C, H, W), with training statistics over all ranks."""
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps, residual, relu)
    be = check_batch_norm_inputs(x, running_mean, running_var, weight, bias, residual)
    local_mean, local_var = be.bn_stats(x.data)
    mean, var, count = global_statistics(be, local_mean, local_var, x.numel() // x.shape[1])
    mean, var = be.asarray(mean.astype(x.dtype)), be.asarray(var.astype(x.dtype))
    update_running_statistics(be, running_mean, running_var, mean, var, momentum, count, x)
    return SyncBatchNorm.apply(x, mean, var, weight, bias, residual, eps=eps, relu=relu, count=count)


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training statistics come from every rank (PyTorch's SyncBatchNorm)."""

    def forward(self, x, residual=None, relu=False):
        return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               training=self.training and not self.frozen, momentum=self.momentum, eps=self.eps,
                               residual=residual, relu=relu)


def convert_sync_batch_norm(module):
    """Every BatchNorm2d in ``module`` made a SyncBatchNorm2d, keeping its parameters, running
    statistics and settings; returns ``module`` (PyTorch's convert_sync_batchnorm)."""
    for layer in module.modules():
        if type(layer) is BatchNorm2d:
            layer.__class__ = SyncBatchNorm2d  # the same object: every reference to the layer stays valid
    return module


def global_statistics(be, mean, var, count):
    """The mean and biased variance over every rank's batch, from each rank's own (mean, var,
    count): the sums of x and of x^2 and the counts, added over ranks in one allreduce (float64)."""
    mean, var = be.to_host(mean).astype(np.float64), be.to_host(var).astype(np.float64)
    sums = allreduce_sum(np.concatenate([mean * count, (var + mean ** 2) * count, [count]]))
    c, total = len(mean), sums[-1]
    global_mean = sums[:c] / total
    global_var = np.maximum(sums[c:2 * c] / total - global_mean ** 2, 0)
    return global_mean, global_var, int(total)


def synchronised_backward(be, grad, x, mean, var, weight, eps, relu_out, count):
    """Training backward when the statistics came from all ranks' batches (``count`` values per channel).

    dx = weight * inv_std * (g - sum(g) / M - x_hat * sum(g * x_hat) / M) needs its two sums over
    every rank's batch: one allreduce of the local sums. dweight = sum(g * x_hat) and dbias =
    sum(g) stay this rank's own, for ``allreduce_gradients`` to average with the other
    parameters' gradients. Written as dx = weight * inv_std * g - a - (x - mean) * b with
    per-channel a and b."""
    dx_local, dweight, dbias = be.batch_norm_backward(grad, x, mean, var, weight, eps, False, relu_out)
    sums = allreduce_sum(np.concatenate([be.to_host(dbias), be.to_host(dweight)]).astype(np.float64))
    c = x.shape[1]
    inv_std = 1 / np.sqrt(be.to_host(var).astype(np.float64) + eps)
    scale = inv_std * (1.0 if weight is None else be.to_host(weight).astype(np.float64))
    a = scale * sums[:c] / count
    b = scale * inv_std * sums[c:] / count
    per_channel = lambda v: be.asarray(v.astype(x.dtype).reshape((1, c) + (1,) * (x.ndim - 2)))  # noqa: E731
    centred = be.zip("sub", x, per_channel(be.to_host(mean).astype(np.float64)))
    correction = be.zip("add", per_channel(a), be.zip("mul", centred, per_channel(b)))
    return be.zip("sub", dx_local, correction), dweight, dbias
