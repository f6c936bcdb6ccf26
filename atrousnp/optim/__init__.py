"""Optimisers and learning-rate schedules."""

from .adam import Adam, AdamW
from .optimizer import Optimizer
from .poly import PolyLR
from .sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "PolyLR", "SGD"]
