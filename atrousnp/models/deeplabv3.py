"""DeepLabv3 (Chen et al., 2017): an atrous ResNet, then ASPP or a cascade of atrous blocks.

    x (N, 3, H, W) -> backbone (features at 1/output_stride) -> head -> 1x1 conv to classes
      -> bilinear upsampling to (H, W): logits (N, num_classes, H, W)

Heads (paper §3.2, §3.3):

* ``"aspp"``: Atrous Spatial Pyramid Pooling looks at the same features at several rates
  at once: a 1x1 conv, three 3x3 convs at rates (6, 12, 18) (at output stride 16; doubled at
  8), and image-level pooling (global average -> 1x1 conv -> upsample), each 256 filters +
  BN + ReLU; concatenated and projected by a 1x1 conv (256) + BN + ReLU.
* ``"cascade"``: blocks 5, 6, 7 are copies of block4 (layer4) whose rates double block to
  block, so the field of view keeps growing without downsampling.

``head_style="torchvision"`` builds torchvision's variant of the ASPP head (dropout 0.5 in
the projection, then an extra 3x3 conv + BN + ReLU), with its module names, so its weights
load unchanged (see ``from_torchvision``).
"""

import numpy as np

from .. import functional as F
from .. import nn
from .resnet import (configure_stage, make_stage, resnet18, resnet50, resnet101, resnet_small, stage_rates,
                     unit_dilations)


def _conv_bn_relu(in_channels, out_channels, kernel, rate, rng):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=rate if kernel == 3 else 0,
                                   dilation=rate, bias=False, rng=rng),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class ImagePooling(nn.Sequential):
    """Global average pool -> 1x1 conv -> BN -> ReLU, upsampled back to the input's size:
    the whole image's context as one feature vector per image."""

    def __init__(self, in_channels, out_channels, rng):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False, rng=rng),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Parallel branches on x: (N, C, h, w), concatenated and projected to (N, 256, h, w)."""

    def __init__(self, in_channels, rates, image_pooling=True, out_channels=256, dropout=0.0, rng=None):
        super().__init__()
        branches = [_conv_bn_relu(in_channels, out_channels, 1, 1, rng)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, rate, rng) for rate in rates]
        if image_pooling:
            branches.append(ImagePooling(in_channels, out_channels, rng))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False, rng=rng),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(dropout, rng=rng))
        self.rates = tuple(rates)

    def set_rates(self, rates):
        """Rescale the three atrous branches (the weights stay)."""
        for branch, rate in zip(list(self.convs)[1:1 + len(rates)], rates):
            branch[0].dilation = branch[0].padding = rate
        self.rates = tuple(rates)

    def forward(self, x):
        return self.project(F.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3(nn.Module):
    """See the module docstring. ``aspp_rates`` are the rates at output stride 16;
    ``aspp_channels`` (the paper's 256) is the width of every ASPP branch."""

    def __init__(self, backbone, num_classes=21, head="aspp", aspp_rates=(6, 12, 18), image_pooling=True,
                 head_style="paper", rng=None, aspp_channels=256):
        super().__init__()
        if head not in ("aspp", "cascade"):
            raise ValueError(f"head must be 'aspp' or 'cascade', got {head!r}")
        if head_style not in ("paper", "torchvision"):
            raise ValueError(f"head_style must be 'paper' or 'torchvision', got {head_style!r}")
        rng = np.random.default_rng() if rng is None else rng
        self.backbone, self.head, self.base_aspp_rates = backbone, head, tuple(aspp_rates)
        channels = backbone.out_channels
        if head == "cascade":
            planes = channels // backbone.block.expansion
            for name in ("block5", "block6", "block7"):
                setattr(self, name, make_stage(backbone.block, channels, planes, len(backbone.layer4), False, rng))
            self.classifier = nn.Sequential(nn.Conv2d(channels, num_classes, 1, rng=rng))
        elif head_style == "paper":
            self.classifier = nn.Sequential(ASPP(channels, aspp_rates, image_pooling, aspp_channels, rng=rng),
                                            nn.Conv2d(aspp_channels, num_classes, 1, rng=rng))
        else:
            width = aspp_channels
            self.classifier = nn.Sequential(ASPP(channels, aspp_rates, image_pooling, width, dropout=0.5, rng=rng),
                                            nn.Conv2d(width, width, 3, padding=1, bias=False, rng=rng),
                                            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, num_classes, 1, rng=rng))
        self.set_output_stride(backbone.output_stride)

    @property
    def output_stride(self):
        return self.backbone.output_stride

    def set_output_stride(self, output_stride):
        """Run the same weights at another output stride: the backbone's strides and rates,
        the cascade's rates and the ASPP rates (scaled by 16 / output_stride) all follow."""
        self.backbone.set_output_stride(output_stride, self.backbone.multi_grid)
        if self.head == "cascade":
            rate = stage_rates(output_stride)[-1]  # block4's rate; blocks 5, 6, 7 double it in turn
            for name in ("block5", "block6", "block7"):
                rate *= 2
                stage = getattr(self, name)
                configure_stage(stage, 1, unit_dilations(len(stage), rate, rate, self.backbone.multi_grid))
        else:
            self.classifier[0].set_rates([max(1, round(r * 16 / output_stride)) for r in self.base_aspp_rates])
        return self

    def forward(self, x):
        features = self.backbone(x)
        if self.head == "cascade":
            features = self.block7(self.block6(self.block5(features)))
        logits = self.classifier(features)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _deeplabv3(make_backbone, num_classes=21, output_stride=16, multi_grid=None, head="aspp",
               aspp_rates=(6, 12, 18), image_pooling=True, head_style="paper", rng=None):
    rng = np.random.default_rng() if rng is None else rng
    backbone = make_backbone(output_stride=output_stride, multi_grid=multi_grid, rng=rng)
    return DeepLabV3(backbone, num_classes, head, aspp_rates, image_pooling, head_style, rng)


def deeplabv3_resnet50(**kwargs):
    """DeepLabv3 on ResNet-50. Keyword arguments: num_classes, output_stride (8, 16, 32),
    multi_grid (e.g. (1, 2, 4)), head ("aspp" | "cascade"), aspp_rates, image_pooling,
    head_style ("paper" | "torchvision"), rng."""
    return _deeplabv3(resnet50, **kwargs)


def deeplabv3_resnet101(**kwargs):
    return _deeplabv3(resnet101, **kwargs)


def deeplabv3_resnet18(**kwargs):
    return _deeplabv3(resnet18, **kwargs)


def deeplabv3_small(**kwargs):
    """DeepLabv3 on the small ResNet (a CPU can train it in minutes); layer4 has one unit,
    so a multi_grid has one factor."""
    return _deeplabv3(resnet_small, **kwargs)
