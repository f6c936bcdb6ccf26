"""Pictures: labels in VOC colours, overlays, image / truth / prediction grids, training curves.

Figures are drawn on ``matplotlib.figure.Figure`` and saved from it, without pyplot: drawing
never switches the matplotlib backend of the program that calls it (a notebook's stays).
"""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .analysis import VALID_TAP_COUNTS, valid_tap_shares
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


def save_prediction_grid(path, rows, titles=("image", "ground truth", "prediction"), class_names=None):
    """rows: [(image, truth, prediction), ...] -> one PNG, a row per image; with ``class_names``
    (one per class index), a legend of the colours of the classes that appear in the rows."""
    fig = Figure(figsize=(9, 3 * len(rows) + (0.8 if class_names else 0)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (image, truth, prediction) in enumerate(rows):
        for c, picture in enumerate((image, overlay(image, truth), overlay(image, prediction))):
            axes[r, c].imshow(picture)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(titles[c])
    if class_names:
        present = np.unique(np.concatenate([np.ravel(label) for _, *labels in rows for label in labels]))
        add_legend(fig, [c for c in present if c < len(class_names)], class_names)
    fig.tight_layout(rect=(0, 0.8 / fig.get_figheight() if class_names else 0, 1, 1))
    fig.savefig(path, dpi=100)


def add_legend(fig, classes, class_names):
    """A row of colour swatches under ``fig``, one per class index in ``classes``, named."""
    handles = [Patch(color=voc_palette()[c] / 255, label=class_names[c]) for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)


def save_valid_taps(path, sizes=(65, 33), rates=range(1, 81)):
    """The paper's Figure 4, one panel per map size: the share of output positions at which a
    3x3 filter has 1, 4 or 9 taps on real input, against the atrous rate (``valid_tap_shares``)."""
    rates = list(rates)
    fig = Figure(figsize=(5 * len(sizes), 3.8))
    for axis, size in zip(fig.subplots(1, len(sizes), sharey=True, squeeze=False)[0], sizes):
        shares = valid_tap_shares(size, rates)
        for count in VALID_TAP_COUNTS:
            axis.plot(rates, shares[count], label=f"{count} valid weight{'s' if count > 1 else ''}")
        axis.axvline(size / 2, color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"3x3 filter on a {size}x{size} feature map")
        axis.set_xlabel("atrous rate")
        axis.legend()
    fig.axes[0].set_ylabel("share of output positions")
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
