"""Matrix product with NumPy's batching rules, and the linear (fully connected) layer's map."""

from ..autograd import Function, unbroadcast
from .operands import as_operands, broadcast_shape
from .shape import reshape, transpose


class MatMul(Function):
    """y = a @ b on (..., n, k) and (..., k, m);  da = g @ b^T, db = a^T @ g.

    Leading (batch) axes broadcast, so each gradient is summed back to its input's shape.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        be, (a, b) = ctx.backend, ctx.saved
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(be, be.matmul(grad, _swap_last(be, b)), a.shape)
        if ctx.needs_input_grad[1]:
            db = unbroadcast(be, be.matmul(_swap_last(be, a), grad), b.shape)
        return da, db


def _swap_last(backend, a):
    axes = tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)
    return backend.transpose(a, axes)


def matmul(a, b):
    """``a @ b``; a 1-d operand is a row (left) or a column (right), dropped from the result."""
    a, b = as_operands(a, b, op="matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension, got shapes {a.shape} and {b.shape}")
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    a2_shape, b2_shape = tuple(a2.shape), tuple(b2.shape)  # a device array's shape has no negative indexing
    if a2_shape[-1] != b2_shape[-2]:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match: "
                         f"a has {a2_shape[-1]} columns, b has {b2_shape[-2]} rows")
    broadcast_shape("matmul", a2_shape[:-2], b2_shape[:-2])
    out = MatMul.apply(a2, b2)
    if a.ndim == 1:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])  # a Tensor's shape is a plain tuple
    if b.ndim == 1:
        out = reshape(out, out.shape[:-1])
    return out


def linear(x, weight, bias=None):
    """y = x @ weight^T + bias, PyTorch's layout: x: (..., in), weight: (out, in), bias: (out,)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be (out, in), got shape {weight.shape}")
    y = matmul(x, transpose(weight, 0, 1))
    return y if bias is None else y + bias
