"""VOC data: the real loader, a synthetic set in the same layout, augmentation, batches."""

from .loader import keyed_batch, random_batch
from .palette import IGNORE_INDEX, VOC_CLASSES, voc_palette
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
from .transforms import TrainTransform, normalize
from .voc import VOCSegmentation, find_voc2012

__all__ = ["IGNORE_INDEX", "SYNTHETIC_CLASSES", "TrainTransform", "VOCSegmentation", "VOC_CLASSES", "find_voc2012",
           "keyed_batch", "make_synthetic_voc", "normalize", "random_batch", "voc_palette"]
