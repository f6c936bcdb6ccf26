"""The primitive set every backend implements.

A backend owns one array type (NumPy arrays on the CPU backends) and the small
set of operations below on it. Every differentiable op in ``atrousnp.functional``
is written once, on these primitives only, so a new backend is one new file.

Ops named by string, so that a backend can compile each one once:

* ``map(op, a)``: op in ``UNARY_OPS``
* ``zip(op, a, b)``: op in ``BINARY_OPS``, with NumPy broadcasting
* ``reduce(op, a, axes, keepdims)``: op in ``REDUCE_OPS``
"""

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

Array = Any               # a backend's own array type: numpy.ndarray, or a numba device array on cuda
Shape = tuple[int, ...]
Pair = tuple[int, int]    # (h, w)

UNARY_OPS = ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "step")
BINARY_OPS = ("add", "sub", "mul", "div", "pow", "eq", "ne", "gt", "ge", "lt", "le")
REDUCE_OPS = ("sum", "max", "argmax")

# Every primitive, by name: what a backend implements (or inherits from the defaults below) and
# all that the ops in atrousnp.functional may call. tests/test_design_rules.py holds every
# backend to this list, both ways.
PRIMITIVES = (
    "empty", "zeros", "full", "asarray", "copy_from_host", "to_host", "owns", "astype",  # creation, transfer
    "map", "zip", "where", "reduce",                                                  # elementwise, reduction
    "matmul", "reshape", "transpose", "broadcast_to", "contiguous", "getitem",        # linear algebra, layout
    "index_add", "pad", "concat",
    "im2col", "col2im", "bn_stats",                                                   # convolution, statistics
    "conv2d_forward", "conv2d_backward", "batch_norm_forward", "batch_norm_backward",  # fused, with defaults
    "relu_backward", "update_running_stats", "softmax_cross_entropy",
    "softmax_cross_entropy_backward", "sgd_step",
)


