"""Reductions over axes: sum, mean, max (and argmax, which has no gradient).

``axis`` follows NumPy: None reduces every axis, an int or a tuple those axes, and ``axis=()``
reduces *none* (the identity). PyTorch's ``dim=()`` reduces every axis instead, so code
ported from PyTorch with ``dim=()`` changes meaning here: write ``axis=None``.

Zero-size tensors follow NumPy and PyTorch. A sum over an empty axis is 0 (its identity), a
mean is nan (0/0), and max or argmax over an empty axis is an error, having no identity. A
reduction over non-empty axes of an empty tensor is an empty tensor. The refusal is made
here, once for every backend (``_reduce``); a backend's reduce handles the rest.
"""

from ..autograd import Function, backend_of
from ..tensor import Tensor
from .operands import normalize_axes, torch_or_numpy


def _reduce(backend, op, a, axes, keepdims):
    """``backend.reduce``, after refusing max or argmax over an empty axis (no identity)."""
    empty_axes = [ax for ax in axes if a.shape[ax] == 0]
    if empty_axes and op != "sum":
        raise ValueError(f"{op}: cannot reduce axis {empty_axes[0]} of a tensor of shape {tuple(a.shape)}: it is "
                         f"empty, and {op} has no identity (sum's is 0)")
    return backend.reduce(op, a, axes, keepdims)


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
        return _reduce(ctx.backend, "sum", a, axes, keepdims)

    @staticmethod
    def backward(ctx, grad):
        return _expand(ctx.backend, grad, ctx.shape, ctx.axes, ctx.keepdims)


class Max(Function):
    """y = max of a over ``axes``;  da = g / (number of ties) at the maxima, 0 elsewhere.

    The mask of maxima is kept from forward to backward as booleans, a quarter of a float32 copy
    of a, and the gradient is divided by the ties while it is still reduced: the division runs on
    the reduced shape, not on a's."""

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        be = ctx.backend
        out = _reduce(be, "max", a, axes, keepdims)
        if ctx.needs_input_grad[0]:  # the mask is for backward only
            ctx.save_for_backward(be.zip("eq", a, _expand(be, out, a.shape, axes, keepdims)))
        ctx.axes, ctx.keepdims = axes, keepdims
        return out

    @staticmethod
    def backward(ctx, grad):
        be, (is_max,) = ctx.backend, ctx.saved
        ties = _reduce(be, "sum", be.astype(is_max, grad.dtype), ctx.axes, keepdims=True)
        if not ctx.keepdims:
            grad = be.reshape(grad, ties.shape)
        share = _expand(be, be.zip("div", grad, ties), is_max.shape, ctx.axes, keepdims=True)
        return be.zip("mul", share, is_max)


# PyTorch names the reduced axes ``dim`` and keeps them with ``keepdim``; NumPy says ``axis`` and
# ``keepdims``. Each reduction takes either spelling.

def sum(a, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001 - mirrors torch.sum
    """The sum over ``dim`` (None: every axis); over an empty axis, 0.

    Note: dim=() reduces nothing, as NumPy's axis=(); PyTorch's dim=() reduces every axis, so
    write dim=None when porting code that uses it."""
    axes, keep = _axes_and_keep("sum", a, dim, axis, keepdim, keepdims)
    return Sum.apply(a, axes=axes, keepdims=keep)


def mean(a, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The sum over ``dim`` divided by the number of values summed: nan where that is 0."""
    axes, keep = _axes_and_keep("mean", a, dim, axis, keepdim, keepdims)
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    return sum(a, axes, keep) * (1.0 / count if count else float("nan"))


def max(a, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001 - mirrors torch.max
    """The largest value over ``dim`` (None: every axis); an empty axis is an error.

    Unlike torch.max(x, dim), this returns the values only; ``argmax`` gives the indices."""
    axes, keep = _axes_and_keep("max", a, dim, axis, keepdim, keepdims)
    return Max.apply(a, axes=axes, keepdims=keep)


def argmax(a, dim=None, *, axis=None):
    """Index of the maximum along ``dim`` (of the flattened tensor when None); no gradient."""
    dim = torch_or_numpy("argmax", dim, axis, ("dim", "axis"))
    backend = backend_of("argmax", a)
    data = a.data if dim is not None else backend.reshape(a.data, (-1,))
    axes = normalize_axes("argmax", 0 if dim is None else dim, data.ndim)
    return Tensor._wrap(_reduce(backend, "argmax", data, axes, keepdims=False), backend)


def _axes_and_keep(op, a, dim, axis, keepdim, keepdims):
    dim = torch_or_numpy(op, dim, axis, ("dim", "axis"))
    return normalize_axes(op, dim, a.ndim), torch_or_numpy(op, keepdim, keepdims, ("keepdim", "keepdims"), False)
