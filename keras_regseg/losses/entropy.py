"""Entropy of the prediction on unlabeled pixels (entropy minimization).

Minimizing the Shannon entropy of the softmax where no seed says anything
pushes the network to confident predictions there (Grandvalet & Bengio 2005);
added to pCE it is the "entropy minimization" baseline of weakly supervised
segmentation (WSL4MIS). The entropy is divided by ``log K``, so it lies in
[0, 1] whatever the number of classes and one weight means the same on every
dataset.
"""

from __future__ import annotations

import math
import typing

import keras
import tensorflow as tf

from keras_regseg.constants import IGNORE_INDEX
from keras_regseg.losses.cross_entropy import per_pixel_log_probs
from keras_regseg.losses.targets import unpack_targets
from keras_regseg.ops.replicas import replica_sum

__all__ = ["EntropyLoss", "normalized_entropy"]


def normalized_entropy(log_probs):
    """Per-pixel entropy ``-sum_k p_k log p_k / log K`` of log-probabilities ``[..., K]``."""
    num_classes = log_probs.shape[-1] or tf.shape(log_probs)[-1]
    entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
    return entropy / tf.math.log(tf.cast(num_classes, tf.float32))


@keras.saving.register_keras_serializable(package="keras_regseg")
class EntropyLoss(keras.losses.Loss):
    """Mean normalized entropy of the softmax over the pixels without a seed.

    Per-pixel values ``[B, H, W]`` whose mean is the mean over the unlabeled
    pixels of the global batch (counts summed over ``tf.distribute`` replicas,
    as :class:`~keras_regseg.losses.PartialCrossEntropy` does for seeds), times
    ``weight``. Crop padding is not image and is left out.

    >>> import numpy as np
    >>> y = np.full((1, 2, 2), 255, "float32"); y[0, 0, 0] = 0   # one seed
    >>> uniform = np.zeros((1, 2, 2, 4), "float32")
    >>> round(float(EntropyLoss()(y, uniform)), 4)                 # log 4 / log 4
    1.0
    >>> confident = np.zeros((1, 2, 2, 4), "float32"); confident[..., 2] = 30.0
    >>> float(EntropyLoss()(y, confident)) < 1e-6
    True
    """

    def __init__(self, weight: float = 1.0, from_logits: bool = True, name: str = "entropy",
                 **kwargs: typing.Any):
        super().__init__(name=name, **kwargs)
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight = {weight!r}; expected a finite number >= 0.")
        self.weight = float(weight)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels, _ = unpack_targets(y_true)
        log_probs = per_pixel_log_probs(y_pred, self.from_logits)
        # Only the ignore value marks image without a seed: crop padding is not image.
        unlabeled = tf.cast(labels == IGNORE_INDEX, tf.float32)
        num_pixels = replica_sum(tf.cast(tf.size(unlabeled), tf.float32))
        num_unlabeled = tf.maximum(replica_sum(tf.reduce_sum(unlabeled)), 1.0)
        entropy = normalized_entropy(log_probs)
        return self.weight * entropy * unlabeled * (num_pixels / num_unlabeled)

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, from_logits=self.from_logits)
        return config
