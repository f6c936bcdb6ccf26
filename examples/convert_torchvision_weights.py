"""Turn a torchvision DeepLabV3 checkpoint (.pth or .safetensors) into an atrousnp .npz; no PyTorch needed.

    python examples/convert_torchvision_weights.py deeplabv3_resnet50_coco.pth deeplabv3_resnet50.npz

The .pth is read by ``atrousnp.io.load_weights``, which runs no code from the file. The .npz
holds {"model": state dict with torchvision's names}, which
``atrousnp.models.from_torchvision(atrousnp.load(path)["model"])`` turns into a model. The
conversion also builds that model once, so a file that does not describe a torchvision
DeepLabV3 (ResNet-50 or -101) fails here, not later. (For an ImageNet ResNet, no conversion
is needed: pass the .pth to ``train_voc_subset.py --backbone-weights``.)
"""

import argparse

import atrousnp as anp
from atrousnp.io import load_weights


def convert(weights_path, npz_path):
    arrays = load_weights(weights_path)
    anp.models.from_torchvision(arrays)  # validates: raises naming what does not fit
    anp.save(npz_path, {"model": {k: v for k, v in arrays.items() if not k.startswith("aux_classifier.")}})
    return len(arrays)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="torchvision DeepLabV3 weights: .pth or .safetensors")
    parser.add_argument("npz")
    args = parser.parse_args(argv)
    try:
        count = convert(args.weights, args.npz)
    except (ValueError, OSError) as error:  # a file that is not what it claims: one line, no traceback
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {args.npz} ({count} tensors read)")


if __name__ == "__main__":
    main()
