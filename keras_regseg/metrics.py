"""Keras metrics of segmentation quality for ``compile(metrics=...)``: mean IoU, Dice,
pixel accuracy.

They read the library's targets as every method's loss does: a label map
``[B, H, W]``, a dict with ``"dense"`` or ``"seeds"`` (dense first: the
quality measure), or packed targets (labels first, then the image;
:func:`~keras_regseg.losses.targets.pack_targets`). Pixels without a label (``IGNORE_INDEX``) or outside the image
(``PAD_INDEX``) do not count, and a class absent from both labels and
predictions does not enter the mean. Validation data with dense labels then
logs ``val_mean_iou`` and ``val_dice`` from inside ``fit``; on training batches
of seeds they measure the fit to the seeds. ``train.py`` compiles
:func:`segmentation_metrics` into every method's model and scores its
per-epoch validation of 2D data with the same classes.

>>> import numpy as np, keras
>>> labels = np.array([[[0, 1], [1, 255]]])
>>> logits = keras.ops.one_hot(np.array([[[0, 1], [0, 0]]]), 2) * 5.0
>>> metric = MeanIoU(num_classes=2)
>>> metric.update_state(labels, logits)
>>> round(float(metric.result()), 3)     # IoU 1/2 (background), 1/2 (class 1)
0.5
>>> dice = Dice(num_classes=2); dice.update_state(labels, logits)
>>> round(float(dice.result()), 3)       # 2/3 and 2/3
0.667
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_regseg.losses.targets import unpack_targets

__all__ = ["ConfusionMetric", "Dice", "label_map", "MeanIoU", "PixelAccuracy",
           "segmentation_metrics"]


def label_map(y_true: tf.Tensor | dict) -> tf.Tensor | None:
    """int32 ``[B, H, W]`` labels of any target the library makes (``None``: image-level only).

    >>> label_map({"tags": [[1.0, 0.0]]}) is None, label_map(tf.ones([1, 2])) is None
    (True, True)
    """
    if isinstance(y_true, dict):
        for key in ("dense", "seeds"):
            if key in y_true:
                return tf.cast(y_true[key], tf.int32)
        return None
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank is not None and y_true.shape.rank < 3:
        return None   # image-level facts alone ([B, K] tags; a one-key dict may arrive bare)
    return unpack_targets(y_true)[0]


class ConfusionMetric(keras.metrics.Metric):
    """A confusion matrix over labeled pixels; subclasses turn it into a score."""

    default_name = "confusion"
    """The metric's name when none is given (``val_<name>`` in the logs)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None):
        super().__init__(name=name or self.default_name, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes),
                                        initializer="zeros", dtype="float64", name="matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = label_map(y_true)
        if labels is None:
            return
        predictions = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        labeled = (labels >= 0) & (labels < self.num_classes)
        if sample_weight is not None:   # one weight per image
            weights = tf.reshape(tf.cast(sample_weight, tf.float64), [-1, 1, 1])
            weights = tf.broadcast_to(weights, tf.shape(labels))
        else:
            weights = tf.ones(tf.shape(labels), tf.float64)
        batch = tf.math.confusion_matrix(tf.boolean_mask(labels, labeled),
                                         tf.boolean_mask(predictions, labeled),
                                         self.num_classes,
                                         weights=tf.boolean_mask(weights, labeled),
                                         dtype=tf.float64)
        self.matrix.assign_add(batch)

    def reset_state(self):
        self.matrix.assign(tf.zeros_like(self.matrix))

    def _per_class(self):
        """``(true positives, labeled, predicted)`` per class, and which classes count."""
        matrix = tf.convert_to_tensor(self.matrix)
        true_positives = tf.linalg.diag_part(matrix)
        labeled, predicted = tf.reduce_sum(matrix, 1), tf.reduce_sum(matrix, 0)
        return true_positives, labeled, predicted, (labeled + predicted) > 0

    @staticmethod
    def _mean_present(scores, present):
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(tf.where(present, scores, 0.0)),
                                             tf.reduce_sum(tf.cast(present, tf.float64))),
                       tf.float32)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_regseg")
class MeanIoU(ConfusionMetric):
    """Mean intersection over union of the classes present (see the module docstring)."""

    default_name = "mean_iou"

    def result(self):
        true_positives, labeled, predicted, present = self._per_class()
        union = labeled + predicted - true_positives
        return self._mean_present(tf.math.divide_no_nan(true_positives, union), present)


@keras.saving.register_keras_serializable(package="keras_regseg")
class Dice(ConfusionMetric):
    """Mean Dice (2 TP / (labeled + predicted)) of the classes present."""

    default_name = "dice"

    def result(self):
        true_positives, labeled, predicted, present = self._per_class()
        return self._mean_present(tf.math.divide_no_nan(2.0 * true_positives,
                                                        labeled + predicted), present)


@keras.saving.register_keras_serializable(package="keras_regseg")
class PixelAccuracy(ConfusionMetric):
    """The fraction of labeled pixels predicted right."""

    default_name = "pixel_accuracy"

    def result(self):
        true_positives, labeled, _, _ = self._per_class()
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(true_positives),
                                             tf.reduce_sum(labeled)), tf.float32)


def segmentation_metrics(num_classes: int) -> list[ConfusionMetric]:
    """The metrics ``train.py`` logs: ``miou``, ``dice`` and ``pixel_accuracy``.

    The names are those of the run's evaluation (``val_miou`` in the history).

    >>> [m.name for m in segmentation_metrics(3)]
    ['miou', 'dice', 'pixel_accuracy']
    """
    return [MeanIoU(num_classes, name="miou"), Dice(num_classes),
            PixelAccuracy(num_classes)]
