"""Strides and views worked out on the host, from shapes alone: plain Python, testable without a GPU.

Device arrays in this backend are always C-contiguous. A layout change (transpose, broadcast,
basic indexing, padding, concatenation) is then one gather or scatter kernel, given the element
strides that read (or write) the source as if it had the new layout.
"""

import numpy as np


def flat(a):
    """A C-contiguous array as one dimension (a view; a 0-d array as one element)."""
    return a.reshape(a.size)


def contiguous_strides(shape):
    """Element strides of a C-contiguous array of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def broadcast_strides(shape, out_shape):
    """Element strides that read an array of ``shape`` as if broadcast to ``out_shape``."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides = contiguous_strides(padded)
    return tuple(0 if size == 1 and out != 1 else s for size, s, out in zip(padded, strides, out_shape))


def is_basic(index):
    """True when ``index`` holds only ints, slices, None and Ellipsis (no arrays)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(part is None or part is Ellipsis or isinstance(part, (int, np.integer, slice)) for part in parts)


def basic_view(shape, index):
    """(offset, shape, strides) of ``array[index]`` for basic indexing: ints, slices, None, Ellipsis."""
    parts = index if isinstance(index, tuple) else (index,)
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        used = sum(p is not None for p in parts if p is not Ellipsis)
        parts = parts[:at] + (slice(None),) * (len(shape) - used) + parts[at + 1:]
    parts = parts + (slice(None),) * (len(shape) - sum(p is not None for p in parts))
    offset, out_shape, out_strides, axis = 0, [], [], 0
    strides = contiguous_strides(shape)
    for part in parts:
        if part is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        size, stride = shape[axis], strides[axis]
        if isinstance(part, slice):
            start, stop, step = part.indices(size)
            out_shape.append(len(range(start, stop, step)))
            out_strides.append(stride * step)
            offset += start * stride
        else:
            if not -size <= part < size:
                raise IndexError(f"index {part} is out of bounds for axis {axis} with size {size}")
            offset += (part % size) * stride
        axis += 1
    return offset, tuple(out_shape), tuple(out_strides)


def advanced_positions(shape, index):
    """The flat source position of every element of ``array[index]``, for advanced indexing.

    NumPy's own indexing of the positions 0..size-1 gives them, with all of its rules
    (broadcast index arrays, boolean masks, where the new axes go). ``index`` holds host arrays.
    """
    size = int(np.prod(shape, dtype=np.int64))
    return np.ascontiguousarray(np.arange(size, dtype=np.int64).reshape(shape)[index])


def batch_stride(shape, batch):
    """The one element stride that steps through the flattened ``batch`` axes of a C-contiguous
    array of ``shape`` (whose last two axes are a matrix) broadcast to ``batch``; None when no
    single stride does (say (1, G) broadcast to (N, G)), and a gather is needed."""
    lead = (1,) * (len(batch) - len(shape) + 2) + tuple(shape[:-2])
    matrix = shape[-1] * shape[-2]
    if all(size == 1 for size in lead):
        return 0
    if tuple(lead) == tuple(batch):
        return matrix
    return None
