"""Softmax, log-softmax and the segmentation cross-entropy with an ignore label."""

import numpy as np

from ..tensor import Tensor, tensor
from .elementwise import astype, compare, exp, log, where
from .reduce import max as max_op
from .reduce import sum as sum_op


def log_softmax(x, dim=1):
    """log p = x - m - log(sum(exp(x - m))), m = max(x) along ``dim`` (a constant: the result
    does not depend on it, and subtracting it keeps exp from overflowing)."""
    shift = max_op(x, axis=dim, keepdims=True).detach()
    shifted = x - shift
    return shifted - log(sum_op(exp(shifted), axis=dim, keepdims=True))


def softmax(x, dim=1):
    return exp(log_softmax(x, dim))


def cross_entropy(logits, target, ignore_index=255, weight=None):
    """Mean of -log p[target] over the pixels whose label is not ``ignore_index``.

    logits: (N, C, H, W) (or (N, C)); target: integer (N, H, W) (or (N,)); weight: (C,)
    class weights, making the mean a weighted one: sum(w[t] * loss) / sum(w[t]).
    If every pixel is ignored the loss is 0 and every gradient is 0 (PyTorch returns nan).

    Labels are checked on the host: a NumPy target (what the data pipeline yields) before
    its one upload, a Tensor target by reading it back. After that everything stays on the
    backend, so on the GPU a training step with NumPy labels never waits for a download.
    """
    n, c = logits.shape[:2]
    expected = (n,) + tuple(logits.shape[2:])
    labels = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
    _check_labels(labels, expected, c, ignore_index, logits.shape)
    target = target if isinstance(target, Tensor) else tensor(labels)
    pixel_weights = _pixel_weights(target, c, ignore_index, weight, logits.dtype)
    total_weight = sum_op(pixel_weights)
    # With every pixel ignored the total is 0, and so is the sum: divide by 1 instead.
    total_weight = where(compare("eq", total_weight, 0), 1.0, total_weight)
    return -sum_op(log_softmax(logits, dim=1) * pixel_weights) / total_weight


def _pixel_weights(target, c, ignore_index, weight, dtype):
    """(N, C, ...) with w[k] where target[n, ...] == k and is not ignored, else 0 (w = 1 without
    weights): multiplying log p by it picks w[t] * log p[t] at every pixel."""
    class_shape = (1, c) + (1,) * (target.ndim - 1)
    per_pixel = target.reshape((target.shape[0], 1) + tuple(target.shape[1:]))
    pixel_weights = astype(compare("eq", per_pixel, np.arange(c).reshape(class_shape)), dtype)
    if weight is not None:
        class_weights = astype(weight.detach(), dtype) if isinstance(weight, Tensor) else np.asarray(weight, dtype)
        if tuple(class_weights.shape) != (c,):
            raise ValueError(f"cross_entropy: weight must have shape ({c},), one per class, "
                             f"got {tuple(class_weights.shape)}")
        pixel_weights = pixel_weights * class_weights.reshape(class_shape)
    if 0 <= ignore_index < c:  # otherwise an ignored pixel matches no class already
        pixel_weights = where(compare("eq", per_pixel, ignore_index), 0.0, pixel_weights)
    return pixel_weights


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
