"""Helpers shared by the test modules."""

import numpy as np

from atrousnp.train import TrainConfig


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


def tiny_train_config(tmp_path, **overrides):
    """A training run small enough for a test: a tiny synthetic set, 6 iterations on NumPy,
    an evaluation and a checkpoint every 3, no progress bar; ``overrides`` change any setting."""
    settings = dict(data_dir=str(tmp_path / "data"), synthetic_train=8, synthetic_val=3, synthetic_size=40,
                    crop_size=40, batch_size=4, iterations=6, lr=0.02, eval_every=3, checkpoint_every=3,
                    backend="numpy", out=str(tmp_path / "run"), progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)
