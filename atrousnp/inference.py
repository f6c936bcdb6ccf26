"""Inference as the paper evaluates: any output stride, several scales, left-right flips."""

import math

import numpy as np

from . import functional as F
from .autograd import no_grad
from .data.images import MAX_PIXELS
from .data.transforms import normalize
from .tensor import tensor


def predict(model, image, output_stride=None, scales=(1.0,), flip=False):
    """Class probabilities (C, H, W) for image uint8 (H, W, 3), averaged over scales and flips.

    Each scale resizes the input, runs the model, and resizes the softmax back to (H, W);
    ``flip`` adds the mirrored image, whose probabilities are mirrored back. The model runs in
    eval mode; ``output_stride`` (if given) is set for this call and restored after. A model
    whose probabilities are not finite (broken weights) raises a ValueError: argmax would
    silently make class 0 of every pixel.
    """
    check_image(image)
    scales = check_scales(scales, "scales", image.shape[:2])
    if not isinstance(flip, bool):
        raise TypeError(f"predict: flip must be True or False, got {flip!r}")
    h, w = image.shape[:2]
    previous_stride, was_training = model.output_stride, model.training
    if output_stride is not None:
        model.set_output_stride(output_stride)
    model.eval()
    x = tensor(normalize(image)[None], dtype=next(model.parameters()).dtype)  # the model's dtype
    total = None
    try:
        with no_grad():
            for scale in scales:
                size = (round(h * scale), round(w * scale))
                scaled = F.interpolate(x, size, align_corners=False) if scale != 1.0 else x
                for mirrored in ((False, True) if flip else (False,)):
                    inputs = scaled[..., ::-1] if mirrored else scaled
                    probs = F.softmax(model(inputs), dim=1)
                    probs = F.interpolate(probs, (h, w), align_corners=False) if scale != 1.0 else probs
                    probs = probs.numpy()[0]
                    probs = probs[..., ::-1] if mirrored else probs
                    total = probs if total is None else total + probs
    finally:
        model.set_output_stride(previous_stride)
        model.train(was_training)
    if not np.isfinite(total).all():
        raise ValueError("predict: the model's class probabilities are not finite (nan or inf), so no class can be "
                         "chosen: its weights or batch-norm statistics are broken")
    return total / (len(scales) * (2 if flip else 1))


def check_image(image):
    """Refuse anything but a uint8 (H, W, 3) array, saying how to convert the common others."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"predict: image must be a NumPy array uint8 (H, W, 3), got {type(image).__name__}")
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.size:
        return
    hint = ""
    if image.dtype.kind == "f":
        hint = "; an image of floats in 0..1 converts with (image * 255).round().astype(np.uint8)"
    elif image.ndim == 2:
        hint = "; a greyscale image converts with np.repeat(image[:, :, None], 3, axis=2)"
    elif image.ndim == 3 and image.shape[2] == 4:
        hint = "; drop the alpha channel with image[:, :, :3]"
    raise TypeError(f"predict: image must be uint8 (H, W, 3), got {image.dtype} {image.shape}{hint}")


def check_scales(scales, name="scales", image_size=None):
    """``scales`` (numbers, or their text "0.5,1,1.5") as a tuple of positive finite floats;
    for an image of ``image_size`` (H, W), each must also resize it to between one pixel and
    ``MAX_PIXELS``. A ValueError names ``name`` and the value as given otherwise."""
    parts = scales.split(",") if isinstance(scales, str) else scales
    try:
        values = tuple(float(s) for s in parts if not isinstance(s, bool))
    except (TypeError, ValueError):
        values = ()
    if not values or len(values) != len(parts) or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} must be positive finite numbers, got {scales!r}")
    if image_size is not None:
        h, w = image_size
        smallest, largest = min(values), max(values)
        if min(round(h * smallest), round(w * smallest)) < 1:
            raise ValueError(f"{name}: {smallest} shrinks the {w}x{h} image to nothing")
        if round(h * largest) * round(w * largest) > MAX_PIXELS:
            raise ValueError(f"{name}: {largest} enlarges the {w}x{h} image past {MAX_PIXELS / 1e6:.1f} megapixels "
                             "(atrousnp.data.images.MAX_PIXELS)")
    return values
