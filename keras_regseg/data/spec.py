"""Conventions shared by every dataset, loss and metric of keras_regseg.

A *sample* is a dict with these keys (numpy arrays from a source's ``load``,
tensors inside ``tf.data``):

- ``"image"``: float32 ``[H, W, C]`` with values in ``[0, 1]`` (C = 1 or 3).
- ``"weak_label"``: int32 ``[H, W]``; class indices ``0..K-1`` on seed pixels
  (scribbles, clicks), :data:`IGNORE_INDEX` on unlabeled pixels and
  :data:`PAD_INDEX` on pixels added by crop padding.
- ``"dense_label"``: int32 ``[H, W]``; the full mask when known, otherwise
  all :data:`IGNORE_INDEX`. Padding uses :data:`PAD_INDEX` here too.
- ``"tags"``: float32 ``[K]`` multi-hot image-level tags.
- ``"id"``: string, unique inside its source.

Source formats use their own "unlabeled" value (ScribbleSup PNGs 255, the
WSL4MIS ACDC files 4); readers translate it to :data:`IGNORE_INDEX` so that
everything downstream sees one convention. Padding is kept apart from
"unlabeled" because a CRF regularizer must not see pixels that are not part of
the image, while it must see unlabeled ones.
"""

from keras_regseg.constants import IGNORE_INDEX, MAX_CLASSES, PAD_INDEX  # noqa: F401

__all__ = ["SAMPLE_KEYS"]

SAMPLE_KEYS = ("image", "weak_label", "dense_label", "tags", "id")
