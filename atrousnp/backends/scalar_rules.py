"""Per-element rules written once for every backend.

Each is plain Python in NumPy's terms, so the NumPy backend applies it to whole arrays as it
stands, the Numba backend compiles SGD's with ``njit`` for its fused update (``numba/kernels.py``)
and the CUDA backend compiles each with ``cuda.jit(device=True)`` (numba-cuda compiles np.tanh, np.maximum and comparisons for a GPU).
"""

import numpy as np


def sigmoid(a, one=1.0):
    """1 / (1 + exp(-a)), computed as 0.5 * (1 + tanh(a / 2)), which never overflows.

    ``one`` is 1 in the arithmetic's type: NumPy keeps a float32 array float32 whatever Python
    number meets it, but numba types a Python literal as float64 and would compute a float32
    kernel in float64 (the CUDA backend passes ``type(a)(1)``)."""
    half = one / (one + one)
    return half * (one + np.tanh(half * a))


def relu(a):
    """max(a, 0)."""
    return np.maximum(a, 0)


def step(a):
    """a > 0: ReLU's derivative (a boolean; a backend stores it in a's dtype)."""
    return np.maximum(a, 0) > 0


def sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """(new parameter, new momentum buffer) of one element under PyTorch's SGD rule, for the fused
    kernels (its readable form is ``optim.sgd.sgd_update``, which tests hold this to). ``first``:
    the buffer is new."""
    g = grad + weight_decay * param
    if momentum != 0:
        buf = g if first else momentum * buf + (type(g)(1) - dampening) * g     # 1 in g's type (see sigmoid)
        g = g + momentum * buf if nesterov else buf
    return param - lr * g, buf
