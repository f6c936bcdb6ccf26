"""The primitive set every backend implements.

A backend owns one array type (NumPy arrays on the CPU backends) and the small
set of operations below on it. Every differentiable op in ``atrousnp.functional``
is written once, on these primitives only, so a new backend is one new file.

Ops named by string, so that a backend can compile each one once:

* ``map(op, a)``: op in ``UNARY_OPS``
* ``zip(op, a, b)``: op in ``BINARY_OPS``, with NumPy broadcasting
* ``reduce(op, a, axes, keepdims)``: op in ``REDUCE_OPS``
"""

import numpy as np

UNARY_OPS = ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "step", "abs")
BINARY_OPS = ("add", "sub", "mul", "div", "pow", "maximum", "minimum",
              "eq", "gt", "ge", "lt", "le")
REDUCE_OPS = ("sum", "max", "argmax")


class Backend:
    """Abstract backend. Subclasses implement every method; shapes are tuples of ints."""

    name = "abstract"

    # -- creation and transfer -------------------------------------------------
    def empty(self, shape, dtype):
        raise NotImplementedError

    def zeros(self, shape, dtype):
        raise NotImplementedError

    def full(self, shape, value, dtype):
        raise NotImplementedError

    def asarray(self, host_array, dtype=None):
        """A backend array holding ``host_array`` (a NumPy array or one of ours)."""
        raise NotImplementedError

    def to_host(self, a):
        """A NumPy array with the contents of ``a`` (a copy where memory differs)."""
        raise NotImplementedError

    def owns(self, a):
        """True when ``a`` is an array this backend can compute on."""
        raise NotImplementedError

    def astype(self, a, dtype):
        raise NotImplementedError

    # -- elementwise -----------------------------------------------------------
    def map(self, op, a):
        """Apply the unary ``op`` elementwise. ``step`` is 1 where a > 0, else 0."""
        raise NotImplementedError

    def zip(self, op, a, b):
        """Apply the binary ``op`` elementwise with NumPy broadcasting.

        Comparisons (eq, gt, ge, lt, le) return booleans."""
        raise NotImplementedError

    def where(self, cond, a, b):
        raise NotImplementedError

    # -- reduction -------------------------------------------------------------
    def reduce(self, op, a, axes, keepdims):
        """``sum`` or ``max`` over ``axes`` (a tuple); ``argmax`` over one axis."""
        raise NotImplementedError

    # -- linear algebra and layout ---------------------------------------------
    def matmul(self, a, b):
        """Batched matrix product with NumPy's broadcasting of the leading axes."""
        raise NotImplementedError

    def reshape(self, a, shape):
        raise NotImplementedError

    def transpose(self, a, axes):
        raise NotImplementedError

    def broadcast_to(self, a, shape):
        """A read-only view of ``a`` broadcast to ``shape``."""
        raise NotImplementedError

    def contiguous(self, a):
        """``a`` laid out in C order: ``a`` itself when it already is, else a copy."""
        raise NotImplementedError

    def getitem(self, a, index):
        """``a[index]`` with NumPy's basic and advanced indexing."""
        raise NotImplementedError

    def index_add(self, shape, index, values):
        """Zeros of ``shape`` with ``values`` added at ``index``; repeated indices accumulate."""
        raise NotImplementedError

    def pad(self, a, widths, value):
        """Constant padding; ``widths`` holds a (before, after) pair per axis."""
        raise NotImplementedError

    def concat(self, arrays, axis):
        raise NotImplementedError

    # -- convolution -----------------------------------------------------------
    def im2col(self, x, kernel, stride, padding, dilation):
        """Unfold the dilated patches of ``x`` into columns.

        x: (N, C, H, W); kernel, stride, padding, dilation: (h, w) pairs.
        Returns cols: (C*kh*kw, N*out_h*out_w), rows ordered (c, i, j), columns (n, oh, ow):
        ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
        """
        raise NotImplementedError

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        """The adjoint of ``im2col``: scatter-add every column entry back to its pixel.

        cols: (C*kh*kw, N*out_h*out_w); returns (N, C, H, W) of ``x_shape``.
        """
        raise NotImplementedError

    # -- normalisation ---------------------------------------------------------
    def bn_stats(self, x):
        """Per-channel mean and biased variance of x: (N, C, H, W) over (N, H, W); two (C,) arrays."""
        raise NotImplementedError

    # -- fused hot-path primitives ---------------------------------------------
    # Each is written here on the primitives above: that is its definition, the NumPy
    # backend's implementation and the oracle of the tests. A backend overrides one where a
    # single pass (or a single kernel launch) beats the chain of calls, each of which
    # allocates its result and, on a GPU, costs a launch.

    def channel_affine(self, x, scale, shift, residual=None, relu=False):
        """y = x * scale[c] + shift[c] (+ residual), then max(y, 0) if ``relu``.

        x, residual: (N, C, ...); scale, shift: (C,). Batch norm's forward is this with
        scale = weight / sqrt(var + eps) and shift = bias - mean * scale; the residual and the
        ReLU are a ResNet unit's ``relu(bn(conv(x)) + shortcut)``.
        """
        y = self.zip("add", self.zip("mul", x, _per_channel(self, scale, x.ndim)), _per_channel(self, shift, x.ndim))
        if residual is not None:
            y = self.zip("add", y, residual)
        return self.map("relu", y) if relu else y

    def relu_backward(self, grad, out):
        """grad where out > 0, else 0: ReLU's backward, read from its output (out > 0 iff in > 0)."""
        return self.zip("mul", grad, self.map("step", out))

    def batch_norm_backward(self, grad, x, mean, inv_std, weight, training):
        """(dx, dweight, dbias) of y = weight * x_hat + bias, x_hat = (x - mean) * inv_std.

        grad, x: (N, C, ...); mean, inv_std, weight (or None): (C,). With M values per channel,
        dbias = sum(g), dweight = sum(g * x_hat) and, when the statistics came from this batch,
        dx = weight * inv_std * (g - sum(g) / M - x_hat * sum(g * x_hat) / M); else dx = weight * inv_std * g.
        """
        axes = (0,) + tuple(range(2, x.ndim))
        per_channel = lambda v: _per_channel(self, v, x.ndim)  # noqa: E731
        x_hat = self.zip("mul", self.zip("sub", x, per_channel(mean)), per_channel(inv_std))
        dbias = self.reduce("sum", grad, axes, keepdims=False)
        dweight = self.reduce("sum", self.zip("mul", grad, x_hat), axes, keepdims=False)
        scale = inv_std if weight is None else self.zip("mul", inv_std, weight)
        if training:
            m = self.full((), x.size // x.shape[1], x.dtype)
            centred = self.zip("sub", grad, per_channel(self.zip("div", dbias, m)))
            grad = self.zip("sub", centred, self.zip("mul", x_hat, per_channel(self.zip("div", dweight, m))))
        return self.zip("mul", grad, per_channel(scale)), dweight, dbias

    def softmax_cross_entropy(self, logits, target, weight, ignore_index):
        """Cross-entropy of softmax(logits) along axis 1 against integer labels.

        logits: (N, C, L); target: (N, L) integers; weight: (C,) class weights or None. Pixel p
        with label t != ignore_index has weight w_p = weight[t] (1 without weights) and loss
        w_p * (lse_p - logits[t, p]), lse_p = log(sum_c exp(logits[c, p])). Returns
        (loss, lse, norm): loss = sum of those / norm, a 0-d array; lse: (N, 1, L) for the
        backward; norm = sum(w_p), or 1 when every pixel is ignored (the loss is then 0).
        """
        picked = self._target_weights(target, logits.shape[1], weight, ignore_index, logits.dtype)  # (N, C, L)
        shift = self.reduce("max", logits, (1,), keepdims=True)
        sum_exp = self.reduce("sum", self.map("exp", self.zip("sub", logits, shift)), (1,), keepdims=True)
        lse = self.zip("add", self.map("log", sum_exp), shift)
        total = self.reduce("sum", self.zip("mul", picked, self.zip("sub", lse, logits)), (0, 1, 2), keepdims=False)
        weight_sum = self.reduce("sum", picked, (0, 1, 2), keepdims=False)
        zero, one = self.full((), 0, logits.dtype), self.full((), 1, logits.dtype)
        norm = self.where(self.zip("eq", weight_sum, zero), one, weight_sum)
        return self.zip("div", total, norm), lse, norm

    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        """d loss / d logits = grad / norm * w_p * (softmax(logits)_p - onehot(t_p)), 0 where ignored.

        grad: the 0-d gradient of the loss; the rest as ``softmax_cross_entropy`` took and returned them.
        """
        picked = self._target_weights(target, logits.shape[1], weight, ignore_index, logits.dtype)
        pixel_weight = self.reduce("sum", picked, (1,), keepdims=True)                   # w_p: (N, 1, L)
        softmax = self.map("exp", self.zip("sub", logits, lse))
        dlogits = self.zip("sub", self.zip("mul", softmax, pixel_weight), picked)
        return self.zip("mul", dlogits, self.zip("div", grad, norm))

    def _target_weights(self, target, c, weight, ignore_index, dtype):
        """(N, C, L): w[t] at class t = target[n, l] (1 without class weights), 0 elsewhere and
        at ignored pixels. A helper of the two defaults above, not a primitive."""
        classes = self.asarray(np.arange(c).reshape(1, c, 1))
        labels = self.reshape(target, (target.shape[0], 1, target.shape[1]))
        picked = self.astype(self.zip("eq", labels, classes), dtype)
        if weight is not None:
            picked = self.zip("mul", picked, self.reshape(weight, (1, c, 1)))
        if 0 <= ignore_index < c:  # otherwise an ignored pixel matches no class already
            ignored = self.zip("eq", labels, self.full((), ignore_index, target.dtype))
            picked = self.where(ignored, self.full((), 0, dtype), picked)
        return picked

    def sgd_step(self, params, grads, buffers, lr, momentum, weight_decay, dampening, nesterov):
        """One SGD step (PyTorch's rule) over every parameter; returns (params, buffers).

        For each parameter p with gradient g and momentum buffer b (None before the first step):
            g = g + weight_decay * p
            b = g on the first step, else momentum * b + (1 - dampening) * g     (momentum > 0)
            g = g + momentum * b if nesterov else b                              (momentum > 0)
            p = p - lr * g
        This default makes new arrays (a first buffer is the gradient array itself, which nothing
        writes to); a backend may instead update ``params`` and ``buffers`` in place and return
        them, copying each first buffer so that the gradient is left alone.
        """
        new_params, new_buffers = [], []
        scaled = lambda a, factor: self.zip("mul", a, self.full((), factor, a.dtype))  # noqa: E731
        for p, g, b in zip(params, grads, buffers):
            if weight_decay:
                g = self.zip("add", g, scaled(p, weight_decay))
            if momentum:
                b = g if b is None else self.zip("add", scaled(b, momentum), scaled(g, 1 - dampening))
                g = self.zip("add", g, scaled(b, momentum)) if nesterov else b
            new_params.append(self.zip("sub", p, scaled(g, lr)))
            new_buffers.append(b)
        return new_params, new_buffers


def conv_out_size(size, kernel, stride, padding, dilation):
    """Output length of a dilated convolution along one axis.

    out = floor((size + 2p - d(k-1) - 1) / s) + 1: the dilated kernel spans d(k-1)+1 pixels.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_out_hw(x_shape, kernel, stride, padding, dilation):
    """(out_h, out_w) for x: (N, C, H, W) and (h, w) pairs of kernel, stride, padding, dilation."""
    return tuple(conv_out_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))


def _per_channel(backend, v, ndim):
    """A (C,) vector as (1, C, 1, ...), to broadcast over (N, C, ...) of ``ndim`` axes."""
    return backend.reshape(v, (1, -1) + (1,) * (ndim - 2))
