"""Atrous ResNets: ResNet-18/50/101 and a small one for CPU training, with torchvision's names.

A ResNet divides the input by 2 five times (stem conv, max pool, layer2, layer3, layer4):
output stride 32. DeepLab keeps more resolution by giving the last stages stride 1 and
dilating their 3x3 convolutions instead, so each kernel still sees as far as it would have
on the smaller map (paper §3.1):

    output stride 32:  layer3 rate 1, layer4 rate 1   (plain ResNet)
    output stride 16:  layer3 rate 1, layer4 rate 2
    output stride  8:  layer3 rate 2, layer4 rate 4

As in torchvision's ``replace_stride_with_dilation``, the first unit of a dilated stage keeps
the previous stage's rate. ``multi_grid=(r1, r2, r3)`` instead sets layer4's unit rates to
rate * (r1, r2, r3): output stride 16 with (1, 2, 4) gives rates (2, 4, 8) (paper §3.2).
``backbone_plan`` writes all of it down as one dictionary, and ``set_output_stride`` applies it.

Changing the output stride only rewrites convs' stride, padding and dilation, never a
weight: the same network runs at any output stride.
"""

import numpy as np

from .. import nn
from ..checkpoint import check_finite
from ..functional.operands import is_positive_int
from ..random import generator


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the input (ResNet-18/34): y = relu(bn2(conv2(relu(bn1(conv1 x)))) + x)."""

    expansion = 1

    def __init__(self, in_channels, planes, downsample, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def set_geometry(self, stride, dilation):
        """Stride on the first conv; both 3x3 convs at ``dilation`` (padding = dilation keeps the size)."""
        self.conv1.stride = stride
        for conv in (self.conv1, self.conv2):
            conv.dilation = conv.padding = dilation
        if self.downsample is not None:
            self.downsample[0].stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.bn1(self.conv1(x), relu=True)                       # relu(bn1(conv1 x)), one fused op
        return self.bn2(self.conv2(y), residual=identity, relu=True)   # relu(bn2(conv2 y) + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (the atrous one) -> 1x1 (expand x4), plus the input (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels, planes, downsample, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False, rng=rng)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def set_geometry(self, stride, dilation):
        """Stride and dilation on the 3x3 conv (torchvision's "ResNet v1.5" places the stride there)."""
        self.conv2.stride = stride
        self.conv2.dilation = self.conv2.padding = dilation
        if self.downsample is not None:
            self.downsample[0].stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.bn1(self.conv1(x), relu=True)
        y = self.bn2(self.conv2(y), relu=True)
        return self.bn3(self.conv3(y), residual=identity, relu=True)


def make_stage(block, in_channels, planes, units, may_stride, rng):
    """``units`` blocks; where the first one changes the channel count or may stride, its
    shortcut is a 1x1 conv + BN (torchvision's ``downsample``)."""
    out_channels = planes * block.expansion
    downsample = None
    if in_channels != out_channels or may_stride:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False, rng=rng),
                                   nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, planes, downsample, rng)]
    blocks += [block(out_channels, planes, None, rng) for _ in range(1, units)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool) and four stages; ``forward`` returns layer4's map.

    x: (N, 3, H, W) -> (N, widths[3] * expansion, ~H/os, ~W/os).
    """

    def __init__(self, block, layers, widths=(64, 128, 256, 512), stem_width=64, output_stride=16,
                 multi_grid=None, rng=None):
        super().__init__()
        rng = generator(rng)
        self.block = block
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels, self.units = stem_width, tuple(layers)
        for i, (planes, units) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", make_stage(block, in_channels, planes, units, i > 0, rng))
            in_channels = planes * block.expansion
        self.out_channels = in_channels
        self.set_output_stride(output_stride, multi_grid)

    def set_output_stride(self, output_stride, multi_grid=None):
        """Make layer2..layer4 stride or dilate so that features are 1/output_stride of the input:
        ``backbone_plan`` says how, unit by unit."""
        plan = backbone_plan(self.units, output_stride, multi_grid)
        self.output_stride, self.multi_grid = output_stride, multi_grid
        apply_plan(self, plan)

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x), relu=True))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_backbone(self, state_dict):
        """Load an ImageNet-trained ResNet: torchvision's names (timm's ResNets use the same).

        The classifier (``fc.*``) and BatchNorm's ``num_batches_tracked`` are dropped; a
        segmentation state dict (torchvision's DeepLabV3, or an atrousnp checkpoint's model)
        gives its ``backbone.*`` entries. Every value must be finite, and every remaining name
        must match, with its shape: otherwise a ValueError names what is not finite, missing,
        unexpected or mis-shaped (a ResNet-101 file into a ResNet-50, say). Nothing changes
        unless all of it fits. Returns self."""
        state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        if any(k.startswith("backbone.") for k in state):
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        check_finite(state, "load_torchvision_backbone")
        self.load_state_dict(state)
        return self


def stage_rates(output_stride):
    """The atrous rates of layer2, layer3, layer4 for an output stride of 8, 16 or 32."""
    table = {32: (1, 1, 1), 16: (1, 1, 2), 8: (1, 2, 4)}
    if output_stride not in table:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return table[output_stride]


def unit_rates(units, rate, previous_rate, multi_grid=None):
    """Each unit's rate in a stage: the stage rate, the first unit keeping ``previous_rate``
    (torchvision), or rate * multi_grid[i] when a multi-grid is given (the paper)."""
    if multi_grid is None:
        return [previous_rate] + [rate] * (units - 1)
    if len(multi_grid) != units:
        raise ValueError(f"multi_grid {tuple(multi_grid)} needs one factor per unit of the stage ({units})")
    if not all(is_positive_int(r) for r in multi_grid):
        raise ValueError(f"multi_grid {tuple(multi_grid)} must hold integers >= 1 (each multiplies a rate)")
    return [rate * r for r in multi_grid]


def backbone_plan(units, output_stride, multi_grid=None):
    """{unit path: (stride, dilation)} for layer2..layer4 of a ResNet whose stages have ``units``
    blocks each: a pure function of the output stride, to print and hold against the paper.

    A stage at rate 1 downsamples in its first unit (stride 2); a dilated one keeps the size.
    ``multi_grid`` sets layer4's units (the paper's block4) to rate * (r1, r2, r3)."""
    plan, previous_rate = {}, 1
    for stage, (count, rate) in enumerate(zip(units[1:], stage_rates(output_stride)), start=2):
        rates = unit_rates(count, rate, previous_rate, multi_grid if stage == 4 else None)
        for i, unit_rate in enumerate(rates):
            plan[f"layer{stage}.{i}"] = (2 if i == 0 and rate == 1 else 1, unit_rate)
        previous_rate = rate
    return plan


def apply_plan(module, plan):
    """Give each unit in ``plan`` ({path below module: (stride, dilation)}) its geometry: convs'
    strides, paddings and dilations change, never a weight."""
    for path, (stride, dilation) in plan.items():
        module.get_submodule(path).set_geometry(stride, dilation)


STAGE_UNITS = {"small": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def resnet18(**kwargs):
    return ResNet(BasicBlock, STAGE_UNITS["resnet18"], **kwargs)


def resnet50(**kwargs):
    return ResNet(Bottleneck, STAGE_UNITS["resnet50"], **kwargs)


def resnet101(**kwargs):
    return ResNet(Bottleneck, STAGE_UNITS["resnet101"], **kwargs)


def resnet_small(layers=STAGE_UNITS["small"], **kwargs):
    """A width-reduced ResNet (BasicBlocks of 16, 32, 64, 128 channels) that trains on a CPU;
    ``layers`` units per stage, one each by default."""
    if len(layers) != 4 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in layers):
        raise ValueError(f"layers must be four positive unit counts, one per stage, got {layers!r}")
    return ResNet(BasicBlock, tuple(layers), widths=(16, 32, 64, 128), stem_width=16, **kwargs)
