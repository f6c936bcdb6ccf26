"""Pictures: labels in VOC colours, overlays, image / truth / prediction grids, training curves.

Figures are drawn on ``matplotlib.figure.Figure`` and saved from it, without pyplot: drawing
never switches the matplotlib backend of the program that calls it (a notebook's stays).
"""

import numpy as np
from matplotlib.figure import Figure

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
    fig = Figure(figsize=(9, 3 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (image, truth, prediction) in enumerate(rows):
        for c, picture in enumerate((image, overlay(image, truth), overlay(image, prediction))):
            axes[r, c].imshow(picture)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(titles[c])
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_training_curves(path, history):
    """The training loss and the val mIoU against the iteration, on two axes, as one PNG.

    history: {"iteration": [...], "loss": [...], "val_iteration": [...], "val_miou": [...]}."""
    fig = Figure(figsize=(7, 4))
    loss_axis = fig.subplots()
    loss_axis.plot(history["iteration"], history["loss"], color="tab:blue", alpha=0.6, label="training loss")
    loss_axis.set_xlabel("iteration")
    loss_axis.set_ylabel("cross-entropy", color="tab:blue")
    miou_axis = loss_axis.twinx()
    miou_axis.plot(history["val_iteration"], history["val_miou"], "o-", color="tab:red", label="val mIoU")
    miou_axis.set_ylabel("val mIoU", color="tab:red")
    miou_axis.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
