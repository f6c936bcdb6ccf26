"""Pictures: label maps in colours told apart, prediction grids with their errors, training curves.

Figures are drawn on ``matplotlib.figure.Figure`` and saved from it, without pyplot: drawing
never switches the matplotlib backend of the program that calls it (a notebook's stays).
"""

import matplotlib
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .analysis import VALID_TAP_COUNTS, feature_map_size, scaled_rates, valid_tap_shares
from .data.palette import IGNORE_INDEX
from .metrics import confusion_matrix, mean_iou


BACKGROUND = (0.15, 0.15, 0.15)   # class 0: near-black, so that every object stands out against it
IGNORED = (1.0, 1.0, 1.0)          # the ignore label: white, drawn and named in the legend
WRONG = (1.0, 0.0, 1.0)            # a pixel predicted wrongly, in the error column: magenta, no class's colour


# After matplotlib's tab10, ten more picked greedily from its qualitative maps, each as far as
# possible from the colours before it (no two of the 22 closer than 0.26 in RGB).
MORE_COLOURS = ("#dbdb8d", "#9edae5", "#f0027f", "#ffff33", "#393b79", "#fb8072", "#7fc97f", "#1b9e77", "#6baed6",
                "#f7b6d2")


def class_colours(num_classes):
    """(num_classes, 3) RGB floats in [0, 1]: background near-black, then colours chosen to be
    told apart (VOC's own palette gives cats, aeroplanes and background three near-blacks)."""
    ordered = list(matplotlib.colormaps["tab10"].colors) + [to_rgb(c) for c in MORE_COLOURS]
    return np.array([BACKGROUND] + [ordered[(c - 1) % len(ordered)] for c in range(1, num_classes)])


def paint(label, num_classes):
    """Class indices (H, W) -> RGB uint8 (H, W, 3): each class its solid colour, ignored pixels white."""
    label = np.asarray(label)
    colours = np.vstack([class_colours(num_classes), IGNORED])
    index = np.where(label == IGNORE_INDEX, num_classes, np.minimum(label, num_classes))
    return (colours[index] * 255).round().astype(np.uint8)


def paint_errors(image, truth, prediction):
    """The image faded to grey, wrong pixels magenta, ignored pixels white: where the prediction fails."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) / 255
    picture = np.repeat(0.55 + 0.35 * grey, 3, axis=2)
    truth = np.asarray(truth)
    picture[(truth != IGNORE_INDEX) & (truth != prediction)] = WRONG
    picture[truth == IGNORE_INDEX] = IGNORED
    return (picture * 255).round().astype(np.uint8)


def image_miou(truth, prediction, num_classes):
    """One image's mIoU over the classes in its truth or prediction (ignored pixels left out)."""
    return mean_iou(confusion_matrix(prediction, truth, num_classes))


def save_prediction_grid(path, rows, class_names):
    """rows: [(image, truth, prediction), ...] -> one PNG, a row per image: the image, the truth
    and the prediction as solid label maps, and the errors, titled with the image's mIoU;
    under it a legend of every colour drawn (the classes present, background, ignore, error)."""
    n = len(class_names)
    fig = Figure(figsize=(10, 2.6 * len(rows) + 0.9))
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for r, (image, truth, prediction) in enumerate(rows):
        pictures = (image, paint(truth, n), paint(prediction, n), paint_errors(image, truth, prediction))
        titles = ("image", "ground truth", "prediction", f"errors (mIoU {image_miou(truth, prediction, n):.2f})")
        for axis, picture, title in zip(axes[r], pictures, titles):
            axis.imshow(picture, interpolation="nearest")
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    labels = [label for _, *pair in rows for label in pair]
    add_legend(fig, labels, class_names, errors=True)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=100)


def add_legend(fig, labels, class_names, errors=False):
    """A row of swatches under ``fig``: each class that occurs in ``labels`` (arrays of class
    indices), named, then the ignore label if it occurs, then the error colour if asked."""
    present = np.unique(np.concatenate([np.ravel(label) for label in labels]))
    colours = class_colours(len(class_names))
    handles = [Patch(facecolor=colours[c], edgecolor="grey", label=class_names[c]) for c in present
               if c < len(class_names)]
    if IGNORE_INDEX in present:
        handles.append(Patch(facecolor=IGNORED, edgecolor="grey", label=f"ignored ({IGNORE_INDEX})"))
    if errors:
        handles.append(Patch(facecolor=WRONG, edgecolor="grey", label="wrong"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False, fontsize=9)


def save_segmentation(path, image, prediction, names):
    """The photo and, beside it, its label map in solid colours, with a legend of the classes found."""
    height = 4 * image.shape[0] / image.shape[1]
    fig = Figure(figsize=(8, height + 1.4))
    for axis, picture, title in zip(fig.subplots(1, 2), (image, paint(prediction, len(names))),
                                    ("image", "segmentation")):
        axis.imshow(picture, interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    add_legend(fig, [prediction], names)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=100)


# (map size, the rates used on it): the paper's ASPP at output stride 8 (65x65 from 513-pixel crops)
# and 16 (33x33), and the miniature's rates, scaled as training scales them, on the 6x6 map of a
# 96-pixel crop at output stride 16.
FIGURE4_PANELS = ((65, (12, 24, 36)), (33, (6, 12, 18)),
                  (feature_map_size(96, 16), scaled_rates((6, 12, 18), feature_map_size(96, 16))))


def save_valid_taps(path, panels=FIGURE4_PANELS):
    """The paper's Figure 4, one panel per map size: the share of output positions at which a
    3x3 filter has 1, 4 or 9 taps on real input, against the atrous rate (``valid_tap_shares``),
    with the rates used on that map marked. A rate of half the map leaves no position all nine
    taps; a rate as large as the map leaves only the centre tap, a 1x1 filter."""
    fig = Figure(figsize=(4.6 * len(panels), 3.8))
    for axis, (size, used) in zip(fig.subplots(1, len(panels), sharey=True, squeeze=False)[0], panels):
        rates = list(range(1, max(size + size // 4, max(used)) + 1))
        shares = valid_tap_shares(size, rates)
        for count in VALID_TAP_COUNTS:
            axis.plot(rates, shares[count], label=f"{count} valid weight{'s' if count > 1 else ''}")
        for rate in used:
            axis.axvline(rate, color="black", linestyle="--", linewidth=0.8)
        axis.set_title(f"{size}x{size} map; rates {', '.join(map(str, used))} dashed", fontsize=10)
        axis.set_xlabel("atrous rate")
        axis.legend(fontsize=8)
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
