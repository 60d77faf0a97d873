"""Robust cross-entropy d_B of the trust-region paper (eq. 20-24) for stage B.

Proposals ``s`` from stage A may be wrong. With the outlier model (eq. 20)
``Pr(Y = l | Z = k) = 1 - eps`` if ``l = k`` else ``eps / (K - 1)``, the
probability of the observed proposal label is ``a + b f[s]`` with
``a = eps / (K - 1)``, ``b = 1 - K a`` (eq. 21), hence (eq. 24)::

    d_B = sum_{p not seed} -log(a + b f_p[s_p]) + sum_{p seed} -log f_p[y_p]

Seeds are exact (``eps = 0``). ``b > 0`` needs ``eps < (K - 1) / K``.
Three normalizations (:data:`NORMALIZATIONS`): ``"seeds"`` divides the sum
by the number of seed pixels, as the authors' code does (a batch without
seeds by its number of proposal pixels); ``"labeled"`` by the number of
pixels with a label (seeds and proposals), a mean whose scale does not depend
on how densely the images are annotated; ``"per_term"`` takes the seed term
and the proposal term each as a mean over its own pixels (pCE plus a weighted
mean robust cross-entropy), so the exact labels weigh as much as in
pretraining however few they are. ``"seeds"`` is ``"per_term"`` with the
proposal weight ``#proposals / #seeds``: about 30 at the 3 % coverage of full
scribbles (ScribbleSup's, on which the authors set their step), over 1000 at
clicks. The step of ``"seeds"`` is ``#labeled / #seeds``
times that of ``"labeled"``: about 30 on full scribbles, over 1000 on clicks.

Targets pack ``[seeds, proposals, image]`` as float32 ``[B, H, W, 2 + C]``
(:func:`pack_proposal_targets`).

>>> import numpy as np
>>> seeds = np.array([[[0, 255]]]); proposals = np.array([[[0, 1]]])
>>> logits = np.zeros((1, 1, 2, 2), "float32")            # f = 0.5 everywhere
>>> y = pack_proposal_targets(seeds, proposals, np.zeros((1, 1, 2, 1)))
>>> error_model_coefficients(0.2, 2)                    # (a, b)
(0.2, 0.6)
>>> loss = RobustCrossEntropy(epsilon=0.2)(y, logits)      # (-log 0.5 - log(0.2 + 0.6 * 0.5)) / 1 seed
>>> round(float(loss), 4)
1.3863
"""

from __future__ import annotations

import typing

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.losses.targets import as_labels, unpack_targets
from keras_regseg.ops.replicas import replica_sum

__all__ = ["check_epsilon", "NORMALIZATIONS", "default_epsilon", "error_model_coefficients", "max_epsilon",
           "pack_proposal_targets", "robust_cross_entropy",
           "robust_cross_entropy_per_labeled_pixel", "robust_cross_entropy_terms",
           "RobustCrossEntropy", "unpack_proposal_targets", "VOC_CLASSES", "VOC_EPSILON"]

VOC_EPSILON = 0.944
"""The authors' outlier probability for full scribbles on Pascal VOC (K = 21)."""

VOC_CLASSES = 21

NORMALIZATIONS = ("seeds", "labeled", "per_term")
"""How stage B's sum over pixels is divided (module docstring)."""


def max_epsilon(num_classes):
    """The largest meaningful outlier probability, ``(K - 1) / K`` (then ``b = 0``)."""
    return (num_classes - 1) / num_classes


def default_epsilon(num_classes, reference=VOC_EPSILON, reference_classes=VOC_CLASSES):
    """The outlier probability for ``K`` classes with the authors' likelihood ratio.

    eps = 0.944 only makes sense for 21 classes (for K = 4 it gives b < 0). What
    carries over is how much more likely the proposal's label is than any
    other given label, ``r = (1 - eps) (K - 1) / eps`` (1.19 for VOC);
    this returns the ``eps`` with the same ``r``: ``(K - 1) / (K - 1 + r)``.

    >>> round(default_epsilon(21), 3), round(default_epsilon(4), 3)
    (0.944, 0.717)
    """
    ratio = (1.0 - reference) * (reference_classes - 1) / reference
    return (num_classes - 1) / (num_classes - 1 + ratio)


