"""Label values and limits shared by every layer of keras_regseg (no dependencies).

The one place these numbers are written: the data readers, the losses, the
metrics and the solver (whose worker processes must start without TensorFlow)
all import them from here.

>>> IGNORE_INDEX, PAD_INDEX, MAX_CLASSES, MAX_IMAGE_PIXELS
(255, 254, 254, 16777216)
"""

__all__ = ["IGNORE_INDEX", "MAX_CLASSES", "MAX_IMAGE_PIXELS", "PAD_INDEX"]

IGNORE_INDEX = 255
"""Weak-label and dense-label value of a pixel without a label."""

PAD_INDEX = 254
"""Label value of a pixel outside the original image (crop, rotation or size padding)."""

MAX_CLASSES = PAD_INDEX
"""Class indices must stay below :data:`PAD_INDEX`: at most 254 classes."""

MAX_IMAGE_PIXELS = 4096 * 4096
"""Default limit on the pixels of one image file (width x height), checked from its header
before decoding: a small compressed file can hold an image whose decoded arrays exhaust the
memory (a 250 KB PNG of 16000 x 16000 pixels). Raise it with ``data.max_pixels`` (training,
evaluation) or ``--max-pixels`` (prediction) for files you trust."""
