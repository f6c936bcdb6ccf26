"""Draw the paper's Figure 4 from atrousnp's own im2col: docs/figures/figure4.png.

    python examples/plot_figure4.py [--out docs/figures/figure4.png]

For each atrous rate, the share of a map's output positions at which a 3x3 filter has 1, 4
or 9 of its taps on real input rather than padding, on 65x65 and 33x33 maps
(``atrousnp.analysis``). Past half the map's size only the centre tap is left.
"""

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from atrousnp.analysis import VALID_TAP_COUNTS, valid_tap_shares


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "figures" / "figure4.png")
    args = parser.parse_args(argv)
    rates = list(range(1, 81))
    fig = Figure(figsize=(10, 3.8))
    for axis, size in zip(fig.subplots(1, 2, sharey=True), (65, 33)):
        shares = valid_tap_shares(size, rates)
        for count in VALID_TAP_COUNTS:
            axis.plot(rates, shares[count], label=f"{count} valid weight{'s' if count > 1 else ''}")
        axis.axvline(size / 2, color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"3x3 filter on a {size}x{size} feature map")
        axis.set_xlabel("atrous rate")
        axis.legend()
    fig.axes[0].set_ylabel("share of output positions")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
