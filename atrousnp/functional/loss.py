"""Softmax, log-softmax and the segmentation cross-entropy with an ignore label."""

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .elementwise import astype, exp, log
from .operands import check_floating, constant, torch_or_numpy
from .shape import reshape
from .reduce import max as max_op
from .reduce import sum as sum_op


def log_softmax(x: Tensor, dim: int = None, *, axis: int = None) -> Tensor:
    """log p = x - m - log(sum(exp(x - m))), m = max(x) along ``dim`` (NumPy's ``axis``; 1, the
    class axis of (N, C, ...), if neither is given). m is a constant: the result does not
    depend on it, and subtracting it keeps exp from overflowing."""
    dim = torch_or_numpy("log_softmax", dim, axis, ("dim", "axis"), default=1)
    check_floating("log_softmax", x=x)
    if x.numel() == 0:  # nothing to normalise (and no maximum to shift by): an empty result
        return x * 1.0
    shift = max_op(x, dim, keepdim=True).detach()
    shifted = x - shift
    return shifted - log(sum_op(exp(shifted), dim, keepdim=True))


def softmax(x: Tensor, dim: int = None, *, axis: int = None) -> Tensor:
    """exp(log_softmax(x)) along ``dim`` (or ``axis``; 1 if neither is given)."""
    return exp(log_softmax(x, dim, axis=axis))


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
        n, c, pixels = _batch_classes_pixels(logits)
        flat = be.reshape(be.contiguous(logits), (n, c, pixels))
        labels = be.reshape(target, (n, pixels))
        loss, lse, norm = be.softmax_cross_entropy(flat, labels, weight, ignore_index)
        ctx.save_for_backward(logits, labels, weight, lse, norm)
        ctx.ignore_index = ignore_index
        return loss

    @staticmethod
    def backward(ctx, grad):
        be, (logits, labels, weight, lse, norm) = ctx.backend, ctx.saved
        flat = be.reshape(be.contiguous(logits), _batch_classes_pixels(logits))
        dlogits = be.softmax_cross_entropy_backward(grad, flat, labels, weight, ctx.ignore_index, lse, norm)
        return be.reshape(dlogits, logits.shape), None, None


def _batch_classes_pixels(logits):
    """(N, C, pixels per image) of logits (N, C, ...): counted, not a reshape's -1, which an empty
    batch leaves undetermined."""
    return logits.shape[0], logits.shape[1], int(np.prod(logits.shape[2:], dtype=np.int64))


