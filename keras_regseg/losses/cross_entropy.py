"""Cross-entropy on labeled pixels: full supervision and partial (pCE).

Both return per-pixel values ``[B, H, W]`` scaled so that Keras's default
reduction (mean over all pixels of the local batch) equals the mean
cross-entropy over *labeled* pixels only. Returning per-pixel values, not a
scalar, keeps the gradient scale right under ``tf.distribute``; the pixel
counts are summed over the replicas (:func:`replica_sum`), so the replicas'
losses add up to the mean over the labeled pixels of the *global* batch, as
on one device, even when the replicas' shares hold different numbers of seeds.
"""

from __future__ import annotations

import typing

import keras
import tensorflow as tf

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.losses.targets import unpack_targets
from keras_regseg.ops.replicas import replica_sum

__all__ = ["CrossEntropy", "labeled_mask", "masked_cross_entropy", "PartialCrossEntropy",
           "per_pixel_log_probs"]


def labeled_mask(labels, num_classes):
    """1.0 where ``labels`` holds a class index in ``[0, num_classes)``, else 0.0.

    The ignore value (255), crop padding (254) and anything else outside the
    class range carry no label. Readers reject out-of-range values, so here
    "outside" only means "unlabeled".
    """
    return tf.cast((labels >= 0) & (labels < num_classes), tf.float32)


def per_pixel_log_probs(y_pred, from_logits):
    """float32 log-probabilities ``[B, H, W, K]`` (mixed precision safe)."""
    y_pred = tf.cast(y_pred, tf.float32)
    if from_logits:
        return tf.nn.log_softmax(y_pred, axis=-1)
    return tf.math.log(tf.clip_by_value(y_pred, 1e-12, 1.0))


def masked_cross_entropy(labels, log_probs):
    """Per-pixel CE on labeled pixels, rescaled to a mean over labeled pixels.

    Returns ``[B, H, W]`` whose mean is ``sum(mask * ce) / max(sum(mask), 1)``;
    under ``tf.distribute`` both counts are those of the global batch, so the
    replicas' means divided by the number of replicas (what Keras does) add up
    to that mean over the global batch.
    """
    num_classes = tf.shape(log_probs)[-1]
    mask = labeled_mask(labels, num_classes)
    safe_labels = tf.where(mask > 0, labels, tf.zeros_like(labels))
    ce = -tf.gather(log_probs, safe_labels, axis=-1, batch_dims=3)
    num_pixels = replica_sum(tf.cast(tf.size(mask), tf.float32))
    num_labeled = tf.maximum(replica_sum(tf.reduce_sum(mask)), 1.0)
    return ce * mask * (num_pixels / num_labeled)


@keras.saving.register_keras_serializable(package="keras_regseg")
class CrossEntropy(keras.losses.Loss):
    """Cross-entropy over every pixel that carries a class label (full supervision).

    ``y_true`` is a label map ``[B, H, W]``, a dict with ``"seeds"`` or ``"dense"``,
    or packed targets ``[B, H, W, 1 + C]`` (see :mod:`keras_regseg.losses.targets`);
    pixels whose label is ``ignore_index``, the crop padding value, or any value outside
    ``[0, K)`` are skipped. ``y_pred`` are logits ``[B, H, W, K]`` (or
    probabilities with ``from_logits=False``).

    >>> import numpy as np
    >>> loss = CrossEntropy()
    >>> labels = np.array([[[0, 1], [255, 255]]], "float32")   # two labeled pixels
    >>> logits = np.zeros((1, 2, 2, 2), "float32")            # uniform prediction
    >>> round(float(loss(labels, logits)), 4)                   # log(2)
    0.6931
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, from_logits: bool = True,
                 name: str | None = None, **kwargs: typing.Any):
        super().__init__(name=name or self._default_name(), **kwargs)
        self.ignore_index = int(ignore_index)
        self.from_logits = bool(from_logits)

    @classmethod
    def _default_name(cls):
        return "cross_entropy"

    def call(self, y_true, y_pred):
        labels, _ = unpack_targets(y_true)
        if self.ignore_index != IGNORE_INDEX:
            # A custom ignore value is mapped to the library's convention.
            labels = tf.where(labels == self.ignore_index, IGNORE_INDEX, labels)
        return masked_cross_entropy(labels, per_pixel_log_probs(y_pred, self.from_logits))

    def get_config(self):
        config = super().get_config()
        config.update(ignore_index=self.ignore_index, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_regseg")
class PartialCrossEntropy(CrossEntropy):
    """Partial cross-entropy (pCE): cross-entropy on seed pixels (scribbles, clicks) only.

    The computation is that of :class:`CrossEntropy`; the name says what the
    labels are. Images without any seed pixel contribute nothing.

    >>> import numpy as np
    >>> y = np.full((1, 4, 4), 255, "float32"); y[0, 0, 0] = 1   # one click of class 1
    >>> logits = np.zeros((1, 4, 4, 3), "float32"); logits[..., 1] = 5.0
    >>> float(PartialCrossEntropy()(y, logits)) < 0.02
    True
    """

    @classmethod
    def _default_name(cls):
        return "partial_cross_entropy"
