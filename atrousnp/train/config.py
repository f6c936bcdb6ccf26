"""The settings of a training run (``TrainConfig``), and the one place they are checked."""

import dataclasses
import os
from pathlib import Path

import numpy as np

from .. import models, parallel
from ..analysis import feature_map_size, scaled_rates
from ..data import SYNTHETIC_NAMES
from ..data.classes import VOC_CLASSES, check_class_names
from ..data.voc import dataset_class_names
from ..functional.operands import is_positive_int
from ..inference import check_scales
from ..models.resnet import STAGE_UNITS

BACKBONES = {"small": models.deeplabv3_small, "resnet18": models.deeplabv3_resnet18,
             "resnet50": models.deeplabv3_resnet50, "resnet101": models.deeplabv3_resnet101}


@dataclasses.dataclass
class TrainConfig:
    voc_root: str = None            # None: the built-in synthetic set under data_dir
    data_dir: str = "data"
    train_split: str = "train"
    val_split: str = "val"
    max_images: int = None
    use_aug: bool = False           # labels from SBD's SegmentationClassAug (train split only)
    synthetic_train: int = 300
    synthetic_val: int = 60
    synthetic_size: int = 96
    synthetic_kind: str = "shapes"  # or "ablation": see atrousnp.data.synthetic
    data_seed: int = 0              # of the synthetic set: one set for every seed of training
    num_classes: int = None         # None: as many as class_names, or as the data names (VOC's 21)
    class_names: tuple = None       # one per class; None: the data's (its classes.txt), else the numbers
    backbone: str = "small"
    backbone_weights: str = None    # an ImageNet ResNet (.pth, .safetensors) or atrousnp .npz to start from
    backbone_lr_scale: float = 0.1  # the backbone's rate relative to the head's, with backbone_weights
    backbone_layers: tuple = None   # units per stage of the small backbone; None: (1, 1, 1, 1)
    head: str = "aspp"
    aspp_rates: tuple = None        # at output stride 16, doubled at 8; None: the paper's (6, 12, 18)
                                    # scaled to the crop's feature map (analysis.scaled_rates)
    image_pooling: bool = True
    cascade_blocks: int = 3         # head="cascade": how many of blocks 5..7 follow block4
    output_stride: int = 16
    eval_output_stride: int = None  # None: the training one
    multi_grid: tuple = None
    crop_size: int = 96
    batch_size: int = 8
    iterations: int = 1500
    lr: float = None                # None: 0.02, or the paper's 0.007 with backbone_weights
    momentum: float = 0.9
    weight_decay: float = 1e-4
    eval_scales: tuple = (1.0,)
    flip: bool = False
    eval_every: int = 300
    checkpoint_every: int = 250
    backend: str = "numba"
    seed: int = 0                   # of the initial weights and of the batches (two streams)
    out: str = "runs/voc_subset"
    resume: bool = False
    overwrite: bool = False         # start afresh in an --out that holds a checkpoint
    progress: bool = True
    distributed: bool = False       # one rank of an MPI job (mpiexec -n K): see atrousnp.parallel
    cuda_graph: bool = None         # backend "cuda": replay each step as a CUDA graph (crops keep one size);
                                    # None: yes on cuda, and nothing to say elsewhere
    dtype: str = "float32"          # the model's and the images' floating-point type


SCRATCH_LR = 0.02      # the initial rate from random weights
PRETRAINED_LR = 0.007  # the paper's initial rate when fine-tuning from ImageNet (§4.1)


def resolve(config):
    """``config`` with what it leaves to be decided filled in: the classes (the given names, or
    the data's: the synthetic set's six, a VOC folder's classes.txt, else VOC's 21; or the class
    numbers when only num_classes is given), ASPP's rates (the paper's scaled to the training
    crop's feature map at output stride 16) and the learning rate."""
    names = config.class_names
    if names is None and config.num_classes is None:
        names = SYNTHETIC_NAMES if config.voc_root is None else dataset_class_names(config.voc_root)
    elif names is None:
        names = VOC_CLASSES if config.num_classes == len(VOC_CLASSES) else tuple(map(str, range(config.num_classes)))
    rates = config.aspp_rates or scaled_rates((6, 12, 18), feature_map_size(config.crop_size, 16))
    lr = config.lr if config.lr is not None else PRETRAINED_LR if config.backbone_weights else SCRATCH_LR
    return dataclasses.replace(config, class_names=tuple(names), num_classes=len(names), aspp_rates=tuple(rates),
                               lr=lr)


def plain(config):
    """The settings as a JSON-able dict (tuples as lists), as checkpoints and metrics.json hold them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_plain(settings):
    """The TrainConfig of ``plain``'s dict; names TrainConfig does not have are left out."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields})


POSITIVE_INTEGERS = ("iterations", "crop_size", "eval_every", "checkpoint_every", "synthetic_train", "synthetic_val",
                     "synthetic_size")


