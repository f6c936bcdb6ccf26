"""Batch normalisation over (N, H, W) for each channel of x: (N, C, H, W).

    x_hat = (x - mean) / sqrt(var + eps),    y = weight * x_hat + bias

Training uses the batch's statistics (biased variance) and updates the running ones in
place, with momentum m:  running = (1 - m) * running + m * batch  (unbiased variance, as
PyTorch). Evaluation uses the running statistics. With M = N*H*W values per channel:

    dbias   = sum(dy)
    dweight = sum(dy * x_hat)
    dx      = weight / sqrt(var + eps) / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat))   training
    dx      = weight / sqrt(var + eps) * dy                                                  evaluation
"""


from ..autograd import Function
from .operands import scalar

_CHANNEL_AXES = (0, 2, 3)


def _per_channel(be, a, c):
    """A (C,) vector as (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return be.reshape(a, (1, c, 1, 1))


class BatchNorm(Function):

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, training, eps):
        be, c = ctx.backend, x.shape[1]
        inv_std = be.zip("div", scalar(be, 1, var.dtype), be.map("sqrt", be.zip("add", var, scalar(be, eps, var.dtype))))
        x_hat = be.zip("mul", be.zip("sub", x, _per_channel(be, mean, c)), _per_channel(be, inv_std, c))
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.training = training
        out = x_hat if weight is None else be.zip("mul", x_hat, _per_channel(be, weight, c))
        return out if bias is None else be.zip("add", out, _per_channel(be, bias, c))

    @staticmethod
    def backward(ctx, grad):
        be, (x_hat, inv_std, weight) = ctx.backend, ctx.saved
        c = x_hat.shape[1]
        sum_dy = be.reduce("sum", grad, _CHANNEL_AXES, keepdims=False)
        sum_dy_xhat = be.reduce("sum", be.zip("mul", grad, x_hat), _CHANNEL_AXES, keepdims=False)
        scale = inv_std if weight is None else be.zip("mul", inv_std, weight)
        if ctx.training:
            m = x_hat.size // c
            centred = be.zip("sub", be.zip("mul", grad, scalar(be, m, grad.dtype)), _per_channel(be, sum_dy, c))
            centred = be.zip("sub", centred, be.zip("mul", x_hat, _per_channel(be, sum_dy_xhat, c)))
            dx = be.zip("mul", centred, _per_channel(be, be.zip("div", scale, scalar(be, m, scale.dtype)), c))
        else:
            dx = be.zip("mul", grad, _per_channel(be, scale, c))
        return dx, None, None, sum_dy_xhat, sum_dy


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """x: (N, C, H, W); running_mean, running_var, weight, bias: (C,) Tensors or None.

    In training, the running statistics (if given) are updated in place, outside the graph.
    """
    if x.ndim != 4:
        raise ValueError(f"batch_norm: x must be (N, C, H, W), got shape {x.shape}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for x of shape {x.shape}, got {t.shape}")
    be = x._backend
    if training:
        m = x.size // c
        if m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        mean, var = be.bn_stats(x.data)
        if running_mean is not None:
            _update_running(be, running_mean, mean, momentum)
            _update_running(be, running_var, be.zip("mul", var, scalar(be, m / (m - 1), var.dtype)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation needs running_mean and running_var")
        mean, var = running_mean.data, running_var.data
    return BatchNorm.apply(x, mean, var, weight, bias, training=training, eps=eps)


def _update_running(be, running, batch_value, momentum):
    keep = be.zip("mul", running.data, scalar(be, 1 - momentum, running.dtype))
    running.data = be.zip("add", keep, be.astype(be.zip("mul", batch_value, scalar(be, momentum, batch_value.dtype)),
                                                  running.dtype))
