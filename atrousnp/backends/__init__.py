"""Backend registry: which primitive set the next op runs on.

``set_backend(name)`` switches for the rest of the program, ``use_backend(name)`` for
a ``with`` block. Backends are built on first use, so importing atrousnp never
compiles a kernel it does not need.
"""

import contextlib

import numpy as np

from .primitives import Backend


def _numpy():
    from .numpy import NumpyBackend
    return NumpyBackend()


def _numba():
    from .numba import NumbaBackend
    return NumbaBackend()


def _cuda():
    try:
        from .cuda import CudaBackend
    except Exception as error:  # no numba-cuda, or one that this NumPy breaks
        raise RuntimeError(
            f"the cuda backend could not import numba.cuda ({type(error).__name__}: {error}). Install the "
            "extra that matches your driver: pip install -e '.[cuda12]' (CUDA 12 drivers) or '.[cuda13]' "
            "(CUDA 13); each brings numba-cuda with its compiler and runtime, and a NumPy it works with "
            "(numba-cuda 0.30 fails on NumPy 2.5, which removed np.row_stack)") from error
    return CudaBackend()


_FACTORIES = {"numpy": _numpy, "numba": _numba, "cuda": _cuda}
_built = {}
_current = "numba"


def backend_names():
    return tuple(_FACTORIES)


def get_backend(name=None):
    """The backend object called ``name``, or the current one when name is None."""
    name = _current if name is None else name
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; valid names are {', '.join(map(repr, _FACTORIES))}")
    if name not in _built:
        _built[name] = _FACTORIES[name]()
    return _built[name]


def set_backend(name):
    """Make ``name`` ("numpy", "numba" or "cuda") the backend of every op from now on."""
    global _current
    get_backend(name)  # validates the name and builds the backend now, not mid-graph
    _current = name


def check_dtype(backend, dtype, what):
    """Refuse, naming ``what``, a floating-point dtype that ``backend`` does not compute in
    (float16 outside the numpy backend), before a kernel fails on it deep in a traceback."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype not in backend.float_dtypes:
        names = " and ".join(d.name for d in backend.float_dtypes)
        raise TypeError(f"{what}: the {backend.name} backend computes in {names}, not {dtype}; cast with "
                        ".astype('float32') (the numpy backend also runs float16)")
    return dtype


@contextlib.contextmanager
def use_backend(name):
    """Run the ``with`` block on backend ``name``, then restore the previous one."""
    previous = _current
    set_backend(name)
    try:
        yield get_backend(name)
    finally:
        set_backend(previous)


__all__ = ["Backend", "backend_names", "check_dtype", "get_backend", "set_backend", "use_backend"]
