"""The training targets a loss reads: a dict of named maps, or packed into one tensor.

A method's ``y_true`` is a dict of what it needs (the pipeline makes it,
:class:`~keras_regseg.data.pipeline.DictTargets`): ``"seeds"`` (the weak label
map: scribbles, clicks), ``"dense"`` (full masks), ``"image"`` (for the
pairwise terms of CRF and Potts losses), ``"proposals"`` (trust region), and
image-level facts (``"tags"``, ``"sizes"``, ...). Label maps hold class
indices, ``IGNORE_INDEX`` (no label) or ``PAD_INDEX`` (not part of the image).

Keras's ``compile(loss=...)`` wants ``y_true`` of the same structure as
``y_pred`` (one tensor), so for a network compiled with a loss the label map
and the image are packed into one float32 tensor ``[B, H, W, 1 + C]``
(:func:`pack_targets`: channel 0 the label map, exact in float32, then the
image). Every loss of :mod:`keras_regseg.losses` reads both forms, and a plain
``[B, H, W]`` or ``[B, H, W, 1]`` label map.

>>> import numpy as np
>>> labels = np.zeros((2, 4, 4), "int32"); image = np.ones((2, 4, 4, 3), "float32")
>>> l, im = unpack_targets({"seeds": labels, "image": image})
>>> tuple(l.shape), tuple(im.shape)
((2, 4, 4), (2, 4, 4, 3))
>>> l, im = unpack_targets(pack_targets(labels, image))    # the same, packed
>>> tuple(l.shape), tuple(im.shape)
((2, 4, 4), (2, 4, 4, 3))
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["as_labels", "LABEL_KEYS", "pack_targets", "unpack_targets"]

LABEL_KEYS = ("seeds", "dense")
"""Dict keys of a label map, in the order a loss looks for them (seeds before masks)."""


def pack_targets(labels: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """Concatenate an integer label map ``[..., H, W]`` and an image ``[..., H, W, C]``."""
    labels = tf.cast(labels, tf.float32)[..., None]
    return tf.concat([labels, tf.cast(image, tf.float32)], axis=-1)


def unpack_targets(y_true: tf.Tensor | dict) -> tuple[tf.Tensor, tf.Tensor | None]:
    """``(labels int32 [B, H, W], image float32 [B, H, W, C] or None)`` of any target form.

    A dict gives its ``"seeds"`` (else ``"dense"``) and its ``"image"``; a
    label-only tensor (rank 3, or rank 4 with one channel) gives ``image = None``.
    """
    if isinstance(y_true, dict):
        key = next((key for key in LABEL_KEYS if key in y_true), None)
        if key is None:
            raise ValueError(f"y_true has keys {sorted(y_true)}; expected a label map under "
                             f"{' or '.join(map(repr, LABEL_KEYS))}.")
        image = y_true.get("image")
        return (as_labels(y_true[key]),
                None if image is None else tf.cast(image, tf.float32))
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 3:
        return as_labels(y_true), None
    labels = as_labels(y_true[..., 0])
    if y_true.shape[-1] == 1:
        return labels, None
    return labels, tf.cast(y_true[..., 1:], tf.float32)


def as_labels(values: tf.Tensor) -> tf.Tensor:
    """int32 label map of integer or float values (Keras casts ``y_true`` to the loss's dtype)."""
    values = tf.convert_to_tensor(values)
    if values.dtype.is_integer:
        return tf.cast(values, tf.int32)
    return tf.cast(tf.round(tf.cast(values, tf.float32)), tf.int32)
