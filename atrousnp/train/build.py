"""What a run is made of: the model, the optimiser and the data its settings describe."""

from pathlib import Path

from ..analysis import tap_audit
from ..data import VOCSegmentation, make_synthetic_voc
from ..models import atrous_plan
from ..models.resnet import STAGE_UNITS
from ..optim import SGD
from .config import BACKBONES


def build_model(config, rng):
    """The DeepLabv3 of ``config`` (``config.resolve``d), its initial weights drawn from ``rng``,
    in its dtype."""
    settings = dict(num_classes=config.num_classes, output_stride=config.output_stride, multi_grid=config.multi_grid,
                    head=config.head, aspp_rates=config.aspp_rates, image_pooling=config.image_pooling,
                    cascade_blocks=config.cascade_blocks, rng=rng)
    if config.backbone_layers is not None:
        settings["layers"] = config.backbone_layers
    return BACKBONES[config.backbone](**settings).astype(config.dtype)


def build_optimizer(model, config):
    """SGD over the model; with ``backbone_weights``, the pretrained backbone in a group of its own
    at ``backbone_lr_scale`` times the head's rate (VainF's DeepLabV3Plus-Pytorch takes 0.1), so
    fine-tuning adapts ImageNet features without washing them out while the new head learns."""
    settings = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.backbone_weights is None:
        return SGD(list(model.parameters()), **settings)
    return SGD([{"params": list(model.backbone.parameters()), "lr": config.lr * config.backbone_lr_scale},
                {"params": list(model.classifier.parameters())}], **settings)


def datasets(config):
    """The (train, val) splits: of ``voc_root``, or of the synthetic set (written on first use)."""
    root = config.voc_root
    if root is None:
        folder = "synthetic_voc" if config.synthetic_kind == "shapes" else f"synthetic_voc_{config.synthetic_kind}"
        root = make_synthetic_voc(Path(config.data_dir) / folder, config.synthetic_train,
                                  config.synthetic_val, config.synthetic_size, seed=config.data_seed,
                                  kind=config.synthetic_kind)
    return (VOCSegmentation(root, config.train_split, max_images=config.max_images, use_aug=config.use_aug),
            VOCSegmentation(root, config.val_split, max_images=config.max_images))


def atrous_filters(config):
    """``analysis.tap_audit`` of the model ``config`` describes, on the feature map of a training
    crop: for each atrous unit and head branch, how much of its 3x3 filter reads the image."""
    units = config.backbone_layers or STAGE_UNITS[config.backbone]
    plan = atrous_plan(config.output_stride, config.multi_grid, config.head, config.aspp_rates, units,
                       config.cascade_blocks)
    return tap_audit(plan, config.crop_size)


def atrous_geometry(config):
    """Lines saying, for each atrous unit and head branch, how much of its 3x3 filter reads the
    image (not padding) on the feature map of a training crop: a rate as large as the map
    leaves only the centre tap, a 1x1 filter in effect (the paper's Figure 4)."""
    lines = [f"atrous filters on the feature map of a {config.crop_size}-pixel crop (output stride "
             f"{config.output_stride}):"]
    for path, size, rate, on_image, centre_only in atrous_filters(config):
        note = "  a 1x1 filter in effect: only its centre tap reads the image" if centre_only == 1 else ""
        lines.append(f"  {path:<24} rate {rate:>2} on {size}x{size}: {on_image:4.0%} of its taps on the image{note}")
    return lines
