"""Tensor: an n-d array of a backend, plus what autodiff needs.

``data`` is the backend's array (a NumPy array on the CPU backends). ``requires_grad``
marks a tensor whose gradient is wanted; ``grad`` receives it after ``backward()`` on
leaves (tensors made by the user rather than by an op). Operators call the
differentiable ops in ``atrousnp.functional``.
"""

import numpy as np

from .backends import backend_names, check_dtype, get_backend
from .random import generator


class Tensor:
    __array_priority__ = 1000  # ndarray + Tensor calls Tensor.__radd__, not NumPy's loop

    def __init__(self, data, requires_grad=False):
        """Prefer ``atrousnp.tensor(...)``: this wraps ``data`` as it is, on the current backend."""
        backend = get_backend()
        if not backend.owns(data):
            data = backend.asarray(np.asarray(data))
        check_dtype(backend, data.dtype, "Tensor")
        self._init(data, backend, requires_grad)

    @classmethod
    def _wrap(cls, data, backend, requires_grad=False):
        tensor = cls.__new__(cls)
        tensor._init(data, backend, requires_grad)
        return tensor

    def _init(self, data, backend, requires_grad):
        self.data = data
        self.grad = None
        self._backend = backend
        self._node = None  # the op that made this tensor; None for a leaf
        self._set_requires_grad(requires_grad)

    def _set_requires_grad(self, requires_grad):
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"requires_grad needs a floating-point tensor, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)

    # -- what it is ------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    def size(self, dim=None):
        """The shape (a tuple), or the length of axis ``dim``, as PyTorch's ``size()``."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        """The number of elements (NumPy's ``a.size``)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def backend(self) -> str:
        """The name of the backend whose array holds this tensor's data."""
        return self._backend.name

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        return self.shape[0]

    # == compares elementwise (as NumPy and PyTorch), so identity has to give the hash: a tensor
    # can still be a dict key or a set member, found as the object it is.
    __hash__ = object.__hash__

    def __bool__(self):
        """The truth of a one-element tensor; for more elements there is no single answer."""
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous: "
                             "reduce it first (t.max(), t.sum()), or compare .numpy() arrays")
        return bool(self.item())

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({self.numpy()!r}{grad}, backend={self.backend!r})"

    # -- conversion ------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data, on every backend."""
        return self._backend.to_host(self.data)

    def item(self) -> float:
        if self.numel() != 1:
            raise ValueError(f"item: the tensor has shape {self.shape}, expected one element")
        return self.numpy().reshape(()).item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, self._backend)

    def requires_grad_(self, requires_grad=True):
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only a leaf tensor can change requires_grad; use detach()")
        self._set_requires_grad(requires_grad)
        return self

    def astype(self, dtype):
        return F.astype(self, dtype)

    def float(self):
        return F.astype(self, np.float32)

    def double(self):
        return F.astype(self, np.float64)

    def to(self, target):
        """A copy on another backend (``t.to("numpy")``), or of another dtype (``t.to(np.float64)``):
        PyTorch's ``to(device)`` and ``to(dtype)``. Moving to another backend leaves the graph."""
        if isinstance(target, str) and target in backend_names():
            return tensor(self.numpy(), requires_grad=self.requires_grad, backend=target)
        return F.astype(self, target)

    def clone(self):
        """A copy that stays in the graph (its gradient flows back to this tensor)."""
        return F.mul(self, 1)

    # -- autodiff --------------------------------------------------------------
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        A scalar needs no ``gradient``; otherwise pass one of this tensor's shape (a Tensor, or
        a NumPy array, which is copied to this tensor's backend). A leaf's
        ``.grad`` is replaced, never written in place; treat its data as read-only
        (``.grad.numpy()`` gives a writable copy)."""
        if isinstance(gradient, Tensor):
            gradient = gradient.data
        elif isinstance(gradient, np.ndarray):
            gradient = self._backend.asarray(gradient)
        autograd.backward(self, gradient, retain_graph)

    def _accumulate_grad(self, grad):
        # No op writes into a gradient in place, so a leaf keeps backward's array as it is,
        # uncopied: it may be a read-only broadcast view, or shared with another leaf's grad.
        if self.grad is not None:
            grad = self._backend.zip("add", self.grad.data, grad)
        self.grad = Tensor._wrap(grad, self._backend)

    def zero_grad(self):
        self.grad = None

    # -- operators: each calls one differentiable op ---------------------------
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __pow__(self, other): return F.pow(self, other)
    def __rpow__(self, other): return F.pow(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __neg__(self): return F.neg(self)
    def __getitem__(self, index): return F.getitem(self, index)
    def __eq__(self, other): return F.compare("eq", self, other)
    def __ne__(self, other): return F.compare("ne", self, other)
    def __gt__(self, other): return F.compare("gt", self, other)
    def __ge__(self, other): return F.compare("ge", self, other)
    def __lt__(self, other): return F.compare("lt", self, other)
    def __le__(self, other): return F.compare("le", self, other)

    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def relu(self): return F.relu(self)
    def sigmoid(self): return F.sigmoid(self)
    def tanh(self): return F.tanh(self)
    # Reductions take PyTorch's dim/keepdim and NumPy's axis/keepdims alike.
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return F.sum(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return F.mean(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return F.max(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def argmax(self, dim=None, *, axis=None): return F.argmax(self, dim, axis=axis)
    def softmax(self, dim=None, *, axis=None): return F.softmax(self, dim, axis=axis)
    def permute(self, *dims): return F.permute(self, _dims(dims))
    def transpose(self, dim0, dim1): return F.transpose(self, dim0, dim1)

    def reshape(self, *shape):
        return F.reshape(self, _dims(shape))

    def view(self, *shape):
        """``reshape``: atrousnp never shares a view's memory with its base in a way that
        writes could reach, so PyTorch's view (no copy, or an error) and reshape coincide."""
        return F.reshape(self, _dims(shape))

    def flatten(self, start_dim=0, end_dim=-1):
        return F.flatten(self, start_dim, end_dim)

    @property
    def T(self):
        return F.permute(self, tuple(reversed(range(self.ndim))))