class SettingsError(ValueError):
    """A setting of TrainConfig that cannot work, which every rank of an MPI job refuses alike:
    ``check_settings`` depends on the settings alone, and the ranks of a job agree on
    ``check_out`` (``strategies.DataParallel.check_out``)."""


def check_settings(config):
    """A SettingsError naming the first setting of ``config`` that cannot work, and its value."""
    try:
        _check_each_setting(config)
    except ValueError as error:
        raise SettingsError(error) from None


def _check_each_setting(config):
    for name in POSITIVE_INTEGERS:
        _positive_integer(name, getattr(config, name))
    if config.batch_size is None or _positive_integer("batch_size", config.batch_size) < 2:
        raise ValueError(f"batch_size must be at least 2: batch norm needs more than one value per channel "
                         f"in training (the image-pooling branch has one per image); got {config.batch_size}")
    if config.max_images is not None:
        _positive_integer("max_images", config.max_images, " or None (every image)")
    check_scales(config.eval_scales, "eval_scales")
    for name in ("lr", "backbone_lr_scale", "momentum", "weight_decay"):
        value = getattr(config, name)
        if name == "lr" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {config.backbone!r}")
    if config.head not in ("aspp", "cascade"):
        raise ValueError(f"head must be 'aspp' or 'cascade', got {config.head!r}")
    if config.output_stride not in (8, 16, 32) or config.eval_output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride and eval_output_stride must be 8, 16 or 32, got {config.output_stride!r} "
                         f"and {config.eval_output_stride!r}")
    if config.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {config.dtype!r}")
    if config.num_classes is not None:
        _positive_integer("num_classes", config.num_classes)
    if config.aspp_rates is not None:
        _positive_integers("aspp_rates (--aspp-rates)", config.aspp_rates)
    if config.class_names is not None:
        names = check_class_names(config.class_names)
        if config.num_classes is not None and len(names) != config.num_classes:
            raise ValueError(f"class_names has {len(names)} names but num_classes is {config.num_classes}")
    _check_backbone_layers(config)
    if config.backbone_weights is not None and not Path(config.backbone_weights).is_file():
        raise ValueError(f"backbone_weights: no file at {config.backbone_weights}")
    if config.distributed:
        parallel.shard(config.batch_size)  # refuses a batch that the ranks cannot share evenly


def check_out(config):
    """Refuse an ``out`` folder that is a file or not writable, a run that would replace an
    earlier one's checkpoint unless told (FileExistsError), and --resume without a checkpoint."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder, but {out} is a file")
    for name in ("checkpoint.npz", "metrics.json"):
        if (out / name).is_dir():
            raise ValueError(f"{out / name} is a folder, where the run's {name} file would go")
    checkpoint = out / "checkpoint.npz"
    if config.resume and config.overwrite:
        raise ValueError("resume and overwrite contradict each other: --resume continues the run in --out, "
                         "--overwrite replaces it")
    if config.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"resume: there is no checkpoint at {checkpoint} to continue; leave out --resume "
                                "to start a new run")
    if checkpoint.exists() and not config.resume and not config.overwrite:
        raise FileExistsError(f"{checkpoint} holds an earlier run: pass --resume to continue it, or --overwrite "
                              "to start a new run in its place")
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"out folder {out} is not writable")


def _positive_integer(name, value, alternative=""):
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")
    return value


def _positive_integers(name, values):
    if not isinstance(values, (tuple, list)) or not values or \
            not all(is_positive_int(v) for v in values):
        raise ValueError(f"{name} must be positive integers, got {values!r}")


def _check_backbone_layers(config):
    """The small backbone's units per stage (four counts), and a multi-grid of one factor per
    unit of layer4 (the paper's block4 has three)."""
    if config.backbone_layers is not None:
        if config.backbone != "small":
            raise ValueError(f"backbone_layers (--backbone-layers) sets the small backbone's units; "
                             f"{config.backbone} has its own")
        _positive_integers("backbone_layers (--backbone-layers)", config.backbone_layers)
        if len(config.backbone_layers) != 4:
            raise ValueError(f"backbone_layers (--backbone-layers) needs 4 counts (layer1 to layer4), got "
                             f"{','.join(map(str, config.backbone_layers))}")
    if config.multi_grid is None:
        return
    _positive_integers("multi_grid (--multi-grid)", config.multi_grid)
    units = (config.backbone_layers or STAGE_UNITS[config.backbone])[-1]
    if len(config.multi_grid) != units:
        fix = f"; --backbone-layers 1,1,1,{len(config.multi_grid)} gives it {len(config.multi_grid)}" \
            if config.backbone == "small" else ""
        raise ValueError(f"multi_grid (--multi-grid) {','.join(map(str, config.multi_grid))} has "
                         f"{len(config.multi_grid)} factors, but layer4 of the {config.backbone} backbone has {units} "
                         f"unit{'s' if units > 1 else ''}: give one factor per unit{fix}")
