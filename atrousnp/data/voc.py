"""PASCAL VOC 2012 segmentation in the VOCdevkit layout.

    root/VOC2012/JPEGImages/<id>.jpg              RGB images
    root/VOC2012/SegmentationClass/<id>.png       palette PNGs: pixel value = class index, 255 = ignore
    root/VOC2012/ImageSets/Segmentation/<split>.txt   one image id per line

``root`` may also be the VOC2012 folder itself, or a VOCdevkit folder holding it. With
``use_aug=True`` labels come from an SBD-style ``SegmentationClassAug`` folder beside
``SegmentationClass``.
"""

from pathlib import Path

import numpy as np
from PIL import Image


def find_voc2012(root):
    """The VOC2012 folder under ``root`` (root itself, root/VOC2012 or root/VOCdevkit/VOC2012)."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise FileNotFoundError(f"no VOC2012 folder with ImageSets/Segmentation under {root}")


class VOCSegmentation:
    """``dataset[i]`` is (image uint8 (H, W, 3), label uint8 (H, W)), after ``transform`` if given."""

    def __init__(self, root, split="train", transform=None, use_aug=False, max_images=None):
        self.folder = find_voc2012(root)
        list_file = self.folder / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            available = sorted(p.stem for p in list_file.parent.glob("*.txt"))
            raise FileNotFoundError(f"no split {split!r}: {list_file} is missing (available: {', '.join(available)})")
        self.ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if max_images is not None:
            self.ids = self.ids[:max_images]
        self.label_folder = self.folder / ("SegmentationClassAug" if use_aug else "SegmentationClass")
        self.transform = transform

    def __len__(self):
        return len(self.ids)

    def paths(self, i):
        image_id = self.ids[i]
        return self.folder / "JPEGImages" / f"{image_id}.jpg", self.label_folder / f"{image_id}.png"

    def __getitem__(self, i):
        image_path, label_path = self.paths(i)
        image = np.asarray(_open(image_path).convert("RGB"))
        label_image = _open(label_path)
        if label_image.mode not in ("P", "L"):
            raise ValueError(f"{label_path}: a label must be a palette (P) or greyscale (L) PNG of class "
                             f"indices, got mode {label_image.mode}")
        label = np.asarray(label_image)  # a palette PNG's pixels are its indices, not its colours
        if label.shape != image.shape[:2]:
            raise ValueError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image "
                             f"{image_path.name} is {image.shape[1]}x{image.shape[0]}")
        if self.transform is not None:
            return self.transform(image, label)
        return image, label


def _open(path):
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:  # PIL raises several types for a broken file
        raise ValueError(f"cannot read {path}: {error}") from None
    return image
