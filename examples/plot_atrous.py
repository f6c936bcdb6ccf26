"""Draw docs/figures/atrous_convolution.png: 3x3 kernels at rates 1, 2, 4, and im2col's layout.

    python examples/plot_atrous.py [--out docs/figures/atrous_convolution.png]

The im2col panel is computed by atrousnp itself, on an image whose pixels hold their own
index, so each column shows exactly which pixels one output reads.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import atrousnp as anp  # noqa: E402


def draw_kernel(ax, rate, size=9):
    """The 3x3 taps of a rate-``rate`` kernel centred on a size x size grid."""
    grid = np.zeros((size, size))
    centre = size // 2
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            grid[centre + i * rate, centre + j * rate] = 1
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1.3)
    ax.set_xticks(np.arange(-0.5, size), minor=True)
    ax.set_yticks(np.arange(-0.5, size), minor=True)
    ax.grid(which="minor", color="0.8")
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    span = 2 * rate + 1
    ax.set_title(f"rate {rate}: 9 weights,\nfield of view {span}x{span}")


def draw_im2col(ax, size=5, rate=2):
    """cols for a 1-channel size x size image, 3x3 kernel, padding = rate (output = input)."""
    image = np.arange(size * size, dtype=np.float64).reshape(1, 1, size, size)
    backend = anp.get_backend()
    cols = backend.to_host(backend.im2col(backend.asarray(image), (3, 3), (1, 1), (rate, rate), (rate, rate)))
    ax.imshow(np.where(_is_padding(size, rate), np.nan, cols), cmap="viridis", aspect="auto")
    for (r, c), value in np.ndenumerate(cols):
        label = "pad" if _is_padding(size, rate)[r, c] else f"{int(value)}"
        ax.text(c, r, label, ha="center", va="center", fontsize=6, color="w" if label != "pad" else "0.4")
    ax.set_xlabel("column = output pixel (oh, ow)")
    ax.set_ylabel("row = kernel tap (i, j)")
    ax.set_yticks(range(9), [f"({i},{j})" for i in range(3) for j in range(3)])
    ax.set_title(f"im2col of a {size}x{size} image (pixels numbered), 3x3 kernel, rate {rate}, padding {rate}:\n"
                 "output = W (1x9) @ cols (9x25); each column is one dilated patch")


def _is_padding(size, rate):
    """True where a tap of an output pixel falls outside the image (it reads a padding zero)."""
    mask = np.zeros((9, size * size), bool)
    for i in range(3):
        for j in range(3):
            for oh in range(size):
                for ow in range(size):
                    y, x = oh + (i - 1) * rate, ow + (j - 1) * rate
                    mask[i * 3 + j, oh * size + ow] = not (0 <= y < size and 0 <= x < size)
    return mask


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/atrous_convolution.png"))
    args = parser.parse_args()
    fig = plt.figure(figsize=(12, 7.5))
    top = fig.add_gridspec(2, 3, height_ratios=[1, 1.3])
    for k, rate in enumerate((1, 2, 4)):
        draw_kernel(fig.add_subplot(top[0, k]), rate)
    draw_im2col(fig.add_subplot(top[1, :]))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
