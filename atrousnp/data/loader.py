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
    pairs = [transform(*dataset[i], rng) for i in indices]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
