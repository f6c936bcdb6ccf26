"""Loop definitions, forward and backward, of batch norm, bilinear resize, pooling and cross-entropy."""

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


def batch_norm_train_backward(x, weight, grad, eps):
    """(dx, dweight, dbias) of ``batch_norm_train`` by its chain rule, value by value: the batch's
    mean and variance depend on every x of the channel, so each dx sums over all of them."""
    n, c, h, w = x.shape
    dx, dweight, dbias = np.empty_like(x), np.empty(c), np.empty(c)
    for ch in range(c):
        values = [(b, i, j) for b in range(n) for i in range(h) for j in range(w)]
        m = len(values)
        mean = sum(x[b, ch, i, j] for b, i, j in values) / m
        var = sum((x[b, ch, i, j] - mean) ** 2 for b, i, j in values) / m
        inv_std = 1 / math.sqrt(var + eps)
        x_hat = {v: (x[v[0], ch, v[1], v[2]] - mean) * inv_std for v in values}
        g = {v: grad[v[0], ch, v[1], v[2]] for v in values}
        dbias[ch] = sum(g.values())
        dweight[ch] = sum(g[v] * x_hat[v] for v in values)
        for v in values:  # d y_u / d x_v = weight * inv_std * ([u == v] - 1/m - x_hat_u * x_hat_v / m)
            dx[v[0], ch, v[1], v[2]] = weight[ch] * inv_std * sum(
                g[u] * ((u == v) - 1 / m - x_hat[u] * x_hat[v] / m) for u in values)
    return dx, dweight, dbias


def bilinear_taps(h, w, out_h, out_w, align_corners):
    """For each output pixel (oh, ow), the 4 input pixels around its source point and their
    weights (PyTorch's rules): [(oh, ow, [(row, col, weight), ...]), ...]."""

    def source(d, size_in, size_out):
        if align_corners:
            return d * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        return max((d + 0.5) * size_in / size_out - 0.5, 0.0)

    taps = []
    for oh in range(out_h):
        sy = source(oh, h, out_h)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ty = min(y0 + 1, h - 1), sy - y0
        for ow in range(out_w):
            sx = source(ow, w, out_w)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, tx = min(x0 + 1, w - 1), sx - x0
            taps.append((oh, ow, [(y0, x0, (1 - ty) * (1 - tx)), (y0, x1, (1 - ty) * tx),
                                  (y1, x0, ty * (1 - tx)), (y1, x1, ty * tx)]))
    return taps


def bilinear(x, out_h, out_w, align_corners):
    """Each output pixel mixes the 4 input pixels around its source point."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, out_h, out_w), x.dtype)
    for oh, ow, taps in bilinear_taps(h, w, out_h, out_w, align_corners):
        y[:, :, oh, ow] = sum(weight * x[:, :, row, col] for row, col, weight in taps)
    return y


def bilinear_backward(grad, h, w, align_corners):
    """dx for grad: (N, C, out_h, out_w): each output's gradient goes back to its 4 input pixels
    with the weights it read them with (the adjoint of ``bilinear``)."""
    n, c, out_h, out_w = grad.shape
    dx = np.zeros((n, c, h, w), grad.dtype)
    for oh, ow, taps in bilinear_taps(h, w, out_h, out_w, align_corners):
        for row, col, weight in taps:
            dx[:, :, row, col] += weight * grad[:, :, oh, ow]
    return dx


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """PyTorch's: floor (or ceil) of (size + 2p - k) / s, plus 1; no window may start in the right padding."""
    span = size + 2 * padding - kernel
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad=True, divisor_override=None):
    """For each output pixel (oh, ow): the input rows and columns its window covers, and the
    divisor an average over it takes: ``divisor_override``, else the window's size clipped to the
    padded input (the padding counted if ``count_include_pad``, never a ceil_mode overhang), or,
    with count_include_pad=False, the number of real input pixels in it."""
    out_h = pool_output_size(h, kernel, stride, padding, ceil_mode)
    out_w = pool_output_size(w, kernel, stride, padding, ceil_mode)
    windows = []
    for oh in range(out_h):
        for ow in range(out_w):
            r0, s0 = oh * stride - padding, ow * stride - padding
            rows = [r for r in range(r0, r0 + kernel) if 0 <= r < h]
            cols = [s for s in range(s0, s0 + kernel) if 0 <= s < w]
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = (min(r0 + kernel, h + padding) - r0) * (min(s0 + kernel, w + padding) - s0)
            else:
                divisor = len(rows) * len(cols)
            windows.append((oh, ow, rows, cols, divisor))
    return out_h, out_w, windows


