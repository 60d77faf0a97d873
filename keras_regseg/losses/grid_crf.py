"""Grid (8-neighbourhood) CRF loss: relaxed contrast-sensitive Potts for gradient descent.

With edge weights w_pq from :mod:`keras_regseg.losses.contrast` (each undirected
8-neighbourhood edge once) and the softmax S_p of pixel p, two relaxations of
the Potts energy ``E(X) = sum_pq w_pq [X_p != X_q]``:

- ``"bilinear"`` (tight, non-convex): ``sum_pq w_pq (1 - <S_p, S_q>)``.
  In matrix form this is ``1/2 sum_k S^k^T W (1 - S^k)`` (W symmetric, both
  ``W_pq`` and ``W_qp`` hold w_pq), i.e. half the trust-region paper's eq. 7,
  and half the ADM paper's eq. 9 ``<1,S_p> + <1,S_q> - 2<S_p,S_q>``, which on
  the simplex (``<1, S_p> = 1``) is this same relaxation.
- ``"quadratic"`` (convex, not tight): ``sum_pq w_pq ||S_p - S_q||^2 / 2``
  (the trust-region paper's eq. 2, halved).

The halving makes both equal E(X) at one-hot S, so the loss, the Potts metric
(:mod:`keras_regseg.losses.potts`) and the alpha-expansion solver all speak the
same energy. Both are zero for a constant labeling.

Normalization: like rloss, per image and per pixel: the loss value is
``weight * E(S) / N`` with N the image's number of valid (non-padding)
pixels, averaged over the batch.

>>> import numpy as np
>>> from keras_regseg.losses.targets import pack_targets
>>> image = np.random.RandomState(0).rand(2, 6, 7, 1).astype("float32")
>>> y_true = pack_targets(np.full((2, 6, 7), 255), image)
>>> constant = np.zeros((2, 6, 7, 3), "float32"); constant[..., 1] = 9.0
>>> float(GridCRFLoss()(y_true, constant)) < 1e-3
True
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_regseg.losses.contrast import flat_offsets, grid_edge_weights, shift_flat, unshift_flat
from keras_regseg.losses.crf_inputs import check_finite_logits, check_weight, crf_inputs

__all__ = ["grid_crf_energy", "grid_crf_energy_map", "GridCRFLoss", "RELAXATIONS"]

RELAXATIONS = ("bilinear", "quadratic")


def _check_relaxation(relaxation):
    if relaxation not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {RELAXATIONS}; got {relaxation!r}.")


def grid_crf_energy_map(probs, edge_weights, relaxation="bilinear"):
    """Relaxed Potts energy per pixel ``[B, H, W]``: each edge's term stored at its first pixel.

    Args:
      probs: ``[B, H, W, K]`` soft labeling (rows on the simplex).
      edge_weights: ``[B, 4, H, W]`` from :func:`grid_edge_weights` (constants: no gradient).
      relaxation: ``"bilinear"`` or ``"quadratic"``.

    The map sums to the image's relaxed energy. Its gradient is written out
    (each edge sends one term to p and one to q) because TensorFlow's gradient of
    shifted slices costs several times the forward pass.
    """
    _check_relaxation(relaxation)
    probs = tf.convert_to_tensor(probs)
    shape = tf.shape(probs)
    batch, height, width = shape[0], shape[1], shape[2]
    pixels = height * width
    weights = tf.reshape(tf.cast(edge_weights, probs.dtype), tf.stack([batch, 4, pixels]))
    offsets = flat_offsets(width)
    bilinear = relaxation == "bilinear"

    @tf.custom_gradient
    def energy(flat):
        neighbours = [shift_flat(flat, offset) for offset in offsets]
        if bilinear:
            terms = [1.0 - tf.reduce_sum(flat * q, -1) for q in neighbours]
        else:
            terms = [0.5 * tf.reduce_sum(tf.square(flat - q), -1) for q in neighbours]
        value = tf.add_n([weights[:, i] * term for i, term in enumerate(terms)])

        def gradient(upstream):
            total = tf.zeros_like(flat)
            for i, (offset, q) in enumerate(zip(offsets, neighbours)):
                scale = (upstream * weights[:, i])[..., None]
                if bilinear:  # d/dS_p = -w S_q, d/dS_q = -w S_p
                    to_p, to_q = -scale * q, -scale * flat
                else:  # d/dS_p = w (S_p - S_q) = -d/dS_q
                    to_p = scale * (flat - q)
                    to_q = -to_p
                total += to_p + unshift_flat(to_q, offset)
            return total

        return value, gradient

    flat = tf.reshape(probs, tf.stack([batch, pixels, -1]))
    return tf.reshape(energy(flat), tf.stack([batch, height, width]))


def grid_crf_energy(probs: tf.Tensor, image: tf.Tensor, valid: tf.Tensor | None = None,
                    relaxation: str = "bilinear") -> tf.Tensor:
    """Relaxed grid-CRF (Potts) energy of each image, ``[B]``, un-normalized.

    >>> probs = tf.one_hot([[[0, 1]]], 2)  # one row, two pixels, different labels
    >>> float(grid_crf_energy(probs, tf.zeros([1, 1, 2, 1]))[0])  # constant image: w = 1
    1.0
    """
    probs = tf.convert_to_tensor(probs)
    weights = tf.cast(grid_edge_weights(image, valid), probs.dtype)
    return tf.reduce_sum(grid_crf_energy_map(probs, weights, relaxation), axis=[1, 2])


@keras.saving.register_keras_serializable(package="keras_regseg")
class GridCRFLoss(keras.losses.Loss):
    """Relaxed contrast-sensitive 8-grid Potts regularizer (method ``gd``, ``regularizer: grid``).

    ``y_true``: a dict of ``"seeds"`` and ``"image"`` (in [0, 1], grayscale or
    colour), or both packed ``[B, H, W, 1 + C]`` (:mod:`keras_regseg.losses.targets`);
    pixels labelled ``PAD_INDEX`` are outside the image
    and take no part. ``y_pred``: logits ``[B, H, W, K]`` (softmax applied here).

    ``call`` returns per-pixel values ``[B, H, W]`` whose mean over all pixels is
    ``weight * mean_b E_b(S) / N_b``; the default reduction therefore gives the
    regularizer (and stays right under ``tf.distribute``). Compose it with the
    partial cross-entropy by adding the two losses.

    Args:
      weight: multiplier lambda (>= 0) of the per-pixel energy.
      relaxation: ``"bilinear"`` (default) or ``"quadratic"``.
    """

    def __init__(self, weight: float = 1.0, relaxation: str = "bilinear",
                 name: str = "grid_crf_loss", reduction: str | None = "sum_over_batch_size",
                 dtype: str | None = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_relaxation(relaxation)
        self.weight = check_weight(weight, type(self).__name__)
        self.relaxation = relaxation

    def call(self, y_true, y_pred):
        logits, image, valid = crf_inputs(y_true, y_pred, type(self).__name__)
        probs = tf.nn.softmax(logits, axis=-1)
        weights = grid_edge_weights(image, valid)
        energy = check_finite_logits(grid_crf_energy_map(probs, weights, self.relaxation),
                                     type(self).__name__)  # [B, H, W]
        shape = tf.shape(valid)
        pixels = tf.cast(shape[1] * shape[2], energy.dtype)
        valid_pixels = tf.reduce_sum(tf.cast(valid, energy.dtype), axis=[1, 2])
        # Rescale so that the plain mean over H*W pixels divides by the valid count instead.
        scale = self.weight * pixels / tf.maximum(valid_pixels, 1.0)
        return energy * scale[:, None, None]

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, relaxation=self.relaxation, dtype=self.dtype)
        return config
