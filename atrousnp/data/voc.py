"""PASCAL VOC 2012 segmentation in the VOCdevkit layout.

    root/VOC2012/JPEGImages/<id>.jpg              RGB images
    root/VOC2012/SegmentationClass/<id>.png       palette PNGs: pixel value = class index, 255 = ignore
    root/VOC2012/ImageSets/Segmentation/<split>.txt   one image id per line

A ``VOC2012/classes.txt`` (one class name per line, class 0 first) names a set's own classes;
without it they are PASCAL VOC's 21. ``root`` may also be the VOC2012 folder itself, or a
VOCdevkit folder holding it. With ``use_aug=True`` labels come from an SBD-style
``SegmentationClassAug`` folder beside ``SegmentationClass``.
"""

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .classes import VOC_CLASSES, read_class_names
from .images import decode, open_image, read_image


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
        if not self.ids:
            raise ValueError(f"split {split!r} is empty: {list_file} lists no image ids")
        if max_images is not None:
            self.ids = self.ids[:max_images]
        self.split = split
        self.label_folder = self.folder / ("SegmentationClassAug" if use_aug else "SegmentationClass")
        self.transform = transform
        self.class_names = dataset_class_names(self.folder)

    def __len__(self):
        return len(self.ids)

    def paths(self, i):
        image_id = self.ids[i]
        return self.folder / "JPEGImages" / f"{image_id}.jpg", self.label_folder / f"{image_id}.png"

    def __getitem__(self, i):
        image_path, label_path = self.paths(i)
        image = read_image(image_path)
        label = _label(label_path, image.shape[1], image.shape[0], image_path)
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def check(self, num_classes, ignore_index=255, progress=False):
        """A pass over every file before training: each image decodes to its last pixel, and each
        label is a P or L PNG of the image's size whose values are classes below ``num_classes``
        or ``ignore_index``. Raises one ValueError naming every bad file (the first 20), so a run
        never fails at its first evaluation, hours in, over one broken label."""
        problems = []
        for i in tqdm(range(len(self)), desc=f"check {self.split}", leave=False, disable=not progress):
            image_path, label_path = self.paths(i)
            try:
                height, width = read_image(image_path).shape[:2]
                values = np.unique(_label(label_path, width, height, image_path))
            except (OSError, ValueError) as error:
                problems.append(str(error))
                continue
            bad = values[(values >= num_classes) & (values != ignore_index)]
            if bad.size:
                problems.append(f"{label_path}: label values {bad.tolist()} are not classes 0..{num_classes - 1} "
                                f"nor the ignore label {ignore_index}")
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise ValueError(f"{len(problems)} of the {len(self)} images of split {self.split!r} under {self.folder} "
                             f"cannot be used:\n  {shown}{more}")


def dataset_class_names(root):
    """The classes a VOC-format set says it has: one per line of its VOC2012/classes.txt, class 0
    first, or PASCAL VOC's 21 where there is no such file."""
    names = find_voc2012(root) / "classes.txt"
    return read_class_names(names) if names.is_file() else VOC_CLASSES


def _label(path, width, height, image_path):
    """The class-index array of a label PNG, checked against its image's size."""
    label_image = decode(open_image(path), path)
    if label_image.mode not in ("P", "L"):
        raise ValueError(f"{path}: a label must be a palette (P) or greyscale (L) PNG of class "
                         f"indices, got mode {label_image.mode}")
    label = np.asarray(label_image)  # a palette PNG's pixels are its indices, not its colours
    if label.shape != (height, width):
        raise ValueError(f"{path}: label is {label.shape[1]}x{label.shape[0]} but its image "
                         f"{image_path.name} is {width}x{height}")
    return label