class Backend(ABC):
    """Abstract backend. Subclasses implement every abstract method (the small primitive set) and may
    override the fused ones, whose defaults are written on the others; shapes are tuples of ints."""

    name = "abstract"
    # The floating-point dtypes its kernels compute in: numba compiles no float16 arithmetic on the
    # CPU, and atrousnp's CUDA kernels use math functions that have no float16 form.
    float_dtypes = (np.dtype(np.float32), np.dtype(np.float64))

    # -- creation and transfer -------------------------------------------------
    @abstractmethod
    def empty(self, shape: Shape, dtype) -> Array:
        raise NotImplementedError

    @abstractmethod
    def zeros(self, shape: Shape, dtype) -> Array:
        raise NotImplementedError

    @abstractmethod
    def full(self, shape: Shape, value: float, dtype) -> Array:
        raise NotImplementedError

    @abstractmethod
    def asarray(self, host_array, dtype=None) -> Array:
        """A backend array holding ``host_array`` (a NumPy array or one of ours)."""
        raise NotImplementedError

    @abstractmethod
    def copy_from_host(self, target: Array, host_array) -> None:
        """Write ``host_array`` (a NumPy array or number of target's shape) into ``target``, in
        place (PyTorch's ``copy_``): whatever else reads target's memory sees the new values. A
        replayed CUDA graph reads parameters and a learning rate at the addresses it captured, so
        state that the host sets between steps (a checkpoint loaded, a rate scheduled) is copied
        in, never swapped for a new array."""
        raise NotImplementedError

    @abstractmethod
    def to_host(self, a: Array) -> np.ndarray:
        """A NumPy array with the contents of ``a`` (a copy where memory differs)."""
        raise NotImplementedError

    @abstractmethod
    def owns(self, a) -> bool:
        """True when ``a`` is an array this backend can compute on."""
        raise NotImplementedError

    @abstractmethod
    def astype(self, a: Array, dtype) -> Array:
        raise NotImplementedError

    # -- elementwise -----------------------------------------------------------
    @abstractmethod
    def map(self, op: str, a: Array) -> Array:
        """Apply the unary ``op`` elementwise. ``step`` is 1 where a > 0, else 0."""
        raise NotImplementedError

    @abstractmethod
    def zip(self, op: str, a: Array, b: Array) -> Array:
        """Apply the binary ``op`` elementwise with NumPy broadcasting.

        Comparisons (eq, ne, gt, ge, lt, le) return booleans."""
        raise NotImplementedError

    @abstractmethod
    def where(self, cond: Array, a: Array, b: Array) -> Array:
        raise NotImplementedError

    # -- reduction -------------------------------------------------------------
    @abstractmethod
    def reduce(self, op: str, a: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
        """``sum`` or ``max`` over ``axes`` (a tuple); ``argmax`` over one axis. A zero-size ``a``
        is allowed (a sum over an empty axis is 0), but max and argmax are never asked to
        reduce an empty axis: ``functional/reduce.py`` refuses that first."""
        raise NotImplementedError

    # -- linear algebra and layout ---------------------------------------------
    @abstractmethod
    def matmul(self, a: Array, b: Array) -> Array:
        """Batched matrix product with NumPy's broadcasting of the leading axes."""
        raise NotImplementedError

    @abstractmethod
    def reshape(self, a: Array, shape: Shape) -> Array:
        raise NotImplementedError

    @abstractmethod
    def transpose(self, a: Array, axes: tuple[int, ...]) -> Array:
        raise NotImplementedError

    @abstractmethod
    def broadcast_to(self, a: Array, shape: Shape) -> Array:
        """A read-only view of ``a`` broadcast to ``shape``."""
        raise NotImplementedError

    @abstractmethod
    def contiguous(self, a: Array) -> Array:
        """``a`` laid out in C order: ``a`` itself when it already is, else a copy."""
        raise NotImplementedError

    @abstractmethod
    def getitem(self, a: Array, index) -> Array:
        """``a[index]`` with NumPy's basic and advanced indexing."""
        raise NotImplementedError

    @abstractmethod
    def index_add(self, shape: Shape, index, values: Array) -> Array:
        """Zeros of ``shape`` with ``values`` added at ``index``; repeated indices accumulate."""
        raise NotImplementedError

    @abstractmethod
    def pad(self, a: Array, widths, value: float) -> Array:
        """Constant padding; ``widths`` holds a (before, after) pair per axis."""
        raise NotImplementedError

    @abstractmethod
    def concat(self, arrays: list, axis: int) -> Array:
        raise NotImplementedError

    # -- convolution -----------------------------------------------------------
    @abstractmethod
    def im2col(self, x: Array, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
        """Unfold the dilated patches of ``x`` into columns.

        x: (N, C, H, W); kernel, stride, padding, dilation: (h, w) pairs.
        Returns cols: (C*kh*kw, N*out_h*out_w), rows ordered (c, i, j), columns (n, oh, ow):
        ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
        """
        raise NotImplementedError

    @abstractmethod
    def col2im(self, cols: Array, x_shape: Shape, kernel: Pair, stride: Pair, padding: Pair,
               dilation: Pair) -> Array:
        """The adjoint of ``im2col``: scatter-add every column entry back to its pixel.

        cols: (C*kh*kw, N*out_h*out_w); returns (N, C, H, W) of ``x_shape``.
        """
        raise NotImplementedError

    # -- normalisation ---------------------------------------------------------
    @abstractmethod
    def bn_stats(self, x: Array) -> tuple[Array, Array]:
        """Per-channel mean and biased variance of x: (N, C, H, W) over (N, H, W); two (C,) arrays."""
        raise NotImplementedError

    # -- fused hot-path primitives ---------------------------------------------
    # Each is written here on the primitives above: that is its definition, the NumPy
    # backend's implementation and the oracle of the tests. A backend overrides one where a
    # single pass (or a single kernel launch) beats the chain of calls, each of which
    # allocates its result and, on a GPU, costs a launch.

    def conv2d_forward(self, x: Array, weight: Array, stride: Pair, padding: Pair, dilation: Pair,
                       groups: int) -> Array:
        """y: (N, K, out_h, out_w), the dilated cross-correlation of x: (N, C, H, W) with
        weight: (K, C/groups, kh, kw), without bias (``functional/conv.py`` states the maths).

        cols = im2col(x): (G, C/G*kh*kw, N*L), L = out_h*out_w; then one GEMM per group, over
        every image at once, y[n, g] = W_g @ cols_g[n], on a strided view of cols per image so
        that the product lands in (N, G, K/G, L) order: y's own layout.
        """
        geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
        n, k = x.shape[0], weight.shape[0]
        out_h, out_w = conv_out_hw(x.shape, *geometry)
        cols = _grouped_cols(self, x, groups, geometry)                                 # (G, CKK_g, N*L)
        g, ckk, _ = cols.shape
        per_image = self.transpose(self.reshape(cols, (g, ckk, n, -1)), (2, 0, 1, 3))   # (N, G, CKK_g, L)
        out = self.matmul(_grouped_weight(self, weight, groups), per_image)             # (N, G, K_g, L)
        return self.reshape(out, (n, k, out_h, out_w))

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        """(dx, dweight) of ``conv2d_forward`` for grad: (N, K, out_h, out_w); None where not needed.

        dW_g = dy_g @ cols_g^T (one GEMM over all images: dy transposed to (G, K/G, N*L), much
        smaller than cols), and dx = col2im(W_g^T @ dy_g), col2im being im2col's adjoint. cols is
        rebuilt here rather than kept from the forward pass: one im2col more, but a network
        keeps no im2col buffer per layer alive between forward and backward.
        """
        geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
        k = weight.shape[0]
        grad_g = self.reshape(self.contiguous(self.transpose(grad, (1, 0, 2, 3))), (groups, k // groups, -1))
        dx = dweight = None
        if needs_dweight:
            cols = _grouped_cols(self, x, groups, geometry)
            dweight = self.reshape(self.matmul(grad_g, self.transpose(cols, (0, 2, 1))), weight.shape)
            del cols  # free the im2col buffer before col2im makes one of its own
        if needs_dx:
            w_t = self.transpose(_grouped_weight(self, weight, groups), (0, 2, 1))
            dcols = self.matmul(w_t, grad_g)                                          # (G, CKK_g, N*L)
            del grad_g
            dx = _col2im(self, dcols, x.shape, geometry)
        return dx, dweight

    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        """y = x_hat * weight[c] + bias[c] (+ residual), then max(y, 0) if ``relu``;
        x_hat = (x - mean[c]) / sqrt(var[c] + eps).

        x, residual: (N, C, ...); mean, var, weight, bias (weight, bias may be None): (C,).
        Computed as y = x * scale + shift with scale = weight / sqrt(var + eps) and
        shift = bias - mean * scale: one multiply-add per element. The residual and the ReLU are
        a ResNet unit's ``relu(bn(conv(x)) + shortcut)``.
        """
        scale = _inv_std(self, var, eps)
        if weight is not None:
            scale = self.zip("mul", scale, weight)
        shift = self.map("neg", self.zip("mul", mean, scale))
        if bias is not None:
            shift = self.zip("add", shift, bias)
        y = self.zip("add", self.zip("mul", x, _per_channel(self, scale, x.ndim)), _per_channel(self, shift, x.ndim))
        if residual is not None:
            y = self.zip("add", y, residual)
        return self.map("relu", y) if relu else y

    def relu_backward(self, grad: Array, out: Array) -> Array:
        """grad where out > 0, else 0: ReLU's backward, read from its output (out > 0 iff in > 0)."""
        return self.zip("mul", grad, self.map("step", out))

    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        """(dx, dweight, dbias) of ``batch_norm_forward`` without a residual.

        grad, x: (N, C, ...); mean, var, weight (or None): (C,). With ``relu_out`` (the forward's
        output when it applied the ReLU), grad is first masked by relu_backward. Then, with
        g the gradient, x_hat = (x - mean) * inv_std and M values per channel:
        dbias = sum(g), dweight = sum(g * x_hat) and, when the statistics came from this batch,
        dx = weight * inv_std * (g - sum(g) / M - x_hat * sum(g * x_hat) / M); else dx = weight * inv_std * g.
        """
        if relu_out is not None:
            grad = self.relu_backward(grad, relu_out)
        axes = (0,) + tuple(range(2, x.ndim))
        per_channel = lambda v: _per_channel(self, v, x.ndim)  # noqa: E731
        inv_std = _inv_std(self, var, eps)
        x_hat = self.zip("mul", self.zip("sub", x, per_channel(mean)), per_channel(inv_std))
        dbias = self.reduce("sum", grad, axes, keepdims=False)
        dweight = self.reduce("sum", self.zip("mul", grad, x_hat), axes, keepdims=False)
        scale = inv_std if weight is None else self.zip("mul", inv_std, weight)
        if training:
            m = self.full((), x.size // x.shape[1], x.dtype)
            centred = self.zip("sub", grad, per_channel(self.zip("div", dbias, m)))
            grad = self.zip("sub", centred, self.zip("mul", x_hat, per_channel(self.zip("div", dweight, m))))
        return self.zip("mul", grad, per_channel(scale)), dweight, dbias

    def update_running_stats(self, running_mean, running_var, mean, var, momentum, count):
        """The running statistics moved towards a batch's: running = (1 - m) * running + m * batch,
        the variance made unbiased (times count / (count - 1)) first, as PyTorch. Returns the
        new (running_mean, running_var); a backend may update them in place and return them."""
        def moved(running, batch, factor):
            keep = self.zip("mul", running, self.full((), 1 - momentum, running.dtype))
            step = self.zip("mul", batch, self.full((), momentum * factor, batch.dtype))
            return self.zip("add", keep, self.astype(step, running.dtype))
        return moved(running_mean, mean, 1.0), moved(running_var, var, count / (count - 1))

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
        ``lr`` is a 0-d float64 array of this backend that holds the rate (the optimiser's own: a
        replayed CUDA graph reads the rate there, so it follows the schedule).

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
            new_params.append(self.zip("sub", p, self.zip("mul", g, self.astype(lr, g.dtype))))
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


def _inv_std(backend, var, eps):
    """1 / sqrt(var + eps), per channel."""
    root = backend.map("sqrt", backend.zip("add", var, backend.full((), eps, var.dtype)))
    return backend.zip("div", backend.full((), 1, var.dtype), root)


def _is_pointwise(kernel, stride, padding):
    """A 1x1, stride-1, unpadded kernel's patches are the pixels themselves."""
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _grouped_cols(backend, x, groups, geometry):
    """im2col of x: (N, C, H, W) as (G, C/G*kh*kw, N*L); for a pointwise kernel, x transposed."""
    kernel, stride, padding, dilation = geometry
    n, c, h, w = x.shape
    if _is_pointwise(kernel, stride, padding):
        cols = backend.reshape(backend.transpose(x, (1, 0, 2, 3)), (c, n * h * w))
    else:
        cols = backend.im2col(x, kernel, stride, padding, dilation)
    return backend.reshape(cols, (groups, cols.shape[0] // groups, cols.shape[1]))


def _grouped_weight(backend, weight, groups):
    """weight: (K, C/G, kh, kw) as (G, K/G, C/G*kh*kw)."""
    return backend.reshape(weight, (groups, weight.shape[0] // groups, -1))


def _col2im(backend, dcols, x_shape, geometry):
    """col2im of (G, C/G*kh*kw, N*L) back to x_shape; for a pointwise kernel, a transpose."""
    kernel, stride, padding, dilation = geometry
    n, c, h, w = x_shape
    if _is_pointwise(kernel, stride, padding):
        return backend.contiguous(backend.transpose(backend.reshape(dcols, (c, n, h, w)), (1, 0, 2, 3)))
    dcols = backend.reshape(dcols, (dcols.shape[0] * dcols.shape[1], dcols.shape[2]))
    return backend.col2im(dcols, x_shape, kernel, stride, padding, dilation)


def _per_channel(backend, v, ndim):
    """A (C,) vector as (1, C, 1, ...), to broadcast over (N, C, ...) of ``ndim`` axes."""
    return backend.reshape(v, (1, -1) + (1,) * (ndim - 2))
