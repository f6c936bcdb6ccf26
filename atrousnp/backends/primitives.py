"""The contract: the primitive set every backend implements, and the fused ops' signatures.

A backend owns one array type (NumPy arrays on the CPU backends) and the small set of
operations below on it. Every differentiable op in ``atrousnp.functional`` is written once,
on these primitives only, so a new backend is one new file. A few hot-path steps (a conv,
batch norm, the loss, SGD's update) are fused primitives: each backend does them in one call,
and ``numpy.py`` gives each its definition in plain NumPy maths.

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

# Every primitive, by name: what a backend implements and all that atrousnp.functional and
# atrousnp.optim may call. tests/test_design_rules.py holds every
# backend to this list, both ways.
PRIMITIVES = (
    "empty", "zeros", "full", "asarray", "copy_from_host", "to_host", "owns", "astype",  # creation, transfer
    "map", "zip", "where", "reduce",                                                  # elementwise, reduction
    "matmul", "reshape", "transpose", "broadcast_to", "contiguous", "getitem",        # linear algebra, layout
    "index_add", "pad", "concat",
    "im2col", "col2im", "bn_stats",                                                   # convolution, statistics
    "conv2d_forward", "conv2d_backward", "batch_norm_forward", "batch_norm_backward",  # fused
    "relu_backward", "update_running_stats", "softmax_cross_entropy",
    "softmax_cross_entropy_backward", "sgd_step", "max_pool2d_forward",
)
OPTIONAL = ("sgd_step", "max_pool2d_forward")   # None where a backend has no fused form


class Backend(ABC):
    """Abstract backend: a subclass implements every abstract method (and the ``OPTIONAL`` ones
    where it fuses them); shapes are tuples of ints."""

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
    # Each is one step of a network's hot path done in one call: composing it from the primitives
    # above would allocate a result per call and, on a GPU, cost a launch per call. The NumPy
    # backend (numpy.py) writes each as plain NumPy maths: that is its definition, and
    # tests/test_fused.py holds every other backend's to it.

    @abstractmethod
    def conv2d_forward(self, x: Array, weight: Array, stride: Pair, padding: Pair, dilation: Pair,
                       groups: int) -> Array:
        """y: (N, K, out_h, out_w), the dilated cross-correlation of x: (N, C, H, W) with
        weight: (K, C/groups, kh, kw), without bias (``functional/conv.py`` states the maths):
        y[n, g] = W_g @ im2col(x)_g[n], one GEMM per group."""
        raise NotImplementedError

    @abstractmethod
    def conv2d_backward(self, grad: Array, x: Array, weight: Array, stride: Pair, padding: Pair, dilation: Pair,
                        groups: int, needs_dx: bool, needs_dweight: bool) -> tuple:
        """(dx, dweight) of ``conv2d_forward`` for grad: (N, K, out_h, out_w), None where not
        needed: dW_g = dy_g @ im2col(x)_g^T and dx = col2im(W_g^T @ dy_g)."""
        raise NotImplementedError

    @abstractmethod
    def batch_norm_forward(self, x, mean, var, weight, bias, eps, residual=None, relu=False):
        """y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c] (+ residual), then
        max(y, 0) if ``relu``. x, residual: (N, C, ...); mean, var, weight, bias (weight and bias
        may be None): (C,). The residual and the ReLU are a ResNet unit's relu(bn(conv(x)) + x)."""
        raise NotImplementedError

    @abstractmethod
    def relu_backward(self, grad: Array, out: Array) -> Array:
        """grad where out > 0, else 0: ReLU's backward, read from its output (out > 0 iff in > 0)."""
        raise NotImplementedError

    @abstractmethod
    def batch_norm_backward(self, grad, x, mean, var, weight, eps, training, relu_out=None):
        """(dx, dweight, dbias) of ``batch_norm_forward`` without a residual, for grad, x: (N, C, ...).
        With ``relu_out`` (the forward's output when it applied the ReLU) grad is first masked by
        relu_backward. With x_hat = (x - mean) / sqrt(var + eps) and M values per channel:
        dbias = sum(g), dweight = sum(g * x_hat), and dx = weight / sqrt(var + eps) * (g - sum(g) / M
        - x_hat * sum(g * x_hat) / M) when the statistics came from this batch (``training``),
        else dx = weight / sqrt(var + eps) * g."""
        raise NotImplementedError

    @abstractmethod
    def update_running_stats(self, running_mean, running_var, mean, var, momentum, count):
        """The running statistics moved towards a batch's: running = (1 - m) * running + m * batch,
        the variance made unbiased (times count / (count - 1)) first, as PyTorch. Returns the new
        (running_mean, running_var); a backend may update them in place and return them."""
        raise NotImplementedError

    @abstractmethod
    def softmax_cross_entropy(self, logits, target, weight, ignore_index):
        """Cross-entropy of softmax(logits) along axis 1 against integer labels.

        logits: (N, C, L); target: (N, L) integers; weight: (C,) class weights or None. Pixel p
        with label t != ignore_index has weight w_p = weight[t] (1 without weights) and loss
        w_p * (lse_p - logits[t, p]), lse_p = log(sum_c exp(logits[c, p])). Returns
        (loss, lse, norm): loss = sum of those / norm, a 0-d array; lse: (N, 1, L) for the
        backward; norm = sum(w_p), or 1 when every pixel is ignored (the loss is then 0)."""
        raise NotImplementedError

    @abstractmethod
    def softmax_cross_entropy_backward(self, grad, logits, target, weight, ignore_index, lse, norm):
        """d loss / d logits = grad / norm * w_p * (softmax(logits)_p - onehot(t_p)), 0 where
        ignored; grad: the 0-d gradient of the loss, the rest as ``softmax_cross_entropy`` took
        and returned them."""
        raise NotImplementedError

    # SGD's update over every parameter in one call, where a backend fuses it: ``sgd_step(params,
    # grads, buffers, lr, momentum, weight_decay, dampening, nesterov) -> (params, buffers)``, lr a
    # 0-d float64 array of the backend (the optimiser's own, which a replayed CUDA graph reads).
    # None: the backend has no fused form, and ``optim.SGD`` applies its rule op by op, on Tensors.
    sgd_step = None

    # Max pooling in one pass over x where no gradient is needed, if a backend fuses it:
    # ``max_pool2d_forward(x, kernel, stride, padding, dilation, out_hw) -> y``, x: (N, C, H, W),
    # y: (N, C, out_h, out_w), windows at (o*s - p + i*d) reading -inf outside x. None:
    # ``functional.max_pool2d``'s own composition (im2col, then max down each column) runs,
    # which defines it.
    max_pool2d_forward = None


def conv_out_size(size, kernel, stride, padding, dilation):
    """Output length of a dilated convolution along one axis.

    out = floor((size + 2p - d(k-1) - 1) / s) + 1: the dilated kernel spans d(k-1)+1 pixels.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_out_hw(x_shape, kernel, stride, padding, dilation):
    """(out_h, out_w) for x: (N, C, H, W) and (h, w) pairs of kernel, stride, padding, dilation."""
    return tuple(conv_out_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))


def is_pointwise(kernel, stride, padding):
    """A 1x1, stride-1, unpadded kernel's patches are the pixels themselves."""
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


