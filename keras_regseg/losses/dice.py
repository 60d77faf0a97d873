"""Soft multi-class Dice loss, and WSL4MIS's full-supervision loss ``0.5 * (CE + Dice)``.

The Dice loss of WSL4MIS (``utils/losses.py``) is computed over the whole
batch, one value per class, background included:

    dice_k = (2 sum_p s_pk t_pk + smooth) / (sum_p s_pk^2 + sum_p t_pk^2 + smooth)
    loss   = 1 - mean_k dice_k

with ``s`` the softmax and ``t`` the one-hot labels. Pixels without a class
label (ignore, crop padding) take part in no sum. Dice is not a mean over
pixels, so the loss returns its value broadcast over the pixels ``[B, H, W]``:
Keras's mean reduction then gives the value itself, like the other losses of
keras_regseg. The sums run over the *global* batch under ``tf.distribute``
(:func:`~keras_regseg.losses.cross_entropy.replica_sum`, differentiable), so
the replicas' losses add up to the Dice of the global batch.
"""

from __future__ import annotations

import typing

import keras
import tensorflow as tf

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.losses.cross_entropy import CrossEntropy, labeled_mask
from keras_regseg.ops.replicas import replica_sum
from keras_regseg.losses.targets import unpack_targets

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.losses.composite import WeightedSumLoss

__all__ = ["cross_entropy_plus_dice", "DICE_SMOOTH", "DiceLoss", "soft_dice_loss"]

DICE_SMOOTH = 1e-5
"""WSL4MIS's smoothing term: keeps an absent class (0 / 0) at Dice 1, i.e. no loss."""


def soft_dice_loss(labels: tf.Tensor, probabilities: tf.Tensor,
                   smooth: float = DICE_SMOOTH) -> tf.Tensor:
    """``1 - mean_k dice_k`` of ``probabilities [B, H, W, K]`` against int ``labels [B, H, W]``.

    >>> import numpy as np
    >>> labels = np.array([[[0, 1]]]); probs = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], "float32")
    >>> round(float(soft_dice_loss(labels, probs)), 6)        # perfect prediction
    0.0
    """
    probabilities = tf.cast(probabilities, tf.float32)
    num_classes = tf.shape(probabilities)[-1]
    labels = tf.cast(labels, tf.int32)
    mask = labeled_mask(labels, num_classes)[..., None]
    one_hot = tf.one_hot(tf.where(mask[..., 0] > 0, labels, 0), num_classes) * mask
    probabilities = probabilities * mask
    axes = [0, 1, 2]
    intersection = replica_sum(tf.reduce_sum(probabilities * one_hot, axes))
    predicted = replica_sum(tf.reduce_sum(tf.square(probabilities), axes))
    target = replica_sum(tf.reduce_sum(one_hot, axes))   # one-hot: t^2 = t
    dice = (2.0 * intersection + smooth) / (predicted + target + smooth)
    return 1.0 - tf.reduce_mean(dice)


@keras.saving.register_keras_serializable(package="keras_regseg")
class DiceLoss(keras.losses.Loss):
    """Soft multi-class Dice loss (WSL4MIS), per pixel ``[B, H, W]``.

    ``y_true`` is a label map ``[B, H, W]``, a dict with ``"dense"`` (or ``"seeds"``)
    or packed targets (see :mod:`keras_regseg.losses.targets`); labels outside
    ``[0, K)`` (ignore, padding) are excluded. ``y_pred`` are logits (or probabilities with
    ``from_logits=False``).

    >>> import numpy as np
    >>> labels = np.array([[[0, 1], [1, 255]]], "float32")      # one unlabeled pixel
    >>> logits = np.zeros((1, 2, 2, 2), "float32")              # softmax 0.5 everywhere
    >>> # class 0: 2*0.5 / (3*0.25 + 1) ; class 1: 2*1.0 / (3*0.25 + 2)
    >>> expected = 1 - (1.0 / 1.75 + 2.0 / 2.75) / 2
    >>> abs(float(DiceLoss()(labels, logits)) - expected) < 1e-5
    True
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, from_logits: bool = True,
                 smooth: float = DICE_SMOOTH, name: str = "dice_loss", **kwargs: typing.Any):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        labels, _ = unpack_targets(y_true)
        if self.ignore_index != IGNORE_INDEX:
            labels = tf.where(labels == self.ignore_index, IGNORE_INDEX, labels)
        y_pred = tf.cast(y_pred, tf.float32)
        probabilities = tf.nn.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        loss = soft_dice_loss(labels, probabilities, self.smooth)
        return tf.fill(tf.shape(labels), 1.0) * loss

    def get_config(self):
        config = super().get_config()
        config.update(ignore_index=self.ignore_index, from_logits=self.from_logits,
                      smooth=self.smooth)
        return config


def cross_entropy_plus_dice(name: str = "ce_plus_dice") -> WeightedSumLoss:
    """WSL4MIS's full-supervision loss ``0.5 * (CE + Dice)`` as a Keras loss.

    >>> import numpy as np
    >>> loss = cross_entropy_plus_dice()
    >>> labels = np.array([[[0, 1]]], "float32"); logits = np.zeros((1, 1, 2, 2), "float32")
    >>> ce, dice = float(CrossEntropy()(labels, logits)), float(DiceLoss()(labels, logits))
    >>> abs(float(loss(labels, logits)) - 0.5 * (ce + dice)) < 1e-6
    True
    """
    from keras_regseg.losses.composite import WeightedSumLoss

    return WeightedSumLoss([CrossEntropy(), DiceLoss()], [0.5, 0.5], name=name)
