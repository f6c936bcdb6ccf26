"""Reductions over axes: sum, mean, max (and argmax, which has no gradient)."""

from ..autograd import Function, backend_of
from ..tensor import Tensor
from .operands import normalize_axes


def _expand(backend, grad, shape, axes, keepdims):
    """Broadcast a reduced gradient back over the axes that were reduced away."""
    if not keepdims:
        grad = backend.reshape(grad, tuple(1 if i in axes else s for i, s in enumerate(shape)))
    return backend.broadcast_to(grad, shape)


class Sum(Function):
    """y = sum of a over ``axes``;  da = g copied along those axes."""

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return ctx.backend.reduce("sum", a, axes, keepdims)

    @staticmethod
    def backward(ctx, grad):
        return _expand(ctx.backend, grad, ctx.shape, ctx.axes, ctx.keepdims)


class Max(Function):
    """y = max of a over ``axes``;  da = g at the maxima, shared equally among ties."""

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        be = ctx.backend
        out = be.reduce("max", a, axes, keepdims)
        if ctx.needs_input_grad[0]:  # the mask is for backward only
            ctx.save_for_backward(be.astype(be.zip("eq", a, _expand(be, out, a.shape, axes, keepdims)), a.dtype))
        ctx.axes, ctx.keepdims = axes, keepdims
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (is_max,) = ctx.backend, ctx.saved
        ties = be.reduce("sum", is_max, ctx.axes, keepdims=True)
        share = be.zip("div", _expand(be, grad, is_max.shape, ctx.axes, ctx.keepdims), ties)
        return be.zip("mul", share, is_max)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - mirrors torch.sum
    return Sum.apply(a, axes=normalize_axes("sum", axis, a.ndim), keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    axes = normalize_axes("mean", axis, a.ndim)
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    return sum(a, axes, keepdims) * (1.0 / count)


def max(a, axis=None, keepdims=False):  # noqa: A001 - mirrors torch.max
    if a.size == 0:
        raise ValueError(f"max: the tensor of shape {a.shape} is empty")
    return Max.apply(a, axes=normalize_axes("max", axis, a.ndim), keepdims=keepdims)


def argmax(a, axis=None):
    """Index of the maximum along ``axis`` (of the flattened tensor when None); no gradient."""
    backend = backend_of("argmax", a)
    data = a.data if axis is not None else backend.reshape(a.data, (-1,))
    axes = normalize_axes("argmax", 0 if axis is None else axis, data.ndim)
    return Tensor._wrap(backend.reduce("argmax", data, axes, keepdims=False), backend)
