"""VOC data: the real loader, a synthetic set in the same layout, augmentation, batches."""

from .classes import VOC_CLASSES, check_class_names, read_class_names
from .images import read_image
from .loader import keyed_batch, random_batch
from .palette import IGNORE_INDEX, voc_palette
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_NAMES, make_synthetic_voc
from .transforms import TrainTransform, normalize
from .voc import VOCSegmentation, find_voc2012

__all__ = ["IGNORE_INDEX", "SYNTHETIC_CLASSES", "SYNTHETIC_NAMES", "TrainTransform", "VOCSegmentation", "VOC_CLASSES", "check_class_names",
           "find_voc2012", "keyed_batch", "make_synthetic_voc", "normalize", "random_batch", "read_class_names",
           "read_image", "voc_palette"]