def check_epsilon(epsilon, num_classes):
    """``epsilon`` as float after checking ``0 <= eps < (K - 1) / K``."""
    epsilon = float(epsilon)
    if not (np.isfinite(epsilon) and 0.0 <= epsilon < max_epsilon(num_classes)):
        raise ValueError(f"epsilon is {epsilon!r}; expected 0 <= epsilon < (K - 1) / K = "
                         f"{max_epsilon(num_classes):.4f} for K = {num_classes} classes "
                         "(above it the error model prefers labels other than the proposal's).")
    return epsilon


def error_model_coefficients(epsilon, num_classes):
    """``(a, b)`` of eq. 21: ``a = eps / (K - 1)``, ``b = 1 - K a`` (numbers or tensors).

    >>> error_model_coefficients(0.944, 21)[0]
    0.0472
    """
    a = epsilon / max(num_classes - 1, 1)
    return a, 1.0 - num_classes * a


def pack_proposal_targets(seeds: tf.Tensor, proposals: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """float32 ``[B, H, W, 2 + C]``: seeds, proposals, then the image channels."""
    labels = tf.stack([tf.cast(seeds, tf.float32), tf.cast(proposals, tf.float32)], axis=-1)
    return tf.concat([labels, tf.cast(image, tf.float32)], axis=-1)


def unpack_proposal_targets(y_true):
    """``(seeds int32 [B, H, W], proposals int32 [B, H, W], image [B, H, W, C] or None)``.

    ``y_true`` is a dict with ``"seeds"``, ``"proposals"`` and optionally
    ``"image"``, or the three packed into ``[B, H, W, 2 + C]``.
    """
    if isinstance(y_true, dict):
        if not {"seeds", "proposals"} <= set(y_true):
            raise ValueError(f"trust-region targets need 'seeds' and 'proposals'; y_true has "
                             f"keys {sorted(y_true)}.")
        seeds, image = unpack_targets(y_true)
        return seeds, as_labels(y_true["proposals"]), image
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank != 4 or (y_true.shape[-1] is not None and y_true.shape[-1] < 2):
        raise ValueError(f"trust-region targets must be [B, H, W, 2 + C] (seeds, proposals, "
                         f"image); got shape {y_true.shape}.")
    labels = tf.cast(tf.round(tf.cast(y_true[..., :2], tf.float32)), tf.int32)
    image = y_true[..., 2:] if y_true.shape[-1] != 2 else None
    return labels[..., 0], labels[..., 1], image


def _seed_mask(seeds, num_classes):
    """Pixels whose seed is a class (not unlabeled, not padding)."""
    seeds = tf.cast(seeds, tf.int32)
    return (seeds >= 0) & (seeds < num_classes)


def robust_cross_entropy_terms(seeds, proposals, logits, epsilon):
    """``(per-pixel d_B [B, H, W], seed pixels, proposal pixels)``, unnormalized.

    ``epsilon`` may be a float or a scalar tensor (a learned error model).
    Seed pixels: ``-log f[y]``; other pixels whose proposal is a class:
    ``-log(a + b f[s])``; padding and unlabeled proposals: 0. The counts are
    those of the global batch under ``tf.distribute``.
    """
    log_f = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    num_classes = int(log_f.shape[-1])
    seeds = tf.cast(seeds, tf.int32)
    proposals = tf.cast(proposals, tf.int32)
    is_seed = _seed_mask(seeds, num_classes)
    is_proposal = ~is_seed & (proposals >= 0) & (proposals < num_classes)
    target = tf.where(is_seed, seeds, tf.where(is_proposal, proposals, 0))
    log_f_target = tf.gather(log_f, target, axis=-1, batch_dims=3)
    epsilon = tf.cast(epsilon, tf.float32)
    a, b = error_model_coefficients(epsilon, num_classes)
    # log(a + b f) = logsumexp(log a, log b + log f): exact for a -> 0 (plain CE), no overflow.
    log_robust = tf.reduce_logsumexp(
        tf.stack([tf.broadcast_to(tf.math.log(a), tf.shape(log_f_target)),
                  tf.math.log(b) + log_f_target], axis=0), axis=0)
    seed_f, proposal_f = tf.cast(is_seed, tf.float32), tf.cast(is_proposal, tf.float32)
    per_pixel = -seed_f * log_f_target - proposal_f * log_robust
    return (per_pixel, replica_sum(tf.reduce_sum(seed_f)),
            replica_sum(tf.reduce_sum(proposal_f)))


def robust_cross_entropy(seeds: tf.Tensor, proposals: tf.Tensor, logits: tf.Tensor,
                         epsilon: float | tf.Tensor, normalization: str = "seeds",
                         proposal_weight: float = 1.0) -> tf.Tensor:
    """Per-pixel d_B ``[B, H, W]`` whose mean over the batch's pixels is d_B / #seeds
    (``normalization="seeds"``, the authors'; a batch without seeds is divided
    by its number of proposal pixels instead), d_B / #labeled pixels
    (``"labeled"``) or the seed term / #seeds + ``proposal_weight`` * the
    proposal term / #proposals (``"per_term"``).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization is {normalization!r}; expected one of {NORMALIZATIONS}.")
    per_pixel, num_seeds, num_proposals = robust_cross_entropy_terms(
        seeds, proposals, logits, epsilon)
    if normalization == "per_term":
        is_seed = _seed_mask(seeds, int(logits.shape[-1]))
        normalizer = tf.where(is_seed, tf.maximum(num_seeds, 1.0),
                              tf.maximum(num_proposals, 1.0) / proposal_weight)
    elif normalization == "labeled":
        normalizer = tf.maximum(num_seeds + num_proposals, 1.0)
    else:
        normalizer = tf.where(num_seeds > 0, num_seeds, tf.maximum(num_proposals, 1.0))
    return per_pixel * (replica_sum(tf.cast(tf.size(per_pixel), tf.float32)) / normalizer)


def robust_cross_entropy_per_labeled_pixel(seeds, proposals, logits, epsilon):
    """d_B as a mean over its pixels (seeds and proposals): the scale a person reads.

    The gradient step uses :func:`robust_cross_entropy`, which is this times
    ``(#seeds + #proposals) / #seeds`` (about 90 on ACDC's scribbles): the
    authors' rescaling, which keeps stage B's step size that of pCE.
    """
    per_pixel, num_seeds, num_proposals = robust_cross_entropy_terms(
        seeds, proposals, logits, epsilon)
    return replica_sum(tf.reduce_sum(per_pixel)) / tf.maximum(num_seeds + num_proposals, 1.0)


@keras.saving.register_keras_serializable(package="keras_regseg")
class RobustCrossEntropy(keras.losses.Loss):
    """Stage-B loss with a constant outlier probability ``epsilon`` (module docstring).

    ``y_true``: :func:`pack_proposal_targets`; ``y_pred``: logits ``[B, H, W, K]``.
    ``epsilon=None`` takes :func:`default_epsilon` of the logits' ``K``.
    """

    def __init__(self, epsilon: float | None = None, name: str = "robust_cross_entropy",
                 **kwargs: typing.Any):
        super().__init__(name=name, **kwargs)
        self.epsilon = None if epsilon is None else float(epsilon)

    def call(self, y_true, y_pred):
        seeds, proposals, _ = unpack_proposal_targets(y_true)
        num_classes = int(y_pred.shape[-1])
        epsilon = default_epsilon(num_classes) if self.epsilon is None else self.epsilon
        return robust_cross_entropy(seeds, proposals, y_pred, check_epsilon(epsilon, num_classes))

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
