"""Promises about how the library behaves as a whole: it leaves the caller's global state alone,
ops run where their data lives, every backend offers the whole primitive set, and comparison
operators work elementwise as in NumPy and PyTorch."""

import matplotlib
import numpy as np
import pytest

import atrousnp as anp
from atrousnp import viz


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # as a notebook would have its own
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        label = np.zeros((8, 8), np.uint8)
        viz.save_prediction_grid(tmp_path / "grid.png", [(image, label, label)])
        viz.save_training_curves(tmp_path / "curves.png", {"iteration": [1, 2], "loss": [1.0, 0.5],
                                                           "val_iteration": [2], "val_miou": [0.3]})
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "grid.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size > 0
    finally:
        matplotlib.use(previous)
