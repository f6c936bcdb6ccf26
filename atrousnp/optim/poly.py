"""The "poly" learning-rate schedule of DeepLab: lr = base_lr * (1 - iter / max_iter) ** power."""

import numbers

import numpy as np

from ..functional.operands import positive_int


class PolyLR:
    """Call ``step()`` once per iteration, after ``optimizer.step()``."""

    def __init__(self, optimizer, max_iter, power=0.9):
        """The base rates are the optimiser's rates now, at construction, one per parameter group."""
        positive_int("PolyLR", "max_iter", max_iter)
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not np.isfinite(power) or power < 0:
            raise ValueError(f"PolyLR: power must be a finite number >= 0, got {power!r}")
        self.optimizer, self.max_iter, self.power = optimizer, max_iter, power
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.set_iteration(0)

    def step(self):
        self.set_iteration(self.iteration + 1)

    def set_iteration(self, iteration):
        """Jump to ``iteration`` (resuming a run): the rate depends on nothing else."""
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)) or iteration < 0:
            raise ValueError(f"PolyLR: iteration must be an int >= 0, got {iteration!r}")
        self.iteration = iteration
        self._apply()

    def get_lr(self):
        """Each group's rate at the current iteration."""
        factor = (1 - min(self.iteration, self.max_iter) / self.max_iter) ** self.power
        return [base_lr * factor for base_lr in self.base_lrs]

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
