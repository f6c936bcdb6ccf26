"""Dropout keeps the mean, is reproducible with a seeded generator, and is the identity outside training."""

import numpy as np

import atrousnp as anp
import atrousnp.functional as F


def test_dropout_keeps_the_mean_and_is_reproducible(backend):
    x = anp.ones(100_000)
    y1 = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(5)).numpy()
    y2 = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(5)).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert abs(y1.mean() - 1.0) < 0.02 and set(np.unique(y1)) <= {0.0, np.float32(1 / 0.7)}
    assert F.dropout(x, 0.3, training=False) is x
