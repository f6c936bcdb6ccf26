"""Elementwise ops: y = f(a) and y = f(a, b) with NumPy broadcasting.

Binary ops sum each gradient back to its input's shape (``unbroadcast``), because
broadcasting copied that input along the axes it lacked.
"""

import numpy as np

from ..autograd import Function, backend_of, unbroadcast
from ..backends import check_dtype
from ..tensor import Tensor
from .operands import as_operands, broadcast_shape, scalar


# -- binary ---------------------------------------------------------------------------

class Add(Function):
    """y = a + b;  da = g, db = g."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return ctx.backend.zip("add", a, b)

    @staticmethod
    def backward(ctx, grad):
        return tuple(unbroadcast(ctx.backend, grad, s) for s in ctx.shapes)


class Sub(Function):
    """y = a - b;  da = g, db = -g."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return ctx.backend.zip("sub", a, b)

    @staticmethod
    def backward(ctx, grad):
        be = ctx.backend
        a_shape, b_shape = ctx.shapes
        return unbroadcast(be, grad, a_shape), unbroadcast(be, be.map("neg", grad), b_shape)


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.backend.zip("mul", a, b)

    @staticmethod
    def backward(ctx, grad):
        be, (a, b) = ctx.backend, ctx.saved
        return (unbroadcast(be, be.zip("mul", grad, b), a.shape),
                unbroadcast(be, be.zip("mul", grad, a), b.shape))


