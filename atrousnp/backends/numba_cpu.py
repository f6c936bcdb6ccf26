"""Numba-jitted CPU backend.

It computes on NumPy arrays, so it inherits every primitive from the NumPy backend and
replaces those where a jitted, parallel loop beats vectorised NumPy. GEMMs stay in
NumPy's BLAS, which no hand loop beats.
"""

from .numpy_backend import NumpyBackend


class NumbaBackend(NumpyBackend):
    name = "numba"
