"""The default random stream: what draws when no ``rng`` is given (initial weights, ``randn``,
dropout masks). ``anp.manual_seed(seed)`` makes it reproducible, as ``torch.manual_seed`` does.

Every function that draws also takes an ``rng`` (a ``numpy.random.Generator``) of its own:
the training example passes one per purpose, so that two experiments can share one stream
(the batches) while differing in another (the weights).
"""

import numpy as np

_default = np.random.default_rng()


def manual_seed(seed):
    """Restart the default stream from ``seed``; returns its Generator."""
    global _default
    _default = np.random.default_rng(seed)
    return _default


def generator(rng=None):
    """``rng`` if one is given, else the default stream."""
    return _default if rng is None else rng
