"""Confusion matrix and the metrics derived from it (IoU, mIoU, pixel accuracy).

Rows of a confusion matrix are ground-truth classes, columns predicted classes:
``cm[i, j]`` counts pixels of class ``i`` predicted as ``j``. Pixels whose
label is in ``ignore`` (by default :data:`~keras_regseg.data.spec.IGNORE_INDEX`
and :data:`~keras_regseg.data.spec.PAD_INDEX`) are not counted.

>>> import numpy as np
>>> labels = np.array([[0, 0, 1], [1, 1, 255]])
>>> preds = np.array([[0, 1, 1], [1, 0, 0]])
>>> cm = confusion_matrix(labels, preds, num_classes=2)
>>> cm.tolist()
[[1, 1], [1, 2]]
>>> round(mean_iou(cm), 4), round(pixel_accuracy(cm), 4)
(0.4167, 0.6)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX

__all__ = ["confusion_matrix", "ConfusionAccumulator", "iou_per_class", "mean_iou",
           "pixel_accuracy", "present_classes", "summarize"]


def confusion_matrix(labels: ArrayLike, predictions: ArrayLike, num_classes: int,
                     ignore: Sequence[int] = (IGNORE_INDEX, PAD_INDEX)) -> np.ndarray:
    """Count ``(label, prediction)`` pairs into an int64 ``[K, K]`` matrix.

    Args:
        labels: int array of any shape; class indices ``0..K-1`` or values in ``ignore``.
        predictions: int array of the same shape; class indices ``0..K-1``
            (checked only where the label is counted).
        num_classes: K.
        ignore: label values whose pixels are skipped.

    Raises:
        ValueError: shapes differ, or a counted label or prediction is outside ``0..K-1``.

    >>> confusion_matrix([0, 1, 254], [1, 1, 0], 2).tolist()
    [[0, 1], [0, 1]]
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match predictions shape {predictions.shape}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}.")
    counted = ~np.isin(labels, np.asarray(ignore)) if len(ignore) else np.ones(labels.shape, bool)
    labels = labels[counted].astype(np.int64)
    predictions = predictions[counted].astype(np.int64)
    _check_range(labels, num_classes, "labels", f" (ignored values: {tuple(ignore)})")
    _check_range(predictions, num_classes, "predictions", "")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def _check_range(values, num_classes, name, extra):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)]
        raise ValueError(
            f"{name} contain {np.unique(bad)[:10].tolist()} outside 0..{num_classes - 1}{extra}.")


def _check_matrix(cm):
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K]; got shape {cm.shape}.")
    return cm.astype(np.float64)


def present_classes(cm: np.ndarray) -> np.ndarray:
    """Boolean ``[K]``: the class occurs in the ground truth or in the prediction."""
    cm = _check_matrix(cm)
    return (cm.sum(axis=0) + cm.sum(axis=1)) > 0


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU ``TP / (TP + FP + FN)`` of each class, float64 ``[K]``.

    A class absent from both the ground truth and the prediction has no IoU
    (0 / 0); its entry is NaN on purpose so that it cannot be mistaken for 0 or 1.
    :func:`mean_iou` skips those classes; use :func:`present_classes` to mask them.

    >>> iou_per_class([[2, 0, 0], [1, 1, 0], [0, 0, 0]]).round(3).tolist()
    [0.667, 0.5, nan]
    """
    cm = _check_matrix(cm)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(cm.shape[0], np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction.

    Classes absent from both are excluded (their IoU is undefined), so the
    result is never NaN.

    Raises:
        ValueError: the matrix counts no pixel.

    >>> round(mean_iou([[2, 0, 0], [1, 1, 0], [0, 0, 0]]), 4)
    0.5833
    """
    present = present_classes(cm)
    if not present.any():
        raise ValueError("confusion matrix counts no pixel; mean IoU is undefined.")
    return float(iou_per_class(cm)[present].mean())


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels whose prediction equals the label.

    Raises:
        ValueError: the matrix counts no pixel.

    >>> pixel_accuracy([[2, 0], [1, 1]])
    0.75
    """
    cm = _check_matrix(cm)
    total = cm.sum()
    if total == 0:
        raise ValueError("confusion matrix counts no pixel; pixel accuracy is undefined.")
    return float(np.trace(cm) / total)


def summarize(cm):
    """``{"miou", "iou_per_class", "dice_per_class", "pixel_accuracy", "pixels"}`` of a
    confusion matrix.

    The per-class lists hold ``None`` for classes absent from both the ground
    truth and the prediction (JSON-friendly, no NaN); a class's Dice is
    ``2 IoU / (1 + IoU)``.

    >>> summarize(np.array([[2, 1], [1, 0]]))["dice_per_class"]
    [0.6666666666666666, 0.0]
    """
    iou = iou_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "iou_per_class": [None if np.isnan(v) else float(v) for v in iou],
        "dice_per_class": [None if np.isnan(v) else float(2 * v / (1 + v)) for v in iou],
        "pixel_accuracy": pixel_accuracy(cm),
        "pixels": int(np.asarray(cm).sum()),
    }


class ConfusionAccumulator:
    """Streaming confusion matrix over many label/prediction maps.

    >>> acc = ConfusionAccumulator(2)
    >>> acc.update([[0, 1]], [[0, 0]])
    >>> acc.update([[1, 255]], [[1, 0]])
    >>> r = acc.result()
    >>> r["pixel_accuracy"], r["iou_per_class"]
    (0.6666666666666666, [0.5, 0.5])
    """

    def __init__(self, num_classes: int, ignore: Sequence[int] = (IGNORE_INDEX, PAD_INDEX)):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}.")
        self.num_classes = int(num_classes)
        self.ignore = tuple(ignore)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, labels, predictions):
        """Add one (or a batch of) label and prediction maps of equal shape."""
        self.matrix += confusion_matrix(labels, predictions, self.num_classes, self.ignore)

    def reset(self):
        """Forget everything counted so far."""
        self.matrix[...] = 0

    def result(self):
        """``{"miou", "iou_per_class", "pixel_accuracy", "pixels"}``; see :func:`summarize`."""
        return summarize(self.matrix)
