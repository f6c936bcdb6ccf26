"""Evaluate a checkpoint written by atrousnp-train, at any output stride, scales and flips.

  atrousnp-evaluate runs/voc_subset/checkpoint.npz --output-stride 8 --scales 0.75,1,1.25 --flip

The model is rebuilt from the settings saved in the checkpoint; the data are the checkpoint's
(the synthetic set, or --voc-root) unless --voc-root is given here.
"""

import argparse
import json

from ..metrics import mean_iou, pixel_accuracy
from ..train import datasets, evaluate, load_trained, named_iou
from ..backends import set_backend
from . import HelpFormatter, add_inference_flags, announce


def main(argv=None):
    parser = argparse.ArgumentParser(prog="atrousnp-evaluate", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint.npz that atrousnp-train wrote")
    parser.add_argument("--voc-root", help="default: the checkpoint's data")
    parser.add_argument("--split", default=None, help="default: the checkpoint's val split")
    add_inference_flags(parser, "0.5,0.75,1,1.25,1.5,1.75", "also evaluate on mirrored images")
    args = parser.parse_args(argv)
    set_backend(args.backend)
    try:
        model, config = load_trained(args.checkpoint)
        if args.voc_root:
            config.voc_root = args.voc_root
        if args.split:
            config.val_split = args.split
        val_set = datasets(config)[1]
        val_set.check(config.num_classes)  # every bad file named now, not a failure halfway through
        announce(f"evaluating {args.checkpoint}", args)
        cm, _ = evaluate(model, val_set, config.num_classes, args.output_stride, args.scales, args.flip)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({"miou": mean_iou(cm), "pixel_accuracy": pixel_accuracy(cm),
                      "output_stride": args.output_stride or config.output_stride, "scales": args.scales, "flip": args.flip,
                      "per_class_iou": named_iou(cm, config.class_names)}, indent=2))


if __name__ == "__main__":
    main()
