"""Training augmentation (paper §4): random scale 0.5-2.0, pad, random crop, horizontal flip.

Every random choice comes from the numpy Generator passed in, so the same seed gives the
same batches. Images are uint8 (H, W, 3), labels uint8 (H, W); the image is resized
bilinearly and the label by nearest neighbour (a label is a class, never a mix of two).
"""

import numpy as np
from PIL import Image

from .palette import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def random_scale(image, label, rng, low=0.5, high=2.0):
    scale = rng.uniform(low, high)
    h, w = label.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)),
            np.asarray(Image.fromarray(label).resize(size, Image.NEAREST)))


def pad_to(image, label, crop_size):
    """Pad bottom/right to at least crop_size: the image with the mean colour, the label with 255."""
    h, w = label.shape
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    mean = np.round(IMAGENET_MEAN).astype(np.uint8)
    padded_image = np.empty((h + ph, w + pw, 3), np.uint8)
    padded_image[:] = mean
    padded_image[:h, :w] = image
    padded_label = np.full((h + ph, w + pw), IGNORE_INDEX, np.uint8)
    padded_label[:h, :w] = label
    return padded_image, padded_label


def random_crop(image, label, crop_size, rng):
    h, w = label.shape
    top, left = rng.integers(0, h - crop_size + 1), rng.integers(0, w - crop_size + 1)
    return (image[top:top + crop_size, left:left + crop_size],
            label[top:top + crop_size, left:left + crop_size])


def random_flip(image, label, rng):
    if rng.random() < 0.5:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def normalize(image):
    """uint8 (H, W, 3) -> float32 (3, H, W), ImageNet mean and std."""
    return ((image.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


class TrainTransform:
    """scale -> pad -> crop -> flip -> normalise; returns (float32 (3, c, c), int64 (c, c))."""

    def __init__(self, crop_size, scale_range=(0.5, 2.0)):
        self.crop_size, self.scale_range = crop_size, scale_range

    def __call__(self, image, label, rng):
        image, label = random_scale(image, label, rng, *self.scale_range)
        image, label = pad_to(image, label, self.crop_size)
        image, label = random_crop(image, label, self.crop_size, rng)
        image, label = random_flip(image, label, rng)
        return normalize(np.ascontiguousarray(image)), np.ascontiguousarray(label).astype(np.int64)
