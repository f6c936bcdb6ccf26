"""Segmentation metrics from a confusion matrix (rows: ground truth, columns: prediction)."""

import numpy as np


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """cm[t, p] = number of pixels of true class t predicted as p; ignored pixels are skipped."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"confusion_matrix: pred has shape {pred.shape}, label has shape {label.shape}")
    keep = label != ignore_index
    truth, guess = label[keep].astype(np.int64), pred[keep].astype(np.int64)
    if truth.size and (truth.max() >= num_classes or guess.max() >= num_classes or min(truth.min(), guess.min()) < 0):
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes}) or be {ignore_index}")
    return np.bincount(truth * num_classes + guess, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_iou(cm):
    """IoU_c = TP / (TP + FP + FN); NaN for a class absent from both ground truth and prediction.
    cm: (C, C), or a stack (..., C, C) of them, giving (..., C)."""
    cm = np.asarray(cm, np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    union = cm.sum(axis=-2) + cm.sum(axis=-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm):
    """Mean IoU over the classes present in ground truth or prediction: a float for cm: (C, C),
    an array (...) for a stack (..., C, C)."""
    iou = per_class_iou(cm)
    present = ~np.isnan(iou)
    with np.errstate(invalid="ignore"):
        miou = np.where(present.any(axis=-1), np.nansum(iou, axis=-1) / present.sum(axis=-1), np.nan)
    return float(miou) if miou.ndim == 0 else miou


def pixel_accuracy(cm):
    cm = np.asarray(cm)
    return float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
