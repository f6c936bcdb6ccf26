"""Per-element rules that both the Numba CPU kernels and the CUDA kernels compile, written once.

Each is plain Python on scalars. ``numba_cpu.py`` compiles it with ``njit`` and the CUDA
backend with ``cuda.jit(device=True)``; each kernel only loops over elements and calls it.
"""


def sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """(new parameter, new momentum buffer) of one element under PyTorch's SGD rule (the
    readable, whole-array form is ``Backend.sgd_step`` in base.py). ``first``: the buffer is new."""
    g = grad + weight_decay * param
    if momentum != 0:
        buf = g if first else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return param - lr * g, buf
