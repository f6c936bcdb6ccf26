"""The primitive set every backend implements.

A backend owns one array type (NumPy arrays on the CPU backends) and the small
set of operations below on it. Every differentiable op in ``atrousnp.functional``
is written once, on these primitives only, so a new backend is one new file.

Ops named by string, so that a backend can compile each one once:

* ``map(op, a)``: op in ``UNARY_OPS``
* ``zip(op, a, b)``: op in ``BINARY_OPS``, with NumPy broadcasting
* ``reduce(op, a, axes, keepdims)``: op in ``REDUCE_OPS``
"""

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


def conv_out_size(size, kernel, stride, padding, dilation):
    """Output length of a dilated convolution along one axis.

    out = floor((size + 2p - d(k-1) - 1) / s) + 1: the dilated kernel spans d(k-1)+1 pixels.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_out_hw(x_shape, kernel, stride, padding, dilation):
    """(out_h, out_w) for x: (N, C, H, W) and (h, w) pairs of kernel, stride, padding, dilation."""
    return tuple(conv_out_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))
