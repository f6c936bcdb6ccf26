"""Turn a torchvision DeepLabV3 checkpoint (.pth) into an atrousnp .npz (needs PyTorch).

    python examples/convert_torchvision_weights.py deeplabv3_resnet50_coco.pth deeplabv3_resnet50.npz

The .npz holds {"model": state dict with torchvision's names}, which
``atrousnp.models.from_torchvision(atrousnp.load(path)["model"])`` turns into a model. The
conversion also builds that model once, so a file that does not describe a torchvision
DeepLabV3 (ResNet-50 or -101) fails here, not later.
"""

import argparse
import sys

import atrousnp as anp


def convert(pth_path, npz_path):
    try:
        import torch
    except ImportError:
        sys.exit("convert_torchvision_weights.py needs PyTorch: pip install torch")
    state = torch.load(pth_path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and not any(k.startswith("backbone.") for k in state):
        state = state["model"]  # a training checkpoint that wraps the state dict
    arrays = {name: value.detach().cpu().numpy() for name, value in state.items()}
    anp.models.from_torchvision(arrays)  # validates: raises naming what does not fit
    anp.save(npz_path, {"model": {k: v for k, v in arrays.items() if not k.startswith("aux_classifier.")}})
    return len(arrays)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pth")
    parser.add_argument("npz")
    args = parser.parse_args(argv)
    count = convert(args.pth, args.npz)
    print(f"wrote {args.npz} ({count} tensors read)")


if __name__ == "__main__":
    main()
