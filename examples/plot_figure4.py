"""Draw the paper's Figure 4 from atrousnp's own im2col: docs/figures/figure4.png.

    python examples/plot_figure4.py [--out docs/figures/figure4.png]

For each atrous rate, the share of a map's output positions at which a 3x3 filter has 1, 4
or 9 of its taps on real input rather than padding (``atrousnp.analysis``), on the paper's
65x65 and 33x33 maps and on the miniature's 6x6, with the rates used on each marked. From a
rate of half the map's size no position has all nine taps; at a rate as large as the map only
the centre tap is left everywhere, and the filter is a 1x1 conv.
"""

import argparse
from pathlib import Path

from atrousnp.viz import save_valid_taps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "figures" / "figure4.png")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_valid_taps(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
