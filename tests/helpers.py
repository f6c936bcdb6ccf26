"""Helpers shared by the test modules."""

import numpy as np


def random_array(rng, shape, low=None, high=None, away_from=None):
    """float64 samples: standard normal, or uniform in [low, high); optionally kept
    at least 1e-2 from ``away_from`` (a kink, such as relu's at 0)."""
    if low is None:
        a = rng.standard_normal(shape)
    else:
        a = rng.uniform(low, high, shape)
    if away_from is not None:
        near = np.abs(a - away_from) < 1e-2
        a[near] = away_from + np.where(a[near] >= away_from, 1e-2, -1e-2)
    return a