class Div(Function):
    """y = a / b;  da = g / b, db = -g * y / b."""

    @staticmethod
    def forward(ctx, a, b):
        out = ctx.backend.zip("div", a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (a, b, out) = ctx.backend, ctx.saved
        grad_over_b = be.zip("div", grad, b)
        db = be.map("neg", be.zip("mul", grad_over_b, out))
        return unbroadcast(be, grad_over_b, a.shape), unbroadcast(be, db, b.shape)


class Pow(Function):
    """y = a ** b;  da = g * b * a ** (b - 1), db = g * y * log(a) (only where asked for)."""

    @staticmethod
    def forward(ctx, a, b):
        out = ctx.backend.zip("pow", a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (a, b, out) = ctx.backend, ctx.saved
        da = db = None
        if ctx.needs_input_grad[0]:
            b_minus_1 = be.zip("sub", b, scalar(be, 1, b.dtype))
            da = be.zip("mul", grad, be.zip("mul", b, be.zip("pow", a, b_minus_1)))
            da = unbroadcast(be, da, a.shape)
        if ctx.needs_input_grad[1]:
            db = be.zip("mul", be.zip("mul", grad, out), be.map("log", a))
            db = unbroadcast(be, db, b.shape)
        return da, db


def _binary(function, a, b):
    a, b = as_operands(a, b, op=function.__name__.lower())
    broadcast_shape(function.__name__.lower(), a.shape, b.shape)
    return function.apply(a, b)


class Maximum(Function):
    """y = max(a, b) elementwise;  the gradient goes to the larger input, halved between equal
    ones (PyTorch's rule): da = g * ([a > b] + [a == b] / 2), db = g * ([b > a] + [a == b] / 2)."""

    @staticmethod
    def forward(ctx, a, b, larger):
        ctx.save_for_backward(a, b)
        ctx.larger = larger
        return ctx.backend.where(ctx.backend.zip(larger, a, b), a, b)

    @staticmethod
    def backward(ctx, grad):
        be, (a, b) = ctx.backend, ctx.saved
        half_ties = be.zip("mul", be.astype(be.zip("eq", a, b), grad.dtype), scalar(be, 0.5, grad.dtype))
        shares = (be.zip("add", be.astype(be.zip(ctx.larger, a, b), grad.dtype), half_ties),
                  be.zip("add", be.astype(be.zip(ctx.larger, b, a), grad.dtype), half_ties))
        return tuple(unbroadcast(be, be.zip("mul", grad, share), t.shape) for share, t in zip(shares, (a, b)))


def add(a, b, alpha=1):
    """a + alpha * b, as torch.add."""
    return _binary(Add, a, b if alpha == 1 else mul(b, alpha))


def sub(a, b, alpha=1):
    """a - alpha * b, as torch.sub."""
    return _binary(Sub, a, b if alpha == 1 else mul(b, alpha))


def mul(a, b): return _binary(Mul, a, b)
def pow(a, b): return _binary(Pow, a, b)  # noqa: A001 - mirrors torch.pow


def div(a, b, rounding_mode=None):
    """a / b; ``rounding_mode`` "trunc" rounds the quotient toward zero and "floor" down, as
    torch.div. A rounded quotient is piecewise constant, so its gradient is 0, as PyTorch's.
    (Rounding goes through int64, so a quotient beyond +-9.2e18 is out of its range.)"""
    if rounding_mode is None:
        return _binary(Div, a, b)
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    a, b = as_operands(a, b, op="div")
    broadcast_shape("div", a.shape, b.shape)
    return RoundedDiv.apply(a, b, mode=rounding_mode)


class RoundedDiv(Function):
    """y = a / b rounded toward zero ("trunc") or down ("floor");  da = db = 0, since y is
    piecewise constant (PyTorch's gradient too).

    Truncation is a cast to int64 and back. From 2^52 on every float is an integer already,
    and inf and nan stay as they are, so those values are kept rather than cast."""

    @staticmethod
    def forward(ctx, a, b, mode):
        be = ctx.backend
        ctx.shapes = a.shape, b.shape
        a = be.zip("div", a, b)
        with np.errstate(invalid="ignore"):  # the casts of inf and nan are computed, then discarded
            truncated = be.astype(be.astype(a, np.int64), a.dtype)
        if mode == "floor":  # one less where truncation went up (negative fractions)
            truncated = be.zip("sub", truncated, be.astype(be.zip("lt", a, truncated), a.dtype))
        below, above = be.zip("lt", a, scalar(be, 2.0 ** 52, a.dtype)), be.zip("gt", a, scalar(be, -2.0 ** 52, a.dtype))
        return be.where(below, be.where(above, truncated, a), a)  # |a| < 2^52 (false for nan): rounded

    @staticmethod
    def backward(ctx, grad):
        return tuple(ctx.backend.zeros(shape, grad.dtype) for shape in ctx.shapes)


def maximum(a, b):
    """The elementwise larger of a and b (torch.maximum), with broadcasting."""
    a, b = as_operands(a, b, op="maximum")
    broadcast_shape("maximum", a.shape, b.shape)
    return Maximum.apply(a, b, larger="gt")


def minimum(a, b):
    """The elementwise smaller of a and b (torch.minimum), with broadcasting."""
    a, b = as_operands(a, b, op="minimum")
    broadcast_shape("minimum", a.shape, b.shape)
    return Maximum.apply(a, b, larger="lt")


# -- unary ----------------------------------------------------------------------------

class Neg(Function):
    """y = -a;  da = -g."""

    @staticmethod
    def forward(ctx, a):
        return ctx.backend.map("neg", a)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.map("neg", grad)


class Exp(Function):
    """y = exp(a);  da = g * y."""

    @staticmethod
    def forward(ctx, a):
        out = ctx.backend.map("exp", a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.zip("mul", grad, ctx.saved[0])


class Log(Function):
    """y = log(a);  da = g / a."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.backend.map("log", a)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.zip("div", grad, ctx.saved[0])


class Sqrt(Function):
    """y = sqrt(a);  da = g / (2 y)."""

    @staticmethod
    def forward(ctx, a):
        out = ctx.backend.map("sqrt", a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (out,) = ctx.backend, ctx.saved
        return be.zip("div", grad, be.zip("mul", scalar(be, 2, out.dtype), out))


class ReLU(Function):
    """y = max(a, 0);  da = g where a > 0, else 0."""

    @staticmethod
    def forward(ctx, a):
        out = ctx.backend.map("relu", a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.relu_backward(grad, ctx.saved[0])


class Sigmoid(Function):
    """y = 1 / (1 + exp(-a));  da = g * y * (1 - y)."""

    @staticmethod
    def forward(ctx, a):
        out = ctx.backend.map("sigmoid", a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (out,) = ctx.backend, ctx.saved
        one_minus_out = be.zip("sub", scalar(be, 1, out.dtype), out)
        return be.zip("mul", grad, be.zip("mul", out, one_minus_out))


class Tanh(Function):
    """y = tanh(a);  da = g * (1 - y^2)."""

    @staticmethod
    def forward(ctx, a):
        out = ctx.backend.map("tanh", a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (out,) = ctx.backend, ctx.saved
        return be.zip("mul", grad, be.zip("sub", scalar(be, 1, out.dtype), be.zip("mul", out, out)))


def neg(a): return Neg.apply(a)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def sqrt(a): return Sqrt.apply(a)
def relu(a: Tensor) -> Tensor: return ReLU.apply(a)
def sigmoid(a): return Sigmoid.apply(a)
def tanh(a): return Tanh.apply(a)


# -- selection and comparison ---------------------------------------------------------

class Where(Function):
    """y = a where cond else b;  da = g where cond, db = g elsewhere (each unbroadcast)."""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = a.shape, b.shape
        return ctx.backend.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        be, (cond,) = ctx.backend, ctx.saved
        zero = scalar(be, 0, grad.dtype)
        a_shape, b_shape = ctx.shapes
        return (None,
                unbroadcast(be, be.where(cond, grad, zero), a_shape),
                unbroadcast(be, be.where(cond, zero, grad), b_shape))


def where(cond, a, b):
    """Elementwise ``a if cond else b``; ``cond`` is a boolean Tensor or array."""
    cond, a, b = as_operands(cond, a, b, op="where")
    if np.dtype(cond.dtype) != np.bool_:
        raise TypeError(f"where: cond must be boolean, got dtype {cond.dtype}")
    broadcast_shape("where", broadcast_shape("where", cond.shape, a.shape), b.shape)
    return Where.apply(cond, a, b)


def compare(op, a, b):
    """A boolean Tensor for op in eq, ne, gt, ge, lt, le; it carries no gradient."""
    a, b = as_operands(a, b, op=op)
    broadcast_shape(op, a.shape, b.shape)
    backend = backend_of(op, a, b)
    data = backend.zip(op, *(v.data if isinstance(v, Tensor) else v for v in (a, b)))
    return Tensor._wrap(data, backend)


class AsType(Function):
    """y = a cast to ``dtype``;  da = g cast back to a's dtype."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return ctx.backend.astype(a, dtype)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.astype(grad, ctx.dtype)


def astype(a, dtype):
    return AsType.apply(a, dtype=check_dtype(backend_of("astype", a), dtype, "astype"))
