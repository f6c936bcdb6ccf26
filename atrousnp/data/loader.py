"""Random training batches, reproducible from the Generator that draws them."""

import numpy as np


def random_batch(dataset, transform, batch_size, rng):
    """(images float32 (N, 3, c, c), labels int64 (N, c, c)): N images, augmented; distinct
    unless the dataset has fewer than N (then some repeat, each augmented differently).

    Drawing each batch afresh from ``rng`` (rather than walking a shuffled epoch) makes the
    Generator's state the whole of the loader's state, so a checkpoint that saves it resumes
    the exact same sequence of batches.
    """
    indices = rng.choice(len(dataset), size=batch_size, replace=len(dataset) < batch_size)
    return _stack([transform(*dataset[i], rng) for i in indices])


def keyed_batch(dataset, transform, batch_size, seed, iteration, positions):
    """The items at ``positions`` of global batch number ``iteration``, as random_batch's pair.

    The images are chosen by a Generator seeded with (seed, iteration), and the item at position
    p is augmented by one seeded with (seed, iteration, p). No state is carried from batch to
    batch, so any process makes any share of any batch by itself: K processes, each making 1/K
    of the positions, make together exactly the batch that one process makes (data-parallel
    training, ``atrousnp.parallel``), and resuming needs only the iteration.
    """
    chooser = np.random.default_rng([seed, iteration])
    indices = chooser.choice(len(dataset), size=batch_size, replace=len(dataset) < batch_size)
    return _stack([transform(*dataset[indices[p]], np.random.default_rng([seed, iteration, p])) for p in positions])


def _stack(pairs):
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
