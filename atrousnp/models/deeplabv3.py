"""DeepLabv3 (Chen et al., 2017): an atrous ResNet, then a head, then upsampling.

    x (N, 3, H, W) -> backbone (features at 1/output_stride) -> classifier (a head: heads.py)
      -> bilinear upsampling to (H, W): logits (N, num_classes, H, W)

The output stride is a plan, not a weight: ``atrous_plan`` lists every unit's (stride,
dilation) for a given output stride, and ``set_output_stride`` applies it, so the same weights
run at any output stride (train at 16, evaluate at 8, as the paper does).
"""

import functools

from .. import functional as F
from .. import nn
from ..io import load_weights
from ..random import generator
from .heads import ASPPHead, CascadeHead, TorchvisionHead, aspp_plan, cascade_plan
from .resnet import backbone_plan, resnet18, resnet50, resnet101, resnet_small


class DeepLabV3(nn.Module):
    """``classifier(backbone(x))`` upsampled to x's size; the classifier is one of heads.py's."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module):
        super().__init__()
        self.backbone, self.classifier = backbone, classifier
        self.set_output_stride(backbone.output_stride)

    @property
    def output_stride(self):
        return self.backbone.output_stride

    def set_output_stride(self, output_stride):
        """Run the same weights at another output stride: the backbone's strides and rates and
        the head's rates all follow (``atrous_plan`` lists them). The weights of the convs that
        are now dilated are stored tap by tap in memory, the others in NumPy's default order
        (``nn.Conv2d.lay_out_weight``), which changes no value."""
        self.backbone.set_output_stride(output_stride, self.backbone.multi_grid)
        self.classifier.set_output_stride(output_stride, self.backbone.multi_grid)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
                module.lay_out_weight(by_tap=module.dilation not in (1, (1, 1)))
        return self

    def forward(self, x):
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def atrous_plan(output_stride: int, multi_grid: tuple | None = None, head: str = "aspp",
                aspp_rates: tuple = (6, 12, 18), units: tuple = (3, 4, 6, 3),
                cascade_blocks: int = 3) -> dict[str, tuple[int, int]]:
    """{module path: (stride, dilation)} of every unit and branch that output stride and
    multi-grid decide, for a ResNet with ``units`` blocks per stage (ResNet-50's by default):
    print it and hold it against the paper's tables. ``head``: "aspp" or "cascade"."""
    plan = {f"backbone.{path}": geometry for path, geometry in backbone_plan(units, output_stride, multi_grid).items()}
    head_plan = cascade_plan(units[-1], output_stride, multi_grid, cascade_blocks) if head == "cascade" else \
        aspp_plan(output_stride, aspp_rates)
    plan.update({f"classifier.{path}": geometry for path, geometry in head_plan.items()})
    return plan


def _deeplabv3(make_backbone, num_classes=21, output_stride=16, multi_grid=None, head="aspp",
               aspp_rates=(6, 12, 18), image_pooling=True, head_style="paper", cascade_blocks=3,
               backbone_weights=None, rng=None):
    rng = generator(rng)
    backbone = make_backbone(output_stride=output_stride, multi_grid=multi_grid, rng=rng)
    if backbone_weights is not None:
        backbone.load_torchvision_backbone(backbone_weights if isinstance(backbone_weights, dict) else
                                           load_weights(backbone_weights))
    if head == "cascade":
        classifier = CascadeHead(backbone, num_classes, cascade_blocks, rng=rng)
    elif head == "aspp" and head_style in ("paper", "torchvision"):
        make_head = ASPPHead if head_style == "paper" else TorchvisionHead
        classifier = make_head(backbone.out_channels, num_classes, aspp_rates, image_pooling, rng=rng)
    else:
        raise ValueError(f"head must be 'aspp' or 'cascade' and head_style 'paper' or 'torchvision', "
                         f"got head={head!r}, head_style={head_style!r}")
    return DeepLabV3(backbone, classifier)


def deeplabv3_resnet50(**kwargs) -> DeepLabV3:
    """DeepLabv3 on ResNet-50. Keyword arguments: num_classes, output_stride (8, 16, 32),
    multi_grid (e.g. (1, 2, 4)), head ("aspp" | "cascade"), aspp_rates, image_pooling,
    head_style ("paper" | "torchvision"), cascade_blocks (0..3: block4 alone to block7), backbone_weights (an ImageNet ResNet's state dict, or
    a .pth / .safetensors / atrousnp .npz file holding one: ``ResNet.load_torchvision_backbone``),
    rng. The head starts from random weights either way."""
    return _deeplabv3(resnet50, **kwargs)


def deeplabv3_resnet101(**kwargs) -> DeepLabV3:
    return _deeplabv3(resnet101, **kwargs)


def deeplabv3_resnet18(**kwargs) -> DeepLabV3:
    return _deeplabv3(resnet18, **kwargs)


def deeplabv3_small(layers=(1, 1, 1, 1), **kwargs) -> DeepLabV3:
    """DeepLabv3 on the small ResNet (a CPU can train it in minutes). ``layers``: units per
    stage; a multi_grid has one factor per unit of layer4, so the paper's three-unit block4
    is ``layers=(1, 1, 1, 3)``."""
    return _deeplabv3(functools.partial(resnet_small, layers=layers), **kwargs)
