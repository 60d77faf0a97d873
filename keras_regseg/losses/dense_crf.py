"""Dense CRF loss (Tang et al., ECCV 2018, "rloss") with a pure-TensorFlow permutohedral lattice.

For a soft labeling S (softmax, N x K) of one image and the Gaussian affinity

    W_ij = exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |c_i - c_j|^2 / (2 sigma_rgb^2))

(p pixel position, c intensity or RGB on the 0-255 scale, W_ii = 1 included),
the regularizer is the bilinear relaxation of the dense Potts model

    R(S) = sum_k S^k^T W (m - S^k) = m^T W m - sum_k S^k^T W S^k,

where m is the mask of valid (non-padding) pixels and S is zeroed outside it.
On a one-hot S it is the dense Potts energy (ordered pairs, as rloss). rloss
drops the constant ``m^T W m``; it is kept here (one more filtered channel) so
the value is the energy itself, >= 0. The gradient is rloss's: ``-2 W S``.

Conventions of this implementation:

- Images are in [0, 1]; ``sigma_rgb`` is on the 0-255 scale of rloss
  (features use ``255 * image / sigma_rgb``). ``sigma_xy`` is in pixels of the
  full-resolution image.
- Like rloss, the loss is computed at ``scale_factor`` of the resolution
  with ``sigma_xy`` scaled by the same factor; by default both follow the image
  size as rloss's 100 px and 0.5 follow its 513-px crops (sigma_xy about 0.2 of
  the side, filtered at about 256 px; :func:`default_sigma_xy`,
  :func:`default_scale_factor`). The image and the
  padding mask are downscaled with nearest neighbour (rloss's
  ``F.interpolate`` default), the softmax bilinearly (``align_corners=False``,
  no antialiasing, as rloss).
- ``W S`` comes from :class:`~keras_regseg.losses.permutohedral.PermutohedralLattice`
  (symmetric, untruncated blur, exact self term) and a per-image calibration
  of its scale against exact Gaussian row sums at ``calibration_samples``
  pixels. Measured relative error of ``W S`` against the O(N^2) sum: about
  3 % grayscale, 5 % colour (the worst of five 32-48 px images,
  ``benchmarks/dense_crf.py``; what remains is the lattice kernel's shape). The gradient is ``-2 W S`` with the same
  symmetric operator, i.e. exactly the gradient of the computed value.
- Normalization: per image and per valid pixel, ``weight * R(S) / N``,
  averaged over the batch. rloss divides its un-normalized sum by the batch
  size only, so the same gradient needs ``weight = rloss_weight * N`` with N
  the number of pixels it filters: 2e-9 on VOC crops of 513 at scale 0.5
  (256 x 256 filtered pixels) gives :data:`DEFAULT_WEIGHT` ~ 1.3e-4.
- The default weight (``weight=None``) also follows the kernel: a pixel's
  energy is a sum over its neighbours, about ``2 pi sigma^2`` of them for a
  spatial bandwidth of ``sigma`` filtered pixels, so the same labeling of the
  same scene filtered with half the bandwidth in pixels (a smaller image with
  the bandwidth a fixed fraction of it) has a quarter of the energy per pixel
  while the cross-entropy per pixel is unchanged. :func:`default_weight`
  scales :data:`DEFAULT_WEIGHT` by ``(50 / sigma)^2``, 50 being rloss's
  filtered bandwidth (100 px at scale 0.5): rloss's own balance on its crops,
  and the same balance at any size (about 4x on 128 x 128 slices, filtered at full
  resolution with a 25-px bandwidth). rloss's own filter
  (truncated blur, fixed normalisation) returns about 0.78 of the Gaussian
  ``W S`` on grayscale and 0.59 on colour images (simulated on photo-like
  images), so matching rloss's *effective* strength takes about that factor
  less weight here.

The lattice uses ``tf.unique`` and dynamic shapes: train with
``jit_compile=False`` (XLA cannot compile it).

>>> import numpy as np
>>> from keras_regseg.losses.targets import pack_targets
>>> image = np.random.RandomState(0).rand(2, 16, 16, 3).astype("float32")
>>> y_true = pack_targets(np.full((2, 16, 16), 255), image)
>>> loss = DenseCRFLoss(scale_factor=1.0)
>>> constant = np.zeros((2, 16, 16, 4), "float32"); constant[..., 2] = 10.0
>>> noisy = np.random.RandomState(1).randn(2, 16, 16, 4).astype("float32")
>>> bool(loss(y_true, constant) < loss(y_true, noisy))
True
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_regseg.losses.crf_inputs import check_finite_logits, check_weight, crf_inputs
from keras_regseg.losses.permutohedral import PermutohedralLattice

__all__ = ["bilinear_resize", "default_scale_factor", "default_sigma_xy", "DEFAULT_WEIGHT",
           "default_weight", "dense_crf_energy", "dense_crf_features", "DenseCRFLoss",
           "FILTERED_SIDE", "RELATIVE_SIGMA_XY", "RLOSS_FILTERED_SIGMA", "RLOSS_SIDE"]

DEFAULT_WEIGHT = 2e-9 * 256 * 256
"""rloss's weight 2e-9 converted to per-pixel normalization (256 x 256 filtered pixels)."""