def _dims(args):
    """Accept both ``t.reshape(2, 3)`` and ``t.reshape((2, 3))``."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


# -- constructors -----------------------------------------------------------------

def tensor(data, requires_grad: bool = False, dtype=None, backend=None) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` on ``backend`` (a name; the current one if None).

    Python floats become float32 (PyTorch's default); NumPy arrays keep their dtype.
    """
    if isinstance(data, Tensor):
        data = data.numpy()
    host = np.asarray(data, dtype=dtype)
    if dtype is None and not isinstance(data, np.ndarray) and host.dtype == np.float64:
        host = host.astype(np.float32)
    backend = get_backend(backend)
    check_dtype(backend, host.dtype, "tensor")
    array = backend.asarray(host)   # a device backend copies; given the caller's array itself, a CUDA graph knows its input
    if array is host:               # a host backend keeps the memory: copy it, so that the tensor is its own
        array = array.copy()
    return Tensor._wrap(array, backend, requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor on the current backend that shares ``array``'s memory where it can (the CPU
    backends: writes to one show in the other, as with ``torch.from_numpy``); a device backend
    copies it."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a NumPy array, got {type(array).__name__}")
    backend = get_backend()
    check_dtype(backend, array.dtype, "from_numpy")
    return Tensor._wrap(backend.asarray(array), backend)


def full(shape, value: float, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    backend = get_backend()
    return Tensor._wrap(backend.full(shape, value, check_dtype(backend, dtype, "full")), backend, requires_grad)


def zeros(*shape: int, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    return full(_dims(shape), 0, dtype, requires_grad)


def ones(*shape: int, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    return full(_dims(shape), 1, dtype, requires_grad)


def randn(*shape: int, rng: np.random.Generator | None = None, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    """Standard normal samples drawn from ``rng`` (a numpy.random.Generator; the default stream, ``anp.manual_seed``, if None)."""
    rng = generator(rng)
    return tensor(rng.standard_normal(_dims(shape)).astype(dtype), requires_grad=requires_grad)


# The one import circle of the library, closed here, last: autograd and functional import this
# module's Tensor, and Tensor's methods call them.
from . import autograd  # noqa: E402
from . import functional as F  # noqa: E402
