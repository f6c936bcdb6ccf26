"""Batch normalisation over (N, H, W) for each channel of x: (N, C, H, W).

    x_hat = (x - mean) / sqrt(var + eps),    y = weight * x_hat + bias

Training uses the batch's statistics (biased variance) and updates the running ones in
place, with momentum m:  running = (1 - m) * running + m * batch  (unbiased variance, as
PyTorch). Evaluation uses the running statistics. With M = N*H*W values per channel:

    dbias   = sum(dy)
    dweight = sum(dy * x_hat)
    dx      = weight / sqrt(var + eps) / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat))   training
    dx      = weight / sqrt(var + eps) * dy                                                  evaluation

A ResNet follows almost every batch norm with a ReLU, and ends each unit with
``relu(bn(x) + shortcut)``. ``batch_norm(..., residual=shortcut, relu=True)`` does all of it in
one op: one pass over the data instead of three, and one array kept for backward (the output,
whose sign is ReLU's mask) instead of three. Backward recomputes x_hat from x, which the graph
keeps anyway as the op's input, rather than saving an x_hat of its own.
"""

import numpy as np

from ..autograd import Function, backend_of
from ..tensor import Tensor
from .operands import check_floating, check_not_empty
from .shape import reshape


class BatchNorm(Function):

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, residual, training, eps, relu, allreduce=None, count=None):
        out = ctx.backend.batch_norm_forward(x, mean, var, weight, bias, eps, residual, relu)
        ctx.save_for_backward(x, mean, var, weight, out if relu else None)
        ctx.training, ctx.eps, ctx.has_residual = training, eps, residual is not None
        ctx.allreduce, ctx.count = allreduce, count
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (x, mean, var, weight, out) = ctx.backend, ctx.saved
        if ctx.has_residual:  # the residual's gradient is the ReLU-masked one: make it once
            grad = grad if out is None else be.relu_backward(grad, out)
            out = None
        if ctx.allreduce is None:
            dx, dweight, dbias = be.batch_norm_backward(grad, x, mean, var, weight, ctx.eps, ctx.training, out)
        else:
            dx, dweight, dbias = _synchronised_backward(be, grad, x, mean, var, weight, ctx.eps, out,
                                                        ctx.allreduce, ctx.count)
        return dx, None, None, dweight, dbias, grad if ctx.has_residual else None


def _global_statistics(be, mean, var, count, allreduce):
    """The mean and biased variance over every rank's batch, from each rank's own (mean, var, count):
    the sums of x and of x^2 and the counts, added over ranks in one allreduce (in float64)."""
    mean, var = be.to_host(mean).astype(np.float64), be.to_host(var).astype(np.float64)
    sums = allreduce(np.concatenate([mean * count, (var + mean ** 2) * count, [count]]))
    c, total = len(mean), sums[-1]
    global_mean = sums[:c] / total
    global_var = np.maximum(sums[c:2 * c] / total - global_mean ** 2, 0)
    return global_mean, global_var, int(total)


def _synchronised_backward(be, grad, x, mean, var, weight, eps, relu_out, allreduce, count):
    """Training backward when the statistics came from all ranks' batches (``count`` values per channel).

    dx = weight * inv_std * (g - sum(g) / M - x_hat * sum(g * x_hat) / M) needs its two sums over
    every rank's batch, since each x moved every rank's mean and variance: one allreduce of the
    local sums. dweight = sum(g * x_hat) and dbias = sum(g) stay this rank's own, for
    ``distributed.allreduce_gradients`` to average with the other parameters' gradients.
    Written as dx = weight * inv_std * g - a - (x - mean) * b with per-channel a and b."""
    dx_local, dweight, dbias = be.batch_norm_backward(grad, x, mean, var, weight, eps, False, relu_out)
    sums = allreduce(np.concatenate([be.to_host(dbias), be.to_host(dweight)]).astype(np.float64))
    c = x.shape[1]
    inv_std = 1 / np.sqrt(be.to_host(var).astype(np.float64) + eps)
    scale = inv_std * (1.0 if weight is None else be.to_host(weight).astype(np.float64))
    a = scale * sums[:c] / count
    b = scale * inv_std * sums[c:] / count
    per_channel = lambda v: be.asarray(v.astype(x.dtype).reshape((1, c) + (1,) * (x.ndim - 2)))  # noqa: E731
    centred = be.zip("sub", x, per_channel(be.to_host(mean).astype(np.float64)))
    correction = be.zip("add", per_channel(a), be.zip("mul", centred, per_channel(b)))
    return be.zip("sub", dx_local, correction), dweight, dbias


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
               residual: Tensor | None = None, relu: bool = False, allreduce=None) -> Tensor:
    """x: (N, C, H, W), or (N, C) and (N, C, L) as PyTorch's batch_norm takes them (run as
    (N, C, 1, 1) and (N, C, L, 1)); running_mean, running_var, weight, bias: (C,) Tensors or None.

    In training, the running statistics (if given) are updated in place, outside the graph.
    ``residual`` (a Tensor of x's shape) is added after the affine step and ``relu=True``
    applies max(., 0) last: ``relu(batch_norm(x) + residual)`` fused into one op. These two
    arguments are atrousnp's; PyTorch's batch_norm has neither (its compilers fuse the same chain).

    ``allreduce`` (a function summing a host array over processes, as
    ``distributed.allreduce_sum``) makes training use the statistics of every process's batch
    together, and backward the matching sums: synchronised batch norm (PyTorch's SyncBatchNorm).
    """
    if x.ndim in (2, 3):
        as_4d = tuple(x.shape) + (1,) * (4 - x.ndim)
        y = batch_norm(reshape(x, as_4d), running_mean, running_var, weight, bias, training, momentum, eps,
                       None if residual is None else reshape(residual, as_4d), relu, allreduce)
        return reshape(y, x.shape)
    if x.ndim != 4:
        raise ValueError(f"batch_norm: x must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for x of shape {x.shape}, got {t.shape}")
    if residual is not None and tuple(residual.shape) != tuple(x.shape):
        raise ValueError(f"batch_norm: residual must have x's shape {x.shape}, got {residual.shape}")
    check_not_empty("batch_norm", x)
    check_floating("batch_norm", x=x, weight=weight, bias=bias, running_mean=running_mean,
                   running_var=running_var, residual=residual)
    be = backend_of("batch_norm", x)
    count = None
    if training:
        m = x.numel() // c
        mean, var = be.bn_stats(x.data)
        if allreduce is not None:
            mean, var, m = _global_statistics(be, mean, var, m, allreduce)
            mean, var, count = be.asarray(mean.astype(x.dtype)), be.asarray(var.astype(x.dtype)), m
        if m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        if running_mean is not None:
            running_mean.data, running_var.data = be.update_running_stats(
                running_mean.data, running_var.data, mean, var, momentum, m)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation needs running_mean and running_var")
        mean, var = running_mean.data, running_var.data
    return BatchNorm.apply(x, mean, var, weight, bias, residual, training=training, eps=eps, relu=relu,
                           allreduce=allreduce if training else None, count=count)

