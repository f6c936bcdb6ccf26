"""Finite-difference check of backward() in float64."""

import numpy as np

from .autograd import no_grad
from .tensor import Tensor, tensor


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare backward() of ``fn(*inputs)`` with central differences; True or AssertionError.

    A random projection ``L = sum(v * fn(x))`` turns any output into a scalar, and for every
    element x_i of every input that requires a gradient

        dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps).

    Inputs are copied to float64 first, so rounding stays far below ``atol``. A failure
    names the input, the worst element and both values.
    """
    inputs = [x if isinstance(x, Tensor) else tensor(x) for x in inputs]
    hosts = [x.numpy().astype(np.float64) if _is_float(x) else x.numpy() for x in inputs]
    leaves = [tensor(h, requires_grad=x.requires_grad) for h, x in zip(hosts, inputs)]
    if not any(leaf.requires_grad for leaf in leaves):
        raise ValueError("gradcheck: no input has requires_grad=True")

    out = fn(*leaves)
    projection = np.random.default_rng(seed).standard_normal(out.shape)
    (out * tensor(projection)).sum().backward()

    def loss(arrays):
        with no_grad():
            return float(np.sum(fn(*(tensor(a) for a in arrays)).numpy() * projection))

    for k, leaf in enumerate(leaves):
        if not leaf.requires_grad:
            continue
        analytic = np.zeros(leaf.shape) if leaf.grad is None else leaf.grad.numpy()
        numeric = _central_differences(loss, hosts, k, eps)
        error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if error.size and error.max() > 0:
            worst = np.unravel_index(np.argmax(error), error.shape)
            raise AssertionError(
                f"gradcheck failed for input {k} of shape {leaf.shape} at element {worst}: "
                f"backward gives {analytic[worst]:.8g}, finite differences give {numeric[worst]:.8g} "
                f"(atol={atol}, rtol={rtol})")
    return True


def _central_differences(loss, hosts, k, eps):
    shifted = [h.copy() for h in hosts]  # one copy; each element is moved and put back in turn
    x = shifted[k]
    numeric = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + eps
        plus = loss(shifted)
        x[i] = original - eps
        minus = loss(shifted)
        x[i] = original
        numeric[i] = (plus - minus) / (2 * eps)
    return numeric


def _is_float(x):
    return np.issubdtype(x.dtype, np.floating)