def check_loss_settings(op, reduction, label_smoothing):
    """Refuse a reduction other than mean, sum or none, or a label smoothing outside [0, 1]."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy(logits: Tensor, target, ignore_index: int = 255, weight=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """-log p[target] per pixel, reduced as PyTorch's cross_entropy, with p = softmax over axis 1.

    logits: (N, C, d1, ..., dk) (k >= 0: (N, C) too); target: integer labels (N, d1, ..., dk),
    or class probabilities of the logits' shape; weight: (C,) class weights.
    reduction: "mean" (the default) is sum(w[t] * loss) / sum(w[t]) over labels that are not
    ``ignore_index``, "sum" the numerator alone, "none" the per-pixel losses (0 where ignored).
    label_smoothing e mixes the target with the uniform distribution: (1 - e) * onehot + e / C.
    With probability targets, "mean" divides by the number of pixels and ``ignore_index`` does
    not apply, as in PyTorch.

    Differences from PyTorch: ``ignore_index`` defaults to 255, VOC's ignore label, where
    PyTorch's default is -100; and if every pixel is ignored, "mean" gives 0 with zero
    gradients where PyTorch gives nan.

    The default case (integer labels, "mean", no smoothing) is one fused primitive each way
    (``SoftmaxCrossEntropy``); the others are written on log_softmax, readably. Labels are
    checked on the host: a NumPy target (what the data pipeline yields) before its one upload,
    a Tensor target by reading it back. After that everything stays on the backend, so on the
    GPU a training step with NumPy labels never waits for a download.
    """
    check_floating("cross_entropy", logits=logits)
    check_loss_settings("cross_entropy", reduction, label_smoothing)
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy: logits must be (N, C, ...), got shape {logits.shape}")
    n, c = logits.shape[:2]
    weight = _class_weights(logits, weight, c)
    if _holds_probabilities(target):
        return _soft_target_cross_entropy(logits, target, weight, reduction, label_smoothing)
    labels = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
    _check_labels(labels, (n,) + tuple(logits.shape[2:]), c, ignore_index, logits.shape)
    if reduction == "mean" and label_smoothing == 0:
        target = target if isinstance(target, Tensor) else constant(logits, labels)
        return SoftmaxCrossEntropy.apply(logits, target, weight, ignore_index=ignore_index)
    return _label_cross_entropy(logits, labels, weight, ignore_index, reduction, label_smoothing)


def _label_cross_entropy(logits, labels, weight, ignore_index, reduction, label_smoothing):
    """The composed form for integer labels: -(1 - e) * w[t] log p[t] - e / C * sum_c w[c] log p[c]."""
    c = logits.shape[1]
    kept = labels != ignore_index
    onehot = (np.where(kept, labels, 0)[:, None] == np.arange(c).reshape((1, c) + (1,) * (labels.ndim - 1)))
    class_weights = np.ones(c) if weight is None else weight.numpy().astype(np.float64)
    picked = class_weights[np.where(kept, labels, 0)] * kept               # w[t], 0 where ignored
    log_p = log_softmax(logits, dim=1)
    losses = -sum_op(log_p * constant(logits, onehot, logits.dtype), axis=1) * constant(logits, picked, logits.dtype)
    if label_smoothing:
        smooth = -sum_op(_weighted(log_p, weight), axis=1) * constant(logits, kept, logits.dtype) / c
        losses = losses * (1 - label_smoothing) + smooth * label_smoothing
    if reduction == "none":
        return losses
    total = sum_op(losses)
    return total if reduction == "sum" else total / (float(picked.sum()) or 1.0)  # all ignored: total is 0


def _soft_target_cross_entropy(logits, target, weight, reduction, label_smoothing):
    """-sum_c w[c] * q[c] * log p[c] per pixel, q the (smoothed) target probabilities."""
    c = logits.shape[1]
    probabilities = target if isinstance(target, Tensor) else constant(logits, target, logits.dtype)
    if tuple(probabilities.shape) != tuple(logits.shape):
        raise ValueError(f"cross_entropy: probability targets must have the logits' shape {logits.shape}, "
                         f"got {probabilities.shape}")
    if label_smoothing:
        probabilities = probabilities * (1 - label_smoothing) + label_smoothing / c
    losses = -sum_op(_weighted(log_softmax(logits, dim=1), weight) * probabilities, axis=1)
    if reduction == "none":
        return losses
    total = sum_op(losses)
    return total if reduction == "sum" else total / max(losses.numel(), 1)


def _weighted(log_p, weight):
    """log_p: (N, C, ...) times each class's weight (unchanged without weights)."""
    if weight is None:
        return log_p
    return log_p * reshape(weight, (1, log_p.shape[1]) + (1,) * (log_p.ndim - 2))


def _holds_probabilities(target):
    """A floating-point target holds class probabilities (PyTorch's rule); integers are labels."""
    return np.dtype(target.dtype if isinstance(target, Tensor) else np.asarray(target).dtype).kind == "f"


def _class_weights(logits, weight, c):
    if weight is None:
        return None
    weight = astype(weight.detach(), logits.dtype) if isinstance(weight, Tensor) else \
        constant(logits, weight, logits.dtype)
    if tuple(weight.shape) != (c,):
        raise ValueError(f"cross_entropy: weight must have shape ({c},), one per class, got {tuple(weight.shape)}")
    return weight


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
