"""Segment any image with a checkpoint of train_voc_subset.py: the photo beside its label map, with a legend.

    python examples/segment.py photo.jpg --checkpoint runs/voc_subset/checkpoint.npz --output-stride 8 \\
        --scales 0.75,1,1.25 --flip --out photo_segmented.png

The class names come from the checkpoint (VOC's, or those of --class-names when it was
trained); the legend lists the classes found in the image.
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import atrousnp as anp
from atrousnp.data import read_image
from atrousnp.inference import check_scales, predict
from atrousnp.training import class_names, load_trained
from atrousnp.viz import add_legend, paint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output-stride", type=int, choices=[8, 16, 32], help="default: the training one")
    parser.add_argument("--scales", default="1.0", help="e.g. 0.75,1,1.25")
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--backend", choices=anp.backend_names(), default="numba")
    parser.add_argument("--out", type=Path, help="default: IMAGE_segmented.png in the current folder")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"no image at {args.image}")
    try:
        scales = check_scales(args.scales, "--scales")
    except ValueError as error:
        parser.error(str(error))
    anp.set_backend(args.backend)
    try:
        model, config = load_trained(args.checkpoint)
        image = read_image(args.image)
        scales = check_scales(args.scales, "--scales", image.shape[:2])
        prediction = predict(model, image, args.output_stride, scales, args.flip).argmax(axis=0).astype(np.uint8)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    out = args.out or Path(f"{args.image.stem}_segmented.png")
    names = class_names(config)
    save_segmentation(out, image, prediction, names)
    found = ", ".join(names[c] for c in np.unique(prediction) if c < len(names))
    print(f"wrote {out}: {found}")


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

if __name__ == "__main__":
    main()
