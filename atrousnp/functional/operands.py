"""Turning what a user passes (Tensors, Python numbers, NumPy arrays) into op inputs."""


import numpy as np

from ..autograd import backend_of
from ..backends import check_dtype
from ..tensor import Tensor

IntPair = int | tuple[int, int]  # an int for both axes, or (h, w)


def as_operands(*values, op="operands"):
    """Tensors stay Tensors; numbers and arrays become constant arrays on the Tensors' backend.

    A Python number takes the dtype of the first Tensor, so ``x * 2.0`` stays float32.
    """
    like = next((v for v in values if isinstance(v, Tensor)), None)
    backend = backend_of(op, *values)
    out = []
    for v in values:
        if isinstance(v, Tensor):
            out.append(v)
        elif isinstance(v, np.ndarray) or backend.owns(v):
            check_dtype(backend, v.dtype, op)
            out.append(backend.asarray(v))
        else:
            dtype = like.dtype if like is not None else np.result_type(v, np.float32)
            out.append(backend.full((), v, dtype))
    return out


def check_floating(op, **named):
    """Refuse integer or bool inputs, and a mix of float32 and float64, in an op whose maths is
    real-valued (convolution, batch norm, averaging, bilinear resize, softmax), naming each input.

    These are atrousnp's dtype rules, as PyTorch's: uint8 convolution would wrap around (900
    becomes 132) and bool would compute a logical OR, so integers are converted explicitly; and
    a float64 batch through a float32 model is refused rather than promoting the activations,
    and then the gradients, to float64. ``None`` entries (an absent bias) are skipped."""
    dtypes = {name: t.dtype for name, t in named.items() if t is not None}
    for name, dtype in dtypes.items():
        if dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {dtype}; "
                            f"convert it first, e.g. {name}.astype('float32')")
    if len(set(dtypes.values())) > 1:
        (first, first_dtype), *rest = dtypes.items()
        other, other_dtype = next((name, dtype) for name, dtype in rest if dtype != first_dtype)
        raise TypeError(f"{op}: {first} is {first_dtype} but {other} is {other_dtype}; they must match, and a "
                        f"model's parameters keep their dtype: cast the input, e.g. "
                        f"{first}.astype('{other_dtype}')")


def check_not_empty(op, x):
    """Refuse a zero-size image batch, naming its shape (an empty batch or an empty image)."""
    if x.numel() == 0:
        raise ValueError(f"{op}: x is empty (shape {x.shape}); it needs at least one image of at least one pixel")


def scalar(backend, value, dtype):
    """A 0-d backend array: the form a scalar takes inside forward and backward."""
    return backend.full((), value, dtype)


def broadcast_shape(op, a_shape, b_shape):
    """The broadcast of two shapes, or ValueError naming the op and both shapes."""
    try:
        return np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    except ValueError:
        raise ValueError(f"{op}: shapes {tuple(a_shape)} and {tuple(b_shape)} do not broadcast "
                         "(trailing sizes must be equal or 1)") from None


def normalize_axes(op, axis, ndim):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


def torch_or_numpy(op, torch_value, numpy_value, names, default=None):
    """One argument that PyTorch and NumPy name differently (``names``: ("dim", "axis") or
    ("keepdim", "keepdims")): whichever of the two was given, else ``default``; both is an error."""
    if numpy_value is None:
        return default if torch_value is None else torch_value
    if torch_value is not None and torch_value != default:
        raise TypeError(f"{op}: give {names[0]} or {names[1]}, not both")
    return numpy_value


def as_pair(op, name, value, minimum):
    """An int or an (h, w) pair of ints, each >= minimum, as a pair; else a named error."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else \
        tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                 for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def is_positive_int(value):
    """Whether ``value`` is an int >= 1, NumPy's included, and not a bool (which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def positive_int(op, name, value):
    """``value`` if it is an int >= 1 (not a bool); else a named error."""
    if not is_positive_int(value):
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


def constant(like, array, dtype=None):
    """A Tensor holding ``array`` (host data) on the backend of the Tensor ``like``."""
    backend = backend_of("constant", like)
    return Tensor._wrap(backend.asarray(np.asarray(array, dtype)), backend)
