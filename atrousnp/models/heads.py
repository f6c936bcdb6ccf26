"""DeepLabv3's heads: what turns the backbone's features into class scores (paper §3.2, §3.3).

* ``ASPPHead`` (the paper's): Atrous Spatial Pyramid Pooling looks at the same features at
  several rates at once: a 1x1 conv, three 3x3 convs at rates (6, 12, 18) (at output stride 16;
  doubled at 8), and image-level pooling (global average -> 1x1 conv -> upsample), each 256
  filters + BN + ReLU; concatenated and projected by a 1x1 conv (256) + BN + ReLU; then a 1x1
  conv to the classes.
* ``TorchvisionHead``: torchvision's variant of it (dropout 0.5 in the projection, then an
  extra 3x3 conv + BN + ReLU), under torchvision's ``classifier.N`` names, so that its weights
  load unchanged (``from_torchvision``).
* ``CascadeHead``: blocks 5, 6, 7 are copies of block4 (the backbone's layer4) whose rates
  double block to block, so the field of view keeps growing without downsampling; then a 1x1
  conv to the classes.

Each head's ``set_output_stride`` applies its part of the atrous plan (``aspp_plan``,
``cascade_plan``), pure functions that ``deeplabv3.atrous_plan`` gathers for the whole model.
"""

from .. import functional as F
from .. import nn
from .resnet import apply_plan, make_stage, stage_rates, unit_rates


class ConvBNReLU(nn.Sequential):
    """A conv (1x1, or 3x3 at ``rate``) + BN + ReLU: one branch of ASPP."""

    def __init__(self, in_channels, out_channels, kernel, rate, rng):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel, padding=rate if kernel == 3 else 0,
                                   dilation=rate, bias=False, rng=rng),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def set_geometry(self, stride, dilation):
        """A 3x3 branch at another rate (padding = rate keeps the size)."""
        conv = self[0]
        conv.stride, conv.dilation, conv.padding = stride, dilation, dilation


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
        branches = [ConvBNReLU(in_channels, out_channels, 1, 1, rng)]
        branches += [ConvBNReLU(in_channels, out_channels, 3, rate, rng) for rate in rates]
        if image_pooling:
            branches.append(ImagePooling(in_channels, out_channels, rng))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False, rng=rng),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(dropout, rng=rng))
        self.atrous_branches = len(rates)

    @property
    def rates(self):
        """The atrous branches' rates now."""
        return tuple(branch[0].dilation for branch in list(self.convs)[1:1 + self.atrous_branches])

    def forward(self, x):
        return self.project(F.cat([branch(x) for branch in self.convs], dim=1))


def aspp_plan(output_stride, rates):
    """{branch path: (stride, dilation)}: ASPP's rates, given at output stride 16, scaled by 16 /
    output_stride (doubled at 8), as the paper does; paths below the head ("0.convs.1", ...)."""
    stage_rates(output_stride)  # validates the output stride
    return {f"0.convs.{i + 1}": (1, max(1, round(rate * 16 / output_stride))) for i, rate in enumerate(rates)}


class ASPPHead(nn.Sequential):
    """ASPP, then a 1x1 conv to the classes (the paper's head). ``rates`` are at output stride 16."""

    def __init__(self, in_channels, num_classes, rates=(6, 12, 18), image_pooling=True, channels=256, rng=None):
        super().__init__(ASPP(in_channels, rates, image_pooling, channels, rng=rng),
                         nn.Conv2d(channels, num_classes, 1, rng=rng))
        self.base_rates = tuple(rates)

    def set_output_stride(self, output_stride, multi_grid=None):
        apply_plan(self, aspp_plan(output_stride, self.base_rates))


class TorchvisionHead(ASPPHead):
    """torchvision's DeepLabHead: ASPP (dropout 0.5), a 3x3 conv + BN + ReLU, a 1x1 conv to the classes."""

    def __init__(self, in_channels, num_classes, rates=(6, 12, 18), image_pooling=True, channels=256, rng=None):
        nn.Sequential.__init__(self, ASPP(in_channels, rates, image_pooling, channels, dropout=0.5, rng=rng),
                               nn.Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng),
                               nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, num_classes, 1, rng=rng))
        self.base_rates = tuple(rates)


CASCADE_BLOCKS = ("block5", "block6", "block7")


def cascade_plan(units, output_stride, multi_grid=None, blocks=3):
    """{unit path: (stride, dilation)} of the first ``blocks`` of blocks 5..7, each of ``units``
    units: block4's rate doubled per block, each block's units scaled by the multi-grid; paths
    below the head."""
    plan, rate = {}, stage_rates(output_stride)[-1]
    for name in CASCADE_BLOCKS[:blocks]:
        rate *= 2
        for i, unit_rate in enumerate(unit_rates(units, rate, rate, multi_grid)):
            plan[f"{name}.{i}"] = (1, unit_rate)
    return plan


class CascadeHead(nn.Module):
    """Blocks 5, 6, 7 (copies of the backbone's layer4, rates doubling), then a 1x1 conv to the
    classes. ``blocks`` < 3 keeps the first ones only: the paper's Table 2 goes from block4
    (``blocks=0``, the score conv straight on the backbone) to block7 (3)."""

    def __init__(self, backbone, num_classes, blocks=3, rng=None):
        super().__init__()
        if blocks not in range(len(CASCADE_BLOCKS) + 1):
            raise ValueError(f"cascade_blocks must be 0, 1, 2 or 3 (block4 to block7), got {blocks!r}")
        channels, units = backbone.out_channels, backbone.units[-1]
        self.block_names = CASCADE_BLOCKS[:blocks]
        for name in self.block_names:
            setattr(self, name, make_stage(backbone.block, channels, channels // backbone.block.expansion, units,
                                           False, rng))
        self.score = nn.Conv2d(channels, num_classes, 1, rng=rng)
        self.units = units

    def set_output_stride(self, output_stride, multi_grid=None):
        apply_plan(self, cascade_plan(self.units, output_stride, multi_grid, len(self.block_names)))

    def forward(self, x):
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.score(x)
