"""The PASCAL VOC colour palette, and the label that marks pixels to ignore."""

import numpy as np

IGNORE_INDEX = 255


def voc_palette():
    """VOC's 256-entry palette as (256, 3) uint8: class k's colour spreads the bits of k over R, G, B."""
    palette = np.zeros((256, 3), np.uint8)
    for k in range(256):
        label, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        palette[k] = (r, g, b)
    return palette
