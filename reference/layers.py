"""Loop definitions of batch norm, bilinear resize, max pooling and cross-entropy."""

import math

import numpy as np


def batch_norm_train(x, weight, bias, eps):
    """Normalise each channel with its own mean and biased variance over (N, H, W)."""
    n, c, h, w = x.shape
    y = np.empty_like(x)
    for ch in range(c):
        values = [x[b, ch, i, j] for b in range(n) for i in range(h) for j in range(w)]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        for b in range(n):
            for i in range(h):
                for j in range(w):
                    y[b, ch, i, j] = weight[ch] * (x[b, ch, i, j] - mean) / math.sqrt(var + eps) + bias[ch]
    return y


def bilinear(x, out_h, out_w, align_corners):
    """Each output pixel mixes the 4 input pixels around its source point (PyTorch's rules)."""
    n, c, h, w = x.shape

    def source(d, size_in, size_out):
        if align_corners:
            return d * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        return max((d + 0.5) * size_in / size_out - 0.5, 0.0)

    y = np.zeros((n, c, out_h, out_w), x.dtype)
    for oh in range(out_h):
        sy = source(oh, h, out_h)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ty = min(y0 + 1, h - 1), sy - y0
        for ow in range(out_w):
            sx = source(ow, w, out_w)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, tx = min(x0 + 1, w - 1), sx - x0
            y[:, :, oh, ow] = ((1 - ty) * (1 - tx) * x[:, :, y0, x0] + (1 - ty) * tx * x[:, :, y0, x1]
                               + ty * (1 - tx) * x[:, :, y1, x0] + ty * tx * x[:, :, y1, x1])
    return y


def max_pool2d(x, kernel, stride, padding):
    """The largest value in each window; padding never wins."""
    n, c, h, w = x.shape
    out_h = (h + 2 * padding - kernel) // stride + 1
    out_w = (w + 2 * padding - kernel) // stride + 1
    y = np.empty((n, c, out_h, out_w), x.dtype)
    for b in range(n):
        for ch in range(c):
            for oh in range(out_h):
                for ow in range(out_w):
                    best = -math.inf
                    for i in range(kernel):
                        for j in range(kernel):
                            r, s = oh * stride - padding + i, ow * stride - padding + j
                            if 0 <= r < h and 0 <= s < w:
                                best = max(best, x[b, ch, r, s])
                    y[b, ch, oh, ow] = best
    return y


def cross_entropy(logits, target, ignore_index=255, weight=None):
    """Weighted mean over labelled pixels of -log softmax(logits)[label]; 0 if none is labelled."""
    n, c, h, w = logits.shape
    total, total_weight = 0.0, 0.0
    for b in range(n):
        for i in range(h):
            for j in range(w):
                label = target[b, i, j]
                if label == ignore_index:
                    continue
                scores = logits[b, :, i, j]
                top = max(scores)
                log_sum = top + math.log(sum(math.exp(s - top) for s in scores))
                pixel_weight = 1.0 if weight is None else weight[label]
                total += pixel_weight * (log_sum - scores[label])
                total_weight += pixel_weight
    return total / total_weight if total_weight > 0 else 0.0
