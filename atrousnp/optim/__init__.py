"""Optimisers and learning-rate schedules."""

from .poly import PolyLR
from .sgd import SGD

__all__ = ["PolyLR", "SGD"]
