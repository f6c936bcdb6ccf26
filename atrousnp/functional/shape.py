"""Ops that move values without changing them: reshape, permute, indexing, cat, pad.

Each backward moves the gradient back the way the value came.
"""

from collections.abc import Sequence

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .operands import normalize_axes, torch_or_numpy


class Reshape(Function):
    """y = a with a new shape of the same size;  da = g reshaped back."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return ctx.backend.reshape(a, shape)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.reshape(grad, ctx.shape)


def reshape(a, shape):
    shape = tuple(int(s) for s in shape)
    size = int(np.prod(a.shape, dtype=np.int64))
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    inferred = shape.count(-1) == 1 and known > 0 and size % known == 0
    if not (known == size and -1 not in shape) and not inferred:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(a.shape)} "
                         f"({size} elements) into shape {shape}")
    return Reshape.apply(a, shape=shape)


def flatten(a, start_dim=0, end_dim=-1):
    """``a`` with axes start_dim..end_dim (inclusive) merged into one, as PyTorch's flatten."""
    if a.ndim == 0:
        return reshape(a, (1,))
    start, end = (normalize_axes("flatten", d, a.ndim)[0] for d in (start_dim, end_dim))
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {a.shape}")
    merged = int(np.prod(a.shape[start:end + 1], dtype=np.int64))
    return reshape(a, a.shape[:start] + (merged,) + a.shape[end + 1:])


class Permute(Function):
    """y = a with its axes reordered by ``dims``;  da = g with the inverse order."""

    @staticmethod
    def forward(ctx, a, dims):
        ctx.inverse = tuple(np.argsort(dims))
        return ctx.backend.transpose(a, dims)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.transpose(grad, ctx.inverse)


def permute(a, dims):
    dims = tuple(int(d) % a.ndim if a.ndim else int(d) for d in dims)
    if sorted(dims) != list(range(a.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of the {a.ndim} axes of shape {a.shape}")
    return Permute.apply(a, dims=dims)


def transpose(a, dim0, dim1):
    """Swap two axes (PyTorch's ``transpose``)."""
    dim0, dim1 = (normalize_axes("transpose", d, a.ndim)[0] for d in (dim0, dim1))
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


class GetItem(Function):
    """y = a[index];  da = zeros with g added at index (repeated indices add up)."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index = a.shape, index
        return ctx.backend.getitem(a, index)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.index_add(ctx.shape, ctx.index, grad)


def getitem(a, index):
    """NumPy indexing: ints, slices, None, Ellipsis, integer or boolean arrays or Tensors."""
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(p.data if isinstance(p, Tensor) else p for p in parts)
    return GetItem.apply(a, index=parts if isinstance(index, tuple) else parts[0])


class Cat(Function):
    """y = the inputs joined along ``axis``;  each input's gradient is its slice of g."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.bounds = np.cumsum([0] + [a.shape[axis] for a in arrays])
        return ctx.backend.concat(arrays, axis)

    @staticmethod
    def backward(ctx, grad):
        lead = (slice(None),) * ctx.axis
        return tuple(ctx.backend.getitem(grad, lead + (slice(start, stop),))
                     for start, stop in zip(ctx.bounds[:-1], ctx.bounds[1:]))


def cat(tensors: Sequence[Tensor], dim: int = None, *, axis: int = None) -> Tensor:
    """Join tensors along axis ``dim`` (or NumPy's ``axis``; 0 if neither); every other axis
    must match. As in PyTorch, a 1-d empty tensor (shape (0,)) may join tensors of any shape:
    it contributes nothing."""
    dim = torch_or_numpy("cat", dim, axis, ("dim", "axis"), default=0)
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    if any(t.ndim != 1 for t in tensors):
        tensors = [t for t in tensors if tuple(t.shape) != (0,)]
    first = tensors[0]
    axis = normalize_axes("cat", dim, first.ndim)[0]
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or any(t.shape[k] != first.shape[k] for k in range(t.ndim) if k != axis):
            raise ValueError(f"cat: tensor {i} has shape {t.shape}, which does not match tensor 0's "
                             f"shape {first.shape} outside dim {dim}")
    return Cat.apply(*tensors, axis=axis)


def stack(tensors, dim=None, *, axis=None):
    """Join equal-shaped tensors along a new axis ``dim`` (or ``axis``; 0 if neither)."""
    dim = torch_or_numpy("stack", dim, axis, ("dim", "axis"), default=0)
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, expected tensor 0's shape {shape}")
    axis = normalize_axes("stack", dim, len(shape) + 1)[0]
    new_shape = shape[:axis] + (1,) + shape[axis:]
    return cat([reshape(t, new_shape) for t in tensors], axis)


class Pad(Function):
    """y = a with constant borders ``widths`` ((before, after) per axis);  da = g's interior."""

    @staticmethod
    def forward(ctx, a, widths, value):
        ctx.interior = tuple(slice(before, before + size) for (before, _), size in zip(widths, a.shape))
        return ctx.backend.pad(a, widths, value)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.getitem(grad, ctx.interior)


def pad(a, pad, value=0.0):
    """Constant padding, PyTorch's convention: ``pad`` = (last_before, last_after, prev_before, ...)."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > a.ndim:
        raise ValueError(f"pad: expected an even number of widths, at most two per axis of shape {a.shape}, got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: widths must be non-negative, got {pad}")
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    widths = [(0, 0)] * (a.ndim - len(pairs)) + pairs[::-1]
    return Pad.apply(a, widths=tuple(widths), value=value)


def batched(x, run):
    """``run(x)`` for x: (N, C, H, W); an unbatched (C, H, W) x runs as a batch of one and
    its result (a Tensor, or a tuple of them) comes back without the batch axis, as PyTorch's
    image ops accept both."""
    if x.ndim != 3:
        return run(x)
    out = run(reshape(x, (1,) + tuple(x.shape)))
    unbatch = lambda t: reshape(t, tuple(t.shape[1:]))  # noqa: E731
    return tuple(map(unbatch, out)) if isinstance(out, tuple) else unbatch(out)
