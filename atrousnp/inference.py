"""Inference as the paper evaluates: any output stride, several scales, left-right flips."""

import math

import numpy as np

from . import functional as F
from .autograd import no_grad
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
    """``scales`` as a tuple of positive finite numbers (each one that resizes ``image_size``
    (H, W) to at least a pixel); a ValueError names ``name`` otherwise."""
    try:
        values = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be positive finite numbers, got {scales!r}") from None
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} must be positive finite numbers, got {scales!r}")
    if image_size is not None and round(min(image_size) * min(values)) < 1:
        raise ValueError(f"{name}: {min(values)} shrinks the {image_size[1]}x{image_size[0]} image to nothing")
    return values
