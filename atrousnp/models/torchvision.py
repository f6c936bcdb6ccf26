"""Load torchvision's DeepLabV3 weights (a dict of name -> array) into an atrousnp model."""

import warnings

import numpy as np

from ..checkpoint import check_finite
from .deeplabv3 import DeepLabV3, deeplabv3_resnet50, deeplabv3_resnet101


def from_torchvision(state_dict: dict, output_stride: int = 8, aspp_rates: tuple | None = None) -> DeepLabV3:
    """Build the DeepLabv3 that ``state_dict`` (torchvision's names) describes, and load it.

    ResNet-50 or -101 is read from the number of units in layer3 (6 or 23), the class count
    from the last conv. torchvision trains at output stride 8 with ASPP rates (12, 24, 36),
    i.e. (6, 12, 18) at output stride 16, the default here; ``output_stride`` picks the stride
    to run at. The auxiliary classifier is ignored (with a warning), and so are BatchNorm's
    ``num_batches_tracked`` counters, which atrousnp does not keep.
    """
    state = {name: np.asarray(value) for name, value in state_dict.items()}
    aux = [name for name in state if name.startswith("aux_classifier.")]
    if aux:
        warnings.warn(f"from_torchvision: ignoring the auxiliary classifier ({len(aux)} tensors)", stacklevel=2)
    state = {name: value for name, value in state.items()
             if not name.startswith("aux_classifier.") and not name.endswith("num_batches_tracked")}
    layer3_units = len({name.split(".")[2] for name in state if name.startswith("backbone.layer3.")})
    constructors = {6: deeplabv3_resnet50, 23: deeplabv3_resnet101}
    if layer3_units not in constructors:
        raise ValueError(f"from_torchvision: layer3 has {layer3_units} units; expected 6 (ResNet-50) or 23 (ResNet-101)")
    if "classifier.4.weight" not in state:
        raise ValueError("from_torchvision: no classifier.4.weight: not torchvision's DeepLabHead")
    num_classes = state["classifier.4.weight"].shape[0]
    model = constructors[layer3_units](num_classes=num_classes, output_stride=output_stride,
                                       aspp_rates=aspp_rates or (6, 12, 18), head_style="torchvision",
                                       rng=np.random.default_rng(0))
    check_finite(state, "from_torchvision")
    model.load_state_dict(state)
    return model