def pool2d(x, kernel, stride, padding, ceil_mode=False, mode="max", count_include_pad=True, divisor_override=None):
    """Max or average pooling by PyTorch's definitions, window by window: (y, indices).

    Max: the largest input value in the window (the first one on ties); indices are
    row * W + column in the input plane. Average: the window's sum over its divisor (``pool_windows``)."""
    n, c, h, w = x.shape
    out_h, out_w, windows = pool_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad,
                                         divisor_override)
    y = np.zeros((n, c, out_h, out_w), x.dtype)
    indices = np.zeros((n, c, out_h, out_w), np.int64)
    for b in range(n):
        for ch in range(c):
            for oh, ow, rows, cols, divisor in windows:
                if mode == "max":
                    best = max((x[b, ch, r, s], -(r * w + s)) for r in rows for s in cols)
                    y[b, ch, oh, ow], indices[b, ch, oh, ow] = best[0], -best[1]
                else:
                    y[b, ch, oh, ow] = sum(x[b, ch, r, s] for r in rows for s in cols) / divisor
    return y, indices


def pool2d_backward(grad, x, kernel, stride, padding, ceil_mode=False, mode="max", count_include_pad=True,
                    divisor_override=None):
    """dx for grad: (N, C, out_h, out_w). Max: each window's gradient goes to the pixel it picked
    (the first largest); average: to every real pixel of the window, over the divisor."""
    n, c, h, w = x.shape
    _, _, windows = pool_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    indices = pool2d(x, kernel, stride, padding, ceil_mode, "max")[1]
    dx = np.zeros(x.shape, grad.dtype)
    for b in range(n):
        for ch in range(c):
            for oh, ow, rows, cols, divisor in windows:
                if mode == "max":
                    picked = indices[b, ch, oh, ow]
                    dx[b, ch, picked // w, picked % w] += grad[b, ch, oh, ow]
                else:
                    for r in rows:
                        for s in cols:
                            dx[b, ch, r, s] += grad[b, ch, oh, ow] / divisor
    return dx


def cross_entropy(logits, target, ignore_index=255, weight=None, reduction="mean", label_smoothing=0.0):
    """PyTorch's cross_entropy pixel by pixel, logits (N, C, ...): integer labels or probabilities;
    a mean over no labelled pixel is 0 (PyTorch's is nan)."""
    c = logits.shape[1]
    scores = np.moveaxis(logits, 1, -1).reshape(-1, c)
    weight = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    probabilities = target.dtype.kind == "f"
    targets = np.moveaxis(target, 1, -1).reshape(-1, c) if probabilities else target.reshape(-1)
    losses, weight_total = [], 0.0
    for p, row in enumerate(scores):
        top = max(row)
        log_p = [s - top - math.log(sum(math.exp(v - top) for v in row)) for s in row]
        if probabilities:
            q = [t * (1 - label_smoothing) + label_smoothing / c for t in targets[p]]
            losses.append(-sum(weight[k] * q[k] * log_p[k] for k in range(c)))
            continue
        label = targets[p]
        if label == ignore_index:
            losses.append(0.0)
            continue
        smooth = -sum(weight[k] * log_p[k] for k in range(c)) / c
        losses.append((1 - label_smoothing) * -weight[label] * log_p[label] + label_smoothing * smooth)
        weight_total += weight[label]
    out_shape = (logits.shape[0],) + logits.shape[2:]
    if reduction == "none":
        return np.array(losses).reshape(out_shape)
    if reduction == "sum":
        return sum(losses)
    count = len(losses) if probabilities else weight_total
    return sum(losses) / count if count else 0.0


def cross_entropy_backward(logits, target, ignore_index=255, weight=None):
    """d(mean loss)/d logits for integer labels, pixel by pixel: w_t * (softmax - onehot(t)) / sum(w_t)
    over the pixels that are not ignored; 0 at ignored ones (and everywhere if all are)."""
    c = logits.shape[1]
    scores = np.moveaxis(logits, 1, -1).reshape(-1, c)
    weight = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    labels = target.reshape(-1)
    dscores = np.zeros_like(scores)
    total = sum(weight[t] for t in labels if t != ignore_index)
    for p, (row, label) in enumerate(zip(scores, labels)):
        if label == ignore_index:
            continue
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        for k in range(c):
            dscores[p, k] = weight[label] * (exps[k] / sum(exps) - (k == label)) / total
    moved = dscores.reshape((logits.shape[0],) + logits.shape[2:] + (c,))
    return np.moveaxis(moved, -1, 1)
