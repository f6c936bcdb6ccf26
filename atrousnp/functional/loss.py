"""Softmax, log-softmax and the segmentation cross-entropy with an ignore label."""

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .elementwise import astype, exp, log
from .operands import check_floating, constant
from .reduce import max as max_op
from .reduce import sum as sum_op


def log_softmax(x: Tensor, dim: int = 1) -> Tensor:
    """log p = x - m - log(sum(exp(x - m))), m = max(x) along ``dim`` (a constant: the result
    does not depend on it, and subtracting it keeps exp from overflowing)."""
    check_floating("log_softmax", x=x)
    shift = max_op(x, axis=dim, keepdims=True).detach()
    shifted = x - shift
    return shifted - log(sum_op(exp(shifted), axis=dim, keepdims=True))


def softmax(x: Tensor, dim: int = 1) -> Tensor:
    return exp(log_softmax(x, dim))


class SoftmaxCrossEntropy(Function):
    """loss = sum_p w_p * (lse_p - logits[t_p, p]) / sum_p w_p over pixels p not ignored;
    dlogits = g / sum_p w_p * w_p * (softmax_p - onehot(t_p)).

    One fused primitive each way: forward keeps only the per-pixel log-sum-exp (N, 1, L) for
    backward, where the composed form kept a log-softmax, a one-hot and their product, each
    the size of the logits.
    """

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index):
        be = ctx.backend
        n, c = logits.shape[:2]
        flat = be.reshape(be.contiguous(logits), (n, c, -1))
        labels = be.reshape(target, (n, -1))
        loss, lse, norm = be.softmax_cross_entropy(flat, labels, weight, ignore_index)
        ctx.save_for_backward(logits, labels, weight, lse, norm)
        ctx.ignore_index = ignore_index
        return loss

    @staticmethod
    def backward(ctx, grad):
        be, (logits, labels, weight, lse, norm) = ctx.backend, ctx.saved
        n, c = logits.shape[:2]
        flat = be.reshape(be.contiguous(logits), (n, c, -1))
        dlogits = be.softmax_cross_entropy_backward(grad, flat, labels, weight, ctx.ignore_index, lse, norm)
        return be.reshape(dlogits, logits.shape), None, None


def cross_entropy(logits: Tensor, target, ignore_index: int = 255, weight=None) -> Tensor:
    """Mean of -log p[target] over the pixels whose label is not ``ignore_index``.

    logits: (N, C, H, W) (or (N, C)); target: integer (N, H, W) (or (N,)); weight: (C,)
    class weights, making the mean a weighted one: sum(w[t] * loss) / sum(w[t]).
    If every pixel is ignored the loss is 0 and every gradient is 0 (PyTorch returns nan).

    Labels are checked on the host: a NumPy target (what the data pipeline yields) before
    its one upload, a Tensor target by reading it back. After that everything stays on the
    backend, so on the GPU a training step with NumPy labels never waits for a download.
    """
    check_floating("cross_entropy", logits=logits)
    n, c = logits.shape[:2]
    expected = (n,) + tuple(logits.shape[2:])
    labels = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
    _check_labels(labels, expected, c, ignore_index, logits.shape)
    target = target if isinstance(target, Tensor) else constant(logits, labels)
    if weight is not None:
        weight = astype(weight.detach(), logits.dtype) if isinstance(weight, Tensor) else \
            constant(logits, weight, logits.dtype)
        if tuple(weight.shape) != (c,):
            raise ValueError(f"cross_entropy: weight must have shape ({c},), one per class, "
                             f"got {tuple(weight.shape)}")
    return SoftmaxCrossEntropy.apply(logits, target, weight, ignore_index=ignore_index)


def _check_labels(labels, expected, c, ignore_index, logits_shape):
    """ValueError/TypeError naming the shape, dtype or first label that does not fit."""
    if tuple(labels.shape) != expected:
        raise ValueError(f"cross_entropy: target must have shape {expected} for logits of shape "
                         f"{logits_shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"cross_entropy: target must hold integer labels, got dtype {labels.dtype}")
    valid = labels[labels != ignore_index]
    outside = valid[(valid < 0) | (valid >= c)]
    if outside.size:
        raise ValueError(f"cross_entropy: label {outside[0]} is outside [0, {c}) and is not ignore_index={ignore_index}")
