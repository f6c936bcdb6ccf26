"""Reading an image file as a model's input: uint8 (H, W, 3), whatever the file's mode.

A file is read in two steps: its header, which declares the size, then its pixels. The size
is checked in between, so a 97 KB PNG that declares 10000 x 10000 pixels is refused before
2.8 GB are decoded. Modes are converted by what their values mean: 16-bit greyscale (PIL's
``I;16``) is scaled from 0..65535 to 0..255 (PIL's own ``convert("RGB")`` clips it to white),
greyscale and palette images become three equal or looked-up channels, and an alpha channel
is dropped.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 4096 * 4096  # 16.8 megapixels: a 12-megapixel photo fits; a decompression bomb does not
# 16-bit greyscale: "I;16" in Pillow >= 10, "I" (32-bit integers holding 0..65535) in older ones.
_GREY_16_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def open_image(path, max_pixels=MAX_PIXELS):
    """The PIL image at ``path``, its header read and its size checked against ``max_pixels``;
    a ValueError names the file (missing: FileNotFoundError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise ValueError(f"{path} declares over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; atrousnp reads "
                         f"at most {max_pixels / 1e6:.1f} (max_pixels): resize it first") from None
    except Exception as error:  # PIL raises several types for a broken file
        raise ValueError(f"cannot read {path}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ValueError(f"{path} is {width}x{height} ({width * height / 1e6:.1f} megapixels); atrousnp reads at most "
                         f"{max_pixels / 1e6:.1f} (max_pixels): resize it first")
    return image


def decode(image, path):
    """Every pixel of ``image`` (opened by ``open_image``) decoded: a truncated file fails here."""
    try:
        image.load()
    except Exception as error:
        image.close()
        raise ValueError(f"cannot read {path}: {error}") from None
    return image


def read_image(path, max_pixels=MAX_PIXELS):
    """The image at ``path`` as uint8 (H, W, 3)."""
    with decode(open_image(path, max_pixels), path) as image:
        return _as_rgb(image, path)


def _as_rgb(image, path):
    if image.mode in _GREY_16_BIT:
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"{path}: a {image.mode} image with values outside 0..65535; atrousnp reads 8- and "
                             "16-bit images")
        grey = np.round(values * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise ValueError(f"{path} is a floating-point image; save it as an 8- or 16-bit image first")
    return np.asarray(image.convert("RGB"))
