"""Inference as the paper evaluates: any output stride, several scales, left-right flips."""

import numpy as np

from . import functional as F
from .autograd import no_grad
from .data.transforms import normalize
from .tensor import tensor


def predict(model, image, output_stride=None, scales=(1.0,), flip=False):
    """Class probabilities (C, H, W) for image uint8 (H, W, 3), averaged over scales and flips.

    Each scale resizes the input, runs the model, and resizes the softmax back to (H, W);
    ``flip`` adds the mirrored image, whose probabilities are mirrored back. The model runs in
    eval mode; ``output_stride`` (if given) is set for this call and restored after.
    """
    h, w = image.shape[:2]
    previous_stride, was_training = model.output_stride, model.training
    if output_stride is not None:
        model.set_output_stride(output_stride)
    model.eval()
    x = tensor(normalize(np.asarray(image))[None], dtype=next(model.parameters()).dtype)  # the model's dtype
    total = None
    try:
        with no_grad():
            for scale in scales:
                size = (max(1, round(h * scale)), max(1, round(w * scale)))
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
    return total / (len(scales) * (2 if flip else 1))
