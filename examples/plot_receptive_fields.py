"""Draw docs/figures/receptive_fields.png: what one output pixel of DeepLabv3 looks at.

    python examples/plot_receptive_fields.py [--checkpoint runs/voc_subset/checkpoint.npz] [--out PNG]

The effective receptive field of an output pixel is the gradient of that pixel with respect
to the input image (``atrousnp.analysis.effective_receptive_field``), drawn on a log scale
with its colour bar. Top row: the logits of the small DeepLabv3 at output stride 32, 16 and 8
(the same weights). Bottom row: each ASPP branch at output stride 16, so the image pooling
branch's field is the whole image. With --checkpoint, the weights trained by
atrousnp-train, whose ASPP rates (1, 2, 3) read the image on its 96-pixel crops' 6x6 maps;
else random ones with those rates. The training crop is outlined around the centre pixel.
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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


def draw(fig, axis, field, title, crop):
    """The field on a log scale, its colour bar, and a crop x crop square around the centre."""
    image = axis.imshow(field + field.max() * 1e-6, norm=LogNorm(vmin=field.max() * 1e-2, vmax=field.max()),
                        cmap="magma")
    corner = (SIZE - crop) / 2 - 0.5
    axis.add_patch(Rectangle((corner, corner), crop, crop, fill=False, edgecolor="cyan", linewidth=0.8))
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.02)
    axis.set_title(title, fontsize=10)
    axis.axis("off")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parents[1] / "docs" / "figures" / "receptive_fields.png")
    args = parser.parse_args(argv)
    if args.checkpoint:
        model, config = load_trained(args.checkpoint)
        crop = config.crop_size
    else:
        model = anp.models.deeplabv3_small(num_classes=6, aspp_rates=(1, 2, 3), rng=np.random.default_rng(0))
        crop = 96
    shape = (1, 3, SIZE, SIZE)
    fig = Figure(figsize=(14, 5.8))
    top, bottom = fig.subplots(2, 5)
    for axis, output_stride in zip(top, (32, 16, 8)):
        model.set_output_stride(output_stride)
        draw(fig, axis, effective_receptive_field(model, shape), f"logits, output stride {output_stride}", crop)
    for axis in top[3:]:
        axis.axis("off")
    model.set_output_stride(16)
    names = ["1x1"] + [f"3x3 rate {rate}" for rate in model.classifier[0].rates] + ["image pooling"]
    for index, (axis, name) in enumerate(zip(bottom, names)):
        draw(fig, axis, effective_receptive_field(Branch(model, index), shape), f"ASPP {name}", crop)
    fig.suptitle(f"Effective receptive field of the centre pixel ({SIZE}x{SIZE} input, log scale; the "
                 f"{crop}-pixel training crop outlined)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
