"""Pictures: labels in VOC colours, overlays, and image / truth / prediction grids."""

import numpy as np

from .data.palette import IGNORE_INDEX, voc_palette


def colorize(label):
    """Class indices (H, W) -> RGB uint8 (H, W, 3) in VOC's palette (255 = ignore is off-white)."""
    return voc_palette()[np.asarray(label, np.uint8)]


def overlay(image, label, alpha=0.5):
    """The image with the label's colours blended over it (ignored pixels left as they are)."""
    colours = colorize(label).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    keep = (np.asarray(label) == 0) | (np.asarray(label) == IGNORE_INDEX)
    blended[keep] = image[keep]
    return blended.astype(np.uint8)


def save_prediction_grid(path, rows, titles=("image", "ground truth", "prediction")):
    """rows: [(image, truth, prediction), ...] -> one PNG, a row per image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for r, (image, truth, prediction) in enumerate(rows):
        for c, picture in enumerate((image, overlay(image, truth), overlay(image, prediction))):
            axes[r, c].imshow(picture)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(titles[c])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
