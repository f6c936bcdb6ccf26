"""Softmax, log-softmax and the segmentation cross-entropy with an ignore label."""

import numpy as np

from ..backends import get_backend
from ..tensor import Tensor
from .elementwise import exp, log
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
    """
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    n, c = logits.shape[:2]
    expected = (n,) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"cross_entropy: target must have shape {expected} for logits of shape "
                         f"{logits.shape}, got {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"cross_entropy: target must hold integer labels, got dtype {target.dtype}")
    labels = target.numpy()
    valid = labels != ignore_index
    if np.any((labels[valid] < 0) | (labels[valid] >= c)):
        bad = labels[valid][(labels[valid] < 0) | (labels[valid] >= c)][0]
        raise ValueError(f"cross_entropy: label {bad} is outside [0, {c}) and is not ignore_index={ignore_index}")
    # One-hot of the valid labels, times the class weight: picks w[t] * log p[t] per pixel.
    onehot = (np.where(valid, labels, -1)[:, None] == np.arange(c).reshape((1, c) + (1,) * (labels.ndim - 1)))
    pixel_weights = onehot.astype(logits.dtype)
    if weight is not None:
        class_weights = weight.numpy() if isinstance(weight, Tensor) else np.asarray(weight)
        pixel_weights = pixel_weights * class_weights.reshape((1, c) + (1,) * (labels.ndim - 1)).astype(logits.dtype)
    total_weight = float(pixel_weights.sum())
    picked = log_softmax(logits, dim=1) * get_backend().asarray(pixel_weights)
    return -sum_op(picked) * (1.0 / total_weight if total_weight > 0 else 0.0)
