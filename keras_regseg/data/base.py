"""The dataset interface every source implements.

A source is a random-access collection of samples (see
:mod:`keras_regseg.data.spec`). It knows its number of classes and image
channels, loads one sample as numpy arrays, and turns itself into a
``tf.data.Dataset`` of sample dicts (images may differ in size).

>>> import numpy as np
>>> src = InMemorySource(
...     images=np.zeros((2, 8, 8, 1), "float32"),
...     weak_labels=np.full((2, 8, 8), 255, "int32"),
...     num_classes=3)
>>> len(src), src.load(1)["id"], src.load(0)["tags"].shape
(2, '1', (3,))
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from keras_regseg.data.spec import IGNORE_INDEX, MAX_CLASSES

__all__ = ["InMemorySource", "SegmentationSource", "tags_from_labels"]


def tags_from_labels(labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Multi-hot float32 ``[K]`` of the classes present in a label map (ignore/pad skipped)."""
    labels = np.asarray(labels)
    present = np.unique(labels[(labels >= 0) & (labels < num_classes)])
    tags = np.zeros((num_classes,), np.float32)
    tags[present.astype(np.int64)] = 1.0
    return tags


class SegmentationSource(abc.ABC):
    """Random-access collection of segmentation samples.

    Subclasses set ``num_classes``, ``channels`` and ``class_names`` and
    implement ``__len__`` and ``load``. ``to_tf_dataset`` has a generic
    implementation; sources that can decode inside the graph override it.
    """

    num_classes: int
    channels: int
    class_names: tuple

    @abc.abstractmethod
    def __len__(self):
        """Number of samples."""

    @abc.abstractmethod
    def load(self, index):
        """Return sample ``index`` as a dict of numpy arrays (see spec)."""

    def ids(self):
        """Sample ids, in index order."""
        return [self.load(i)["id"] for i in range(len(self))]

    def groups(self):
        """Per sample, the unit it is annotated with (:mod:`keras_regseg.data.subset`):
        its own id here; the patient for volume slices."""
        return [str(i) for i in self.ids()]

    def output_signature(self):
        """``tf.TensorSpec`` dict of one sample (sizes may vary)."""
        return {
            "image": tf.TensorSpec([None, None, self.channels], tf.float32),
            "weak_label": tf.TensorSpec([None, None], tf.int32),
            "dense_label": tf.TensorSpec([None, None], tf.int32),
            "tags": tf.TensorSpec([self.num_classes], tf.float32),
            "id": tf.TensorSpec([], tf.string),
        }

    def to_tf_dataset(self):
        """A ``tf.data.Dataset`` of sample dicts, in index order."""
        if len(self) == 0:
            raise ValueError(f"{type(self).__name__} has no samples; expected at least one.")

        def generate():
            for i in range(len(self)):
                yield self.load(i)

        return tf.data.Dataset.from_generator(
            generate, output_signature=self.output_signature()
        )


class InMemorySource(SegmentationSource):
    """A source backed by numpy arrays of equal-sized images.

    Args:
        images: float32 ``[N, H, W, C]`` in ``[0, 1]``.
        weak_labels: int ``[N, H, W]`` with ``IGNORE_INDEX`` on unlabeled pixels.
        num_classes: number of classes K.
        dense_labels: optional int ``[N, H, W]``; all ``IGNORE_INDEX`` when omitted.
        ids: optional list of N unique strings; ``"0".."N-1"`` when omitted.
        tags: optional float ``[N, K]``; derived from the dense labels (or the weak
            labels when no dense labels are given) when omitted.
        class_names: optional names of the K classes.
    """

    def __init__(self, images: Sequence[np.ndarray] | np.ndarray,
                 weak_labels: Sequence[np.ndarray] | np.ndarray, num_classes: int,
                 dense_labels: Sequence[np.ndarray] | np.ndarray | None = None,
                 ids: Sequence[str] | None = None, tags: np.ndarray | None = None,
                 class_names: Sequence[str] | None = None):
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must have shape [N, H, W, C]; got shape {images.shape}.")
        n = images.shape[0]
        weak_labels = np.asarray(weak_labels, np.int32)
        if weak_labels.shape != images.shape[:3]:
            raise ValueError(
                f"weak_labels shape {weak_labels.shape} does not match images {images.shape[:3]}.")
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}]; got {num_classes}.")
        if dense_labels is None:
            dense_labels = np.full_like(weak_labels, IGNORE_INDEX)
        dense_labels = np.asarray(dense_labels, np.int32)
        if dense_labels.shape != weak_labels.shape:
            raise ValueError(
                f"dense_labels shape {dense_labels.shape} does not match images {images.shape[:3]}.")
        self.images, self.weak_labels, self.dense_labels = images, weak_labels, dense_labels
        self.num_classes = int(num_classes)
        self.channels = int(images.shape[-1])
        self._ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
        if len(self._ids) != n or len(set(self._ids)) != n:
            raise ValueError(f"ids must be {n} unique strings; got {len(self._ids)} "
                             f"({len(set(self._ids))} unique).")
        if tags is None:
            has_dense = (dense_labels != IGNORE_INDEX).any(axis=(1, 2))
            tags = np.stack([
                tags_from_labels(d if h else w, self.num_classes)
                for d, w, h in zip(dense_labels, weak_labels, has_dense)
            ]) if n else np.zeros((0, self.num_classes), np.float32)
        self.tags = np.asarray(tags, np.float32)
        self.class_names = tuple(class_names or (f"class_{k}" for k in range(self.num_classes)))

    def __len__(self):
        return self.images.shape[0]

    def ids(self):
        return list(self._ids)

    def load(self, index):
        return {
            "image": self.images[index],
            "weak_label": self.weak_labels[index],
            "dense_label": self.dense_labels[index],
            "tags": self.tags[index],
            "id": self._ids[index],
        }

    def to_tf_dataset(self):
        if len(self) == 0:
            raise ValueError("InMemorySource has no samples; expected at least one.")
        return tf.data.Dataset.from_tensor_slices({
            "image": self.images,
            "weak_label": self.weak_labels,
            "dense_label": self.dense_labels,
            "tags": self.tags,
            "id": tf.constant(self._ids),
        })