RLOSS_SIDE = 513.0
"""Side of the crops rloss's defaults were set for (Pascal VOC, DeepLab crops of 513)."""

RELATIVE_SIGMA_XY = 100.0 / RLOSS_SIDE
"""rloss's ``sigma_xy = 100`` px as a fraction of the image side (about 0.2): the default."""

RLOSS_FILTERED_SIGMA = 50.0
"""rloss's spatial bandwidth in filtered pixels: 100 px at scale 0.5."""

FILTERED_SIDE = 256.0
"""rloss filters at scale 0.5 of its 513 crops, about 256 px: the default keeps that
resolution on larger images and filters smaller ones at full resolution."""


def default_sigma_xy(height, width):
    """rloss's spatial bandwidth carried over to an ``height x width`` image (pixels).

    >>> round(default_sigma_xy(513, 513), 1), round(default_sigma_xy(128, 128), 1)
    (100.0, 25.0)
    """
    return RELATIVE_SIGMA_XY * max(height, width)


def default_scale_factor(height, width):
    """rloss's filtered resolution carried over: ``min(1, 256 / longer side)``.

    >>> round(default_scale_factor(513, 400), 3), default_scale_factor(128, 128)
    (0.499, 1.0)
    """
    return min(1.0, FILTERED_SIDE / max(height, width))


def default_weight(filtered_sigma_xy):
    """The weight that keeps rloss's balance with cross-entropy at this bandwidth (filtered px).

    >>> round(default_weight(50.0) / DEFAULT_WEIGHT, 2), round(default_weight(25.0) / DEFAULT_WEIGHT, 2)
    (1.0, 4.0)
    """
    return DEFAULT_WEIGHT * (RLOSS_FILTERED_SIGMA / filtered_sigma_xy) ** 2


def dense_crf_features(image, sigma_rgb=15.0, sigma_xy=100.0):
    """Lattice features ``[B, H*W, 2 + C]``: ``(x / sigma_xy, y / sigma_xy, 255 * image / sigma_rgb)``.

    >>> f = dense_crf_features(tf.ones([1, 2, 3, 1]), sigma_rgb=255.0, sigma_xy=2.0)
    >>> f.shape.as_list(), [float(v) for v in f[0, 5]]
    ([1, 6, 3], [1.0, 0.5, 1.0])
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    batch, height, width = shape[0], shape[1], shape[2]
    ys, xs = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    position = tf.cast(tf.stack([xs, ys], -1), image.dtype) / sigma_xy
    position = tf.broadcast_to(position[None], tf.stack([batch, height, width, 2]))
    features = tf.concat([position, image * (255.0 / sigma_rgb)], axis=-1)
    return tf.reshape(features, tf.stack([batch, height * width, 2 + image.shape[-1]]))


def dense_crf_energy(probs: tf.Tensor, image: tf.Tensor, valid: tf.Tensor | None = None,
                     sigma_rgb: float = 15.0, sigma_xy: float = 100.0,
                     calibration_samples: int = 64) -> tf.Tensor:
    """Dense CRF energy ``R(S)`` of each image ``[B]`` at the given resolution (no downscaling).

    Args:
      probs: ``[B, H, W, K]`` soft labeling.
      image: ``[B, H, W, C]`` in [0, 1].
      valid: optional bool ``[B, H, W]``; False marks padding (excluded).
      sigma_rgb: colour bandwidth on the 0-255 scale.
      sigma_xy: spatial bandwidth in pixels of *this* resolution.
      calibration_samples: pixels per image for the lattice scale calibration (0: none).

    The gradient with respect to ``probs`` is ``-2 W S`` on valid pixels.
    """
    probs = tf.convert_to_tensor(probs)
    dtype = probs.dtype
    channels = probs.shape[-1]
    batch = tf.shape(probs)[0]
    if valid is None:
        valid = tf.ones(tf.shape(probs)[:3], tf.bool)
    mask = tf.reshape(tf.cast(valid, dtype), tf.stack([batch, -1, 1]))
    lattice = PermutohedralLattice(tf.stop_gradient(dense_crf_features(tf.cast(image, dtype), sigma_rgb, sigma_xy)))

    @tf.custom_gradient
    def energy(masked):
        filtered = lattice.filter(tf.concat([masked, mask], axis=-1))
        raw_ws, raw_wm = filtered[..., :channels], filtered[..., channels:]
        if calibration_samples:
            scale = lattice.calibration_scale(raw_wm, mask, calibration_samples)[:, None, None]
        else:
            scale = tf.ones([batch, 1, 1], dtype)
        # Calibrated operator I + k (W_lattice - I): symmetric, so d(s^T W s)/ds = 2 W s.
        ws = masked + scale * (raw_ws - masked)
        wm = mask + scale * (raw_wm - mask)
        value = tf.reduce_sum(mask * wm, axis=[1, 2]) - tf.reduce_sum(masked * ws, axis=[1, 2])

        def gradient(upstream):
            return -2.0 * upstream[:, None, None] * ws

        return value, gradient

    masked = tf.reshape(probs, tf.stack([batch, -1, channels])) * mask
    return energy(masked)


def _linear_taps(out_size, in_size, dtype):
    """Source rows and weights of half-pixel-centre linear resampling (tf.image.resize's bilinear)."""
    source = (tf.cast(tf.range(out_size), tf.float64) + 0.5) * (
        tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)) - 0.5
    floor = tf.floor(source)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int32), in_size - 1)
    return lower, upper, tf.cast(source - floor, dtype)


