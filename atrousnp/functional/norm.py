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

from ..autograd import Function, backend_of
from ..tensor import Tensor
from .operands import check_floating, check_not_empty
from .shape import reshape


class BatchNorm(Function):

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, residual, training, eps, relu):
        out = ctx.backend.batch_norm_forward(x, mean, var, weight, bias, eps, residual, relu)
        ctx.save_for_backward(x, mean, var, weight, out if relu else None)
        ctx.training, ctx.eps, ctx.has_residual = training, eps, residual is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (x, mean, var, weight, relu_out) = ctx.backend, ctx.saved
        grad, relu_out = through_residual(ctx, grad, relu_out)
        dx, dweight, dbias = be.batch_norm_backward(grad, x, mean, var, weight, ctx.eps, ctx.training, relu_out)
        return dx, None, None, dweight, dbias, grad if ctx.has_residual else None


def through_residual(ctx, grad, relu_out):
    """(grad, relu_out) for the normalisation's backward. With a residual, ReLU's mask is applied
    here, once: the masked gradient is then the residual's gradient too, and the normalisation's
    backward has no ReLU left to undo (relu_out None)."""
    if not ctx.has_residual or relu_out is None:
        return grad, relu_out
    return ctx.backend.relu_backward(grad, relu_out), None


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
               residual: Tensor | None = None, relu: bool = False) -> Tensor:
    """x: (N, C, H, W), or (N, C) and (N, C, L) as PyTorch's batch_norm takes them (run as
    (N, C, 1, 1) and (N, C, L, 1)); running_mean, running_var, weight, bias: (C,) Tensors or None.

    In training, the running statistics (if given) are updated in place, outside the graph.
    ``residual`` (a Tensor of x's shape) is added after the affine step and ``relu=True``
    applies max(., 0) last: ``relu(batch_norm(x) + residual)`` fused into one op. These two
    arguments are atrousnp's; PyTorch's batch_norm has neither (its compilers fuse the same chain).
    """
    if x.ndim in (2, 3):
        as_4d = tuple(x.shape) + (1,) * (4 - x.ndim)
        y = batch_norm(reshape(x, as_4d), running_mean, running_var, weight, bias, training, momentum, eps,
                       None if residual is None else reshape(residual, as_4d), relu)
        return reshape(y, x.shape)
    be = check_batch_norm_inputs(x, running_mean, running_var, weight, bias, residual)
    if training:
        mean, var = be.bn_stats(x.data)
        update_running_statistics(be, running_mean, running_var, mean, var, momentum, x.numel() // x.shape[1], x)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation needs running_mean and running_var")
        mean, var = running_mean.data, running_var.data
    return BatchNorm.apply(x, mean, var, weight, bias, residual, training=training, eps=eps, relu=relu)


def check_batch_norm_inputs(x, running_mean, running_var, weight, bias, residual):
    """Refuse inputs of the wrong shape or dtype, naming them; returns x's backend."""
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
    return backend_of("batch_norm", x)


def update_running_statistics(be, running_mean, running_var, mean, var, momentum, count, x):
    """Move the running statistics (if any) towards a batch's ``count`` values per channel."""
    if count <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                         f"got input of shape {x.shape}")
    if running_mean is not None:
        running_mean.data, running_var.data = be.update_running_stats(
            running_mean.data, running_var.data, mean, var, momentum, count)
