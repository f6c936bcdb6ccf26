"""What a run is made of: the model, the optimiser and the data its settings describe."""

from pathlib import Path

from ..data import VOCSegmentation, make_synthetic_voc
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