def bilinear_resize(x, size):
    """Bilinear resize of ``[B, H, W, K]`` to ``size``: ``tf.image.resize(x, size)``
    (half-pixel centres, no antialiasing) keeping x's dtype (float64 for gradient checks).

    float32 takes ``tf.image.resize`` itself (a fused kernel with a fused
    gradient, much faster than gathers and their scattered gradient); other
    dtypes, which it would turn into float32, the same interpolation by gathers.
    """
    if x.dtype == tf.float32:
        return tf.image.resize(x, size, method="bilinear")
    for axis, out_size in ((1, size[0]), (2, size[1])):
        lower, upper, frac = _linear_taps(out_size, tf.shape(x)[axis], x.dtype)
        frac = tf.reshape(frac, [-1, 1] if axis == 1 else [-1])[..., None]
        x = tf.gather(x, lower, axis=axis) * (1.0 - frac) + tf.gather(x, upper, axis=axis) * frac
    return x


def _downscale(probs, image, valid, scale_factor):
    """Resize as rloss: softmax bilinear, image and mask nearest; sizes floor(side * factor) >= 1.

    ``scale_factor`` may be a scalar tensor (then resized even at 1: an exact identity).
    """
    if isinstance(scale_factor, float) and scale_factor == 1.0:
        return probs, image, valid
    shape = tf.shape(probs)
    size = tf.maximum(tf.cast(tf.floor(tf.cast(shape[1:3], tf.float64) * scale_factor), tf.int32), 1)
    probs = bilinear_resize(probs, size)
    image = tf.image.resize(image, size, method="nearest")
    valid = tf.image.resize(tf.cast(valid, tf.uint8)[..., None], size, method="nearest")[..., 0] > 0
    return probs, image, valid


