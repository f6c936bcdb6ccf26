"""Draw docs/figures/receptive_fields.png: what one output pixel of DeepLabv3 looks at.

    python examples/plot_receptive_fields.py [--checkpoint runs/voc_subset/checkpoint.npz] [--out PNG]

The effective receptive field of an output pixel is the gradient of that pixel with respect
to the input image (``atrousnp.analysis.effective_receptive_field``), drawn on a log scale.
Top row: the logits of the small DeepLabv3 at output stride 32, 16 and 8 (the same weights).
Bottom row: each ASPP branch at output stride 16, so the image pooling branch's field is the
whole image. With --checkpoint, the weights trained by train_voc_subset.py; else random ones.
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

import atrousnp as anp
from atrousnp.analysis import effective_receptive_field
from atrousnp.train import load_trained

SIZE = 193  # an odd input, so that the centre pixel is one pixel


class Branch(anp.nn.Module):
    """The backbone, then one ASPP branch: that branch's features for the image."""

    def __init__(self, model, index):
        super().__init__()
        self.backbone, self.branch = model.backbone, model.classifier[0].convs[index]

    def forward(self, x):
        return self.branch(self.backbone(x))


def draw(axis, field, title):
    axis.imshow(field + field.max() * 1e-6, norm=LogNorm(vmin=field.max() * 1e-2, vmax=field.max()), cmap="magma")
    axis.set_title(title, fontsize=10)
    axis.axis("off")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parents[1] / "docs" / "figures" / "receptive_fields.png")
    args = parser.parse_args(argv)
    if args.checkpoint:
        model, _ = load_trained(args.checkpoint)
    else:
        model = anp.models.deeplabv3_small(num_classes=21, rng=np.random.default_rng(0))
    shape = (1, 3, SIZE, SIZE)
    fig = Figure(figsize=(12, 5.6))
    top, bottom = fig.subplots(2, 5)
    for axis, output_stride in zip(top, (32, 16, 8)):
        model.set_output_stride(output_stride)
        draw(axis, effective_receptive_field(model, shape), f"logits, output stride {output_stride}")
    for axis in top[3:]:
        axis.axis("off")
    model.set_output_stride(16)
    names = ["1x1"] + [f"3x3 rate {rate}" for rate in model.classifier[0].rates] + ["image pooling"]
    for index, (axis, name) in enumerate(zip(bottom, names)):
        draw(axis, effective_receptive_field(Branch(model, index), shape), f"ASPP {name}")
    fig.suptitle(f"Effective receptive field of the centre pixel ({SIZE}x{SIZE} input, log scale)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
