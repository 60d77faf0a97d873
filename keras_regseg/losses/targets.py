"""Packing of training targets for Keras losses.

Keras calls a loss as ``loss(y_true, y_pred)``. Regularized losses (CRF,
Potts) also need the image, so keras_regseg packs the label map and the image
into one float32 tensor ``y_true`` of shape ``[B, H, W, 1 + C]``: channel 0 is
the label map (class index, ``IGNORE_INDEX`` or ``PAD_INDEX``; exact in
float32), channels ``1:`` are the image. Losses that need only labels read
channel 0 and also accept a plain ``[B, H, W]`` or ``[B, H, W, 1]`` label map.

>>> import numpy as np
>>> labels = np.zeros((2, 4, 4), "int32"); image = np.ones((2, 4, 4, 3), "float32")
>>> y = pack_targets(labels, image)
>>> tuple(y.shape)
(2, 4, 4, 4)
>>> l, im = unpack_targets(y)
>>> tuple(l.shape), tuple(im.shape)
((2, 4, 4), (2, 4, 4, 3))
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["pack_targets", "unpack_targets"]


def pack_targets(labels: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """Concatenate an integer label map ``[..., H, W]`` and an image ``[..., H, W, C]``."""
    labels = tf.cast(labels, tf.float32)[..., None]
    return tf.concat([labels, tf.cast(image, tf.float32)], axis=-1)


def unpack_targets(y_true: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Split packed targets into ``(labels int32 [B, H, W], image float32 [B, H, W, C] or None)``.

    A label-only ``y_true`` (rank 3, or rank 4 with one channel) gives ``image = None``.
    """
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 3:
        return tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32), None
    labels = tf.cast(tf.round(tf.cast(y_true[..., 0], tf.float32)), tf.int32)
    if y_true.shape[-1] == 1:
        return labels, None
    return labels, tf.cast(y_true[..., 1:], tf.float32)
