"""Segment any image with a checkpoint of atrousnp-train: the photo beside its label map, with a legend.

  atrousnp-segment photo.jpg --checkpoint runs/voc_subset/checkpoint.npz --output-stride 8 \\
      --scales 0.75,1,1.25 --flip --out photo_segmented.png

The class names come from the checkpoint (VOC's, or those of --class-names when it was
trained); the legend lists the classes found in the image.
"""

import argparse
from pathlib import Path

import numpy as np

from ..data import read_image
from ..inference import check_scales, predict
from ..train import load_trained
from ..viz import save_segmentation
from ..backends import set_backend
from . import HelpFormatter, add_inference_flags, announce


def main(argv=None):
    parser = argparse.ArgumentParser(prog="atrousnp-segment", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("image", type=Path, help="a JPEG or PNG (8- or 16-bit, colour or greyscale)")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.npz that atrousnp-train wrote")
    add_inference_flags(parser, "0.75,1,1.25", "also segment the mirrored image")
    parser.add_argument("--out", type=Path, help="default: IMAGE_segmented.png in the current folder")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"no image at {args.image}")
    set_backend(args.backend)
    try:
        model, config = load_trained(args.checkpoint)
        image = read_image(args.image)
        scales = check_scales(args.scales, "--scales", image.shape[:2])  # here, so that a refusal is one line
        announce(f"segmenting {args.image}", args)
        prediction = predict(model, image, args.output_stride, scales, args.flip).argmax(axis=0).astype(np.uint8)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    out = args.out or Path(f"{args.image.stem}_segmented.png")
    names = config.class_names
    save_segmentation(out, image, prediction, names)
    found = ", ".join(names[c] for c in np.unique(prediction) if c < len(names))
    print(f"wrote {out}: {found}")


if __name__ == "__main__":
    main()
