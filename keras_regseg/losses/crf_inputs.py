"""Input checks shared by the CRF regularizer losses and the Potts metric.

A regularizer needs the image: its ``y_true`` is a dict with ``"seeds"`` (or
``"dense"``) and ``"image"``, or packed targets
(:func:`keras_regseg.losses.targets.pack_targets`); ``y_pred`` are logits
``[B, H, W, K]`` of the same spatial size. Bad input fails loudly here instead
of becoming NaN later; non-finite logits are caught on the loss they give
(:func:`check_finite_logits`).
"""

import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.losses.targets import unpack_targets

__all__ = ["check_finite_logits", "check_weight", "crf_inputs"]


def crf_inputs(y_true, y_pred, owner):
    """Unpack and check ``(labels + image, logits)``.

    Returns ``(logits, image, valid)``: logits ``[B, H, W, K]`` (float64 kept,
    anything else cast to float32), the image ``[B, H, W, C]`` in the same
    dtype and ``valid`` bool ``[B, H, W]`` (False on :data:`PAD_INDEX` pixels).

    >>> import numpy as np
    >>> from keras_regseg.losses.targets import pack_targets
    >>> y = pack_targets(np.full((1, 2, 2), 254), np.zeros((1, 2, 2, 1)))
    >>> _, _, valid = crf_inputs(y, np.zeros((1, 2, 2, 3), "float32"), "demo")
    >>> bool(tf.reduce_any(valid))
    False
    """
    labels, image = unpack_targets(y_true)
    if image is None:
        got = (f"keys {sorted(y_true)}" if isinstance(y_true, dict)
               else f"shape {tf.convert_to_tensor(y_true).shape}")
        raise ValueError(
            f"{owner} needs the image in y_true: a dict with 'seeds' and 'image', or [B, H, W, "
            f"1 + C] packed (keras_regseg.losses.targets.pack_targets); got y_true of {got}.")
    logits = tf.convert_to_tensor(y_pred)
    if logits.shape.rank != 4:
        raise ValueError(f"{owner} expects logits [B, H, W, K]; got y_pred of shape {logits.shape}.")
    dtype = tf.float64 if logits.dtype == tf.float64 else tf.float32
    logits, image = tf.cast(logits, dtype), tf.cast(image, dtype)
    static_image, static_logits = image.shape[:3], logits.shape[:3]
    if static_image.is_fully_defined() and static_logits.is_fully_defined():
        if static_image != static_logits:
            raise ValueError(
                f"{owner}: image and logits differ in size: y_true is {tuple(image.shape[:3])} "
                f"[B, H, W], y_pred is {tuple(logits.shape[:3])}; resize the logits to the image first.")
    else:
        tf.debugging.assert_equal(
            tf.shape(image)[:3], tf.shape(logits)[:3],
            message=f"{owner}: image (y_true) and logits (y_pred) must have the same [B, H, W]")
    image = tf.debugging.assert_all_finite(image, f"{owner}: the image packed in y_true has NaN or inf values")
    return logits, image, tf.not_equal(labels, PAD_INDEX)


def check_finite_logits(loss, owner):
    """``loss`` computed from the logits and a finite image, raising if it is NaN or inf.

    Only non-finite logits make it so, and the loss (one value per image, or per
    pixel) is K times smaller than the logits, the largest tensor a CRF loss reads.
    """
    return tf.debugging.assert_all_finite(loss, f"{owner}: the logits (y_pred) have NaN or inf values")


def check_weight(weight, owner):
    """Return ``weight`` as a float, or raise if it is negative or not finite."""
    weight = float(weight)
    if not weight >= 0.0 or weight == float("inf"):
        raise ValueError(f"{owner}: weight must be a finite number >= 0; got {weight}.")
    return weight