@keras.saving.register_keras_serializable(package="keras_regseg")
class DenseCRFLoss(keras.losses.Loss):
    """Dense (fully connected) Gaussian CRF regularizer (method ``gd``, ``regularizer: dense``).

    ``y_true``: a dict of ``"seeds"`` and ``"image"`` (in [0, 1], grayscale or
    colour), or both packed ``[B, H, W, 1 + C]`` (:mod:`keras_regseg.losses.targets`);
    pixels labelled ``PAD_INDEX`` are excluded.
    ``y_pred``: logits ``[B, H, W, K]`` (softmax applied here).

    ``call`` returns ``[B, H, W]``: every pixel of image b carries
    ``weight * R_b(S) / N_b`` (N_b valid pixels at the filtered resolution),
    so the default mean reduction gives the regularizer averaged over the batch.

    Args:
      weight: multiplier (>= 0), or ``None`` (default): :func:`default_weight` of
        the bandwidth in filtered pixels (see the module docstring).
      sigma_rgb: colour bandwidth on the 0-255 scale (> 0).
      sigma_xy: spatial bandwidth in full-resolution pixels (> 0), or ``None``
        (default): rloss's 100 px for its 513-px crops as a fraction of the
        image side (:func:`default_sigma_xy`; 25 px on 128 x 128 slices).
      scale_factor: resolution of the computation, in (0, 1], or ``None``
        (default): rloss's filtered resolution of about 256 px
        (:func:`default_scale_factor`; 0.5 on VOC crops, 1 on images of 256 px
        or less). Taken literally on small images, rloss's 100 px and 0.5 make
        the kernel span most of the image at a coarse resolution: on ACDC's
        128 x 128 slices it linked the heart to any similar intensity in the
        slice (see ``benchmarks/results/acdc_cpu.json``).
      calibration_samples: pixels per image used to calibrate the lattice (>= 0; 0 disables).
        With 32 the scale still carried sampling noise (0.3-0.6 points of the relative
        error of ``W S`` on colour images); from 64 on it no longer moves.

    Needs ``jit_compile=False`` (dynamic-size lattice).
    """

    def __init__(self, weight: float | None = None, sigma_rgb: float = 15.0,
                 sigma_xy: float | None = None, scale_factor: float | None = None,
                 calibration_samples: int = 64, name: str = "dense_crf_loss",
                 reduction: str | None = "sum_over_batch_size", dtype: str | None = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.weight = None if weight is None else check_weight(weight, owner)
        for label, value in (("sigma_rgb", sigma_rgb), ("sigma_xy", sigma_xy)):
            if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"{owner}: {label} must be a finite number > 0; got {value}.")
        if sigma_rgb is None:
            raise ValueError(f"{owner}: sigma_rgb must be a finite number > 0; got None.")
        if scale_factor is not None and not 0.0 < float(scale_factor) <= 1.0:
            raise ValueError(f"{owner}: scale_factor must be in (0, 1]; got {scale_factor}.")
        if int(calibration_samples) < 0:
            raise ValueError(f"{owner}: calibration_samples must be >= 0; got {calibration_samples}.")
        self.sigma_rgb = float(sigma_rgb)
        self.sigma_xy = None if sigma_xy is None else float(sigma_xy)
        self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.calibration_samples = int(calibration_samples)

    def bandwidths(self, height, width):
        """``(sigma_xy in full-resolution pixels, scale_factor)`` for an image of this size."""
        sigma_xy = default_sigma_xy(height, width) if self.sigma_xy is None else self.sigma_xy
        scale = (default_scale_factor(height, width) if self.scale_factor is None
                 else self.scale_factor)
        return sigma_xy, scale

    def weight_for(self, height, width):
        """The weight used on ``height x width`` images (the given one, or the default's).

        >>> round(DenseCRFLoss().weight_for(128, 128) / DEFAULT_WEIGHT, 2)   # sigma 24.95 px
        4.02
        """
        if self.weight is not None:
            return self.weight
        sigma_xy, scale = self.bandwidths(height, width)
        return default_weight(sigma_xy * scale)

    def call(self, y_true, y_pred):
        logits, image, valid = crf_inputs(y_true, y_pred, type(self).__name__)
        probs = tf.nn.softmax(logits, axis=-1)
        height, width = logits.shape[1], logits.shape[2]
        if height is None or width is None:   # sizes known only at run time
            side = tf.cast(tf.reduce_max(tf.shape(logits)[1:3]), tf.float64)
            sigma_xy = (RELATIVE_SIGMA_XY * side if self.sigma_xy is None
                        else tf.constant(self.sigma_xy, tf.float64))
            scale = (tf.minimum(tf.constant(1.0, tf.float64), FILTERED_SIDE / side)
                     if self.scale_factor is None else self.scale_factor)
        else:
            sigma_xy, scale = self.bandwidths(height, width)
        small_probs, small_image, small_valid = _downscale(probs, image, valid, scale)
        filtered_sigma = sigma_xy * scale
        if tf.is_tensor(filtered_sigma):   # (a Python float stays exact in float64 images)
            filtered_sigma = tf.cast(filtered_sigma, small_image.dtype)
        energy = dense_crf_energy(small_probs, small_image, small_valid, self.sigma_rgb,
                                  filtered_sigma, self.calibration_samples)
        valid_pixels = tf.reduce_sum(tf.cast(small_valid, energy.dtype), axis=[1, 2])
        weight = self.weight
        if weight is None:
            weight = DEFAULT_WEIGHT * (RLOSS_FILTERED_SIGMA / filtered_sigma) ** 2
            weight = tf.cast(weight, energy.dtype) if tf.is_tensor(weight) else weight
        per_image = check_finite_logits(weight * energy / tf.maximum(valid_pixels, 1.0),
                                        type(self).__name__)
        return tf.broadcast_to(per_image[:, None, None], tf.shape(valid))

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, sigma_rgb=self.sigma_rgb, sigma_xy=self.sigma_xy,
                      scale_factor=self.scale_factor, calibration_samples=self.calibration_samples,
                      dtype=self.dtype)
        return config
