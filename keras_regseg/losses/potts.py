"""Potts energy of a hard labeling: the grid-CRF energy methods are compared by.

    E(X) = weight * sum_pq w_pq [X_p != X_q]

over the undirected 8-neighbourhood edges, with the contrast-sensitive weights
of :mod:`keras_regseg.losses.contrast` (the same weights as the grid-CRF loss
and the alpha-expansion solver). Pixels labelled :data:`PAD_INDEX` (or False
in ``valid``) are outside the image: their edges do not count and they do not
enter sigma. The ADM paper compares optimizers by the energy they reach; log
it for every method with :class:`PottsEnergy`.

>>> import numpy as np
>>> labels = np.array([[0, 0, 1]]); image = np.zeros((1, 3, 1))  # constant image: w = 1 / dist
>>> float(potts_energy_np(labels, image))
1.0
"""

from __future__ import annotations

import keras
import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.losses.contrast import (
    DIRECTIONS, _pair_slices, flat_offsets, grid_edge_weights, grid_edge_weights_np, shift_flat)
from keras_regseg.losses.crf_inputs import check_weight, crf_inputs

__all__ = ["potts_energy", "potts_energy_np", "PottsEnergy"]


def potts_energy(labels: tf.Tensor, image: tf.Tensor, weight: float = 1.0,
                 valid: tf.Tensor | None = None) -> tf.Tensor:
    """Potts energy of each labeling of a batch, ``[B]`` (TensorFlow).

    Args:
      labels: int ``[B, H, W]`` hard labeling (``PAD_INDEX`` = outside the image).
      image: ``[B, H, W, C]`` float image.
      weight: multiplier of the energy.
      valid: optional bool ``[B, H, W]``, False outside the image.

    >>> labels = tf.constant([[[0, 1], [0, 1]]]); image = tf.zeros([1, 2, 2, 1])
    >>> round(float(potts_energy(labels, image)[0]), 4)  # 2 horizontal + 2 diagonal cuts
    3.4142
    """
    labels = tf.convert_to_tensor(labels)
    inside = tf.not_equal(labels, PAD_INDEX)
    if valid is not None:
        inside &= tf.cast(valid, tf.bool)
    weights = grid_edge_weights(image, inside)  # zero where q is outside: no wrap-around cuts count
    shape = tf.shape(labels)
    flat = tf.reshape(labels, tf.stack([shape[0], shape[1] * shape[2]]))
    cut = tf.stack([tf.cast(tf.not_equal(flat, shift_flat(flat, offset)), weights.dtype)
                    for offset in flat_offsets(shape[2])], axis=1)
    return weight * tf.reduce_sum(tf.reshape(weights, tf.shape(cut)) * cut, axis=[1, 2])


def potts_energy_np(labels: ArrayLike, image: ArrayLike, weight: float = 1.0,
                    valid: ArrayLike | None = None) -> float | np.ndarray:
    """Numpy twin of :func:`potts_energy` for one image ``[H, W]`` (returns a float) or a batch (``[B]``)."""
    labels = np.asarray(labels)
    inside = labels != PAD_INDEX
    if valid is not None:
        inside &= np.asarray(valid, bool)
    weights = grid_edge_weights_np(image, inside)  # [..., 4, H, W]
    height, width = labels.shape[-2:]
    cuts = []
    for dy, dx in DIRECTIONS:
        p, q, padding = _pair_slices(dy, dx, height, width)
        pad = [(0, 0)] * (labels.ndim - 2) + list(padding)
        cuts.append(np.pad(labels[(..., *p)] != labels[(..., *q)], pad))
    energy = weight * np.sum(weights * np.stack(cuts, -3), axis=(-3, -2, -1))
    return float(energy) if np.ndim(energy) == 0 else energy


@keras.saving.register_keras_serializable(package="keras_regseg")
class PottsEnergy(keras.metrics.Metric):
    """Mean Potts energy of the predicted (argmax) labeling, per image.

    ``y_true``: seeds and image (a dict, or packed), ``y_pred``: logits ``[B, H, W, K]``.
    Padding pixels (label ``PAD_INDEX``) are excluded. With ``per_pixel=True``
    (default) each image's energy is divided by its number of valid pixels, so
    images of different sizes compare; ``False`` gives the plain sum.

    >>> from keras_regseg.losses.targets import pack_targets
    >>> metric = PottsEnergy(per_pixel=False)
    >>> y_true = pack_targets(np.full((1, 2, 2), 255), np.zeros((1, 2, 2, 1)))
    >>> logits = np.array([[[[1, 0], [0, 1]], [[1, 0], [0, 1]]]], "float32")
    >>> metric.update_state(y_true, logits); round(float(metric.result()), 4)
    3.4142
    """

    def __init__(self, weight: float = 1.0, per_pixel: bool = True, name: str = "potts_energy",
                 dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.weight = check_weight(weight, type(self).__name__)
        self.per_pixel = bool(per_pixel)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the energies of a batch; ``sample_weight`` [B] weights images."""
        logits, image, valid = crf_inputs(y_true, y_pred, type(self).__name__)
        labels = tf.where(valid, tf.argmax(logits, axis=-1, output_type=tf.int32), PAD_INDEX)
        energy = tf.cast(potts_energy(labels, image, self.weight), tf.float32)
        if self.per_pixel:
            energy /= tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2]), 1.0)
        image_weight = tf.ones_like(energy) if sample_weight is None else tf.reshape(
            tf.cast(sample_weight, tf.float32), [-1])
        self.total.assign_add(tf.reduce_sum(energy * image_weight))
        self.count.assign_add(tf.reduce_sum(image_weight))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, per_pixel=self.per_pixel)
        return config
