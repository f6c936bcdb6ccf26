"""Reverse-mode automatic differentiation.

An op is a ``Function`` subclass with two static methods on raw backend arrays:

* ``forward(ctx, *arrays, **params) -> array``
* ``backward(ctx, grad) -> one gradient per array input (None where not needed)``

``Function.apply`` runs forward and, when any input requires a gradient, records the
output's parents and ``ctx``. ``backward(root)`` then visits the recorded graph once,
children before parents (reverse topological order), applying the chain rule
``dL/dinput = backward(ctx, dL/doutput)`` and summing the gradients of a tensor used twice.
"""

import contextlib

import numpy as np

from .backends import get_backend
from .tensor import Tensor

_grad_enabled = True


def is_grad_enabled():
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Within this block (or decorated function) ops record no graph."""

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False


inference_mode = no_grad  # PyTorch's stricter inference mode; here the same as no_grad


class Context:
    """What forward leaves for backward: saved arrays and any plain attributes."""

    def __init__(self, backend, needs_input_grad):
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.saved = ()
        self.freed = False

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    """The record of one op in the graph: its function, context and input tensors."""

    __slots__ = ("function", "ctx", "parents")

    def __init__(self, function, ctx, parents):
        self.function, self.ctx, self.parents = function, ctx, parents


class Function:
    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on Tensors (or raw arrays, which are constants; or None) and record it.

        It runs on its Tensors' backend (``backend_of``). ``ctx.needs_input_grad`` is False for
        every input under ``no_grad``, so a forward pass can skip what only backward needs."""
        backend = backend_of(cls.__name__, *inputs)
        arrays = [None if x is None else _data_for(backend, x, cls.__name__) for x in inputs]
        tensors = [x if isinstance(x, Tensor) else None for x in inputs]
        needs = tuple(_grad_enabled and t is not None and t.requires_grad for t in tensors)
        record = any(needs)
        ctx = Context(backend, needs)
        out = Tensor._wrap(cls.forward(ctx, *arrays, **params), backend, requires_grad=record)
        if record:
            out._node = Node(cls, ctx, tensors)
        return out


def backend_of(op_name, *values):
    """The backend an op on ``values`` runs on: the one its Tensors live on, which they must
    share (as in PyTorch, where a CPU and a GPU tensor do not mix); the current backend
    (``set_backend``) only when no value is a Tensor. ``set_backend`` chooses where new data goes."""
    backends = {id(v._backend): v._backend for v in values if isinstance(v, Tensor)}
    if len(backends) > 1:
        names = " and ".join(sorted(repr(b.name) for b in backends.values()))
        raise TypeError(f"{op_name}: its inputs live on different backends ({names}); an op runs where its "
                        "inputs are, so make them under one backend (atrousnp.use_backend)")
    return next(iter(backends.values())) if backends else get_backend()


def _data_for(backend, x, op_name):
    data = x.data if isinstance(x, Tensor) else x
    if not backend.owns(data):
        raise TypeError(f"{op_name}: an input of type {type(data).__name__} cannot be used on "
                        f"backend {backend.name!r}; create it with atrousnp.tensor() under that backend")
    return data


def _topological_order(root):
    """Every recorded tensor that ``root`` depends on, each after all of its parents.

    Iterative depth-first search, so a chain of any length needs no recursion.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, parents_done = stack.pop()
        if parents_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            for parent in tensor._node.parents:
                if parent is not None and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root, gradient=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires it."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no graph")
    backend = root._backend
    if gradient is None:
        if root.data.size != 1:
            raise ValueError(f"backward: the output has shape {tuple(root.shape)}; pass "
                             "gradient= (an array of that shape) for a non-scalar output")
        gradient = backend.full(root.shape, 1.0, root.dtype)
    else:
        gradient = _data_for(backend, gradient, "backward")
        if tuple(gradient.shape) != tuple(root.shape):
            raise ValueError(f"backward: gradient has shape {tuple(gradient.shape)}, "
                             f"expected the output's shape {tuple(root.shape)}")
        if np.dtype(gradient.dtype).kind != "f":
            raise TypeError(f"backward: gradient must be floating point, got dtype {gradient.dtype}")
        gradient = backend.astype(gradient, root.data.dtype)

    grads = {id(root): gradient}
    for tensor in reversed(_topological_order(root)):
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        node = tensor._node
        if node is None:
            tensor._accumulate_grad(grad)
            continue
        if node.ctx.freed:
            raise RuntimeError("backward: this graph was already used and freed; "
                               "call backward(retain_graph=True) the first time")
        input_grads = node.function.backward(node.ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(node.parents, input_grads):
            if parent is None or not parent.requires_grad or parent_grad is None:
                continue
            if parent_grad.dtype != parent.data.dtype:
                # A gradient has its tensor's dtype (as in PyTorch): float32 * float64 makes a
                # float64 product, but the float32 factor's gradient, and so a float32
                # parameter's .grad and its SGD update, stay float32.
                parent_grad = backend.astype(parent_grad, parent.data.dtype)
            previous = grads.get(id(parent))
            grads[id(parent)] = parent_grad if previous is None else backend.zip("add", previous, parent_grad)
        if not retain_graph:
            node.ctx.saved, node.ctx.freed = (), True


def unbroadcast(backend, grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting.

    Broadcasting copies a value along new leading axes and along axes of length 1,
    so the gradient of that value is the sum over those axes.
    """
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    leading = grad.ndim - len(shape)
    axes = tuple(range(leading)) + tuple(
        leading + i for i, size in enumerate(shape) if size == 1 and grad.shape[leading + i] != 1)
    summed = backend.reduce("sum", grad, axes, keepdims=False) if axes else grad
    return backend.reshape(summed, shape)

