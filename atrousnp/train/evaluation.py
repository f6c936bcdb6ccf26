"""Evaluating a model on a split, and reading back a model that ``train`` saved."""

import numpy as np

from ..checkpoint import load
from ..inference import predict
from ..metrics import confusion_matrix, per_class_iou
from .build import build_model
from .config import check_settings, from_plain, resolve


def evaluate(model, dataset, num_classes, output_stride=None, scales=(1.0,), flip=False, keep=0, indices=None,
             per_image=False):
    """The confusion matrix over ``dataset`` (or its ``indices``), and the first ``keep`` (image,
    truth, prediction) triples. ``per_image``: each image's matrix, stacked (I, C, C), for
    intervals over images (``atrousnp.stats``)."""
    matrices, examples = [], []
    for i in range(len(dataset)) if indices is None else indices:
        image, label = dataset[i]
        prediction = predict(model, image, output_stride, scales, flip).argmax(axis=0)
        matrices.append(confusion_matrix(prediction, label, num_classes))
        if len(examples) < keep:
            examples.append((image, label, prediction.astype(np.uint8)))
    stack = np.array(matrices, np.int64).reshape(-1, num_classes, num_classes)
    return (stack if per_image else stack.sum(axis=0)), examples


def named_iou(cm, names):
    """{class name: IoU} for every class that occurs in the truth or the predictions."""
    iou = per_class_iou(cm)
    return {name: float(value) for name, value in zip(names, iou) if not np.isnan(value)}


def all_finite(model):
    """True when every parameter and buffer of ``model`` is finite (no nan, no inf)."""
    return all(np.isfinite(t.numpy()).all() for t in list(model.parameters()) + list(model.buffers()))


def load_trained(checkpoint_path):
    """(model, config) from a checkpoint that ``train`` wrote: the model rebuilt from the saved
    settings (checked as ``train`` checks them), on the current backend, with its weights. A
    ValueError names the checkpoint if it is not one of ``train``'s, if its settings cannot
    work, or if its weights are not finite: a diverged run's model predicts class 0 everywhere."""
    state = load(checkpoint_path)
    config = saved_config(state, checkpoint_path)
    if not isinstance(state.get("model"), dict):
        raise ValueError(f"{checkpoint_path} holds no model weights")
    model = build_model(config, np.random.default_rng(0))
    model.load_state_dict(state["model"])
    if not all_finite(model):
        raise ValueError(f"{checkpoint_path} holds weights that are not finite (nan or inf): it comes from a "
                         "diverged run, and its predictions would be class 0 everywhere")
    return model, config


def saved_config(state, checkpoint_path):
    """The TrainConfig saved in a checkpoint ``state``, its settings checked; unknown ones ignored."""
    saved = state.get("config") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise ValueError(f"{checkpoint_path} is not a checkpoint of atrousnp's training (it saves no settings)")
    config = from_plain(saved)
    config.backbone_weights = None  # what the backbone started from is in the weights now
    try:
        check_settings(config)
    except ValueError as error:
        raise ValueError(f"{checkpoint_path}: its saved settings cannot work: {error}") from None
    return resolve(config)
