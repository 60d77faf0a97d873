"""Volumes as training data: their 2D slices resized and held in memory, or whole for scoring.

Any list of volumes serves, each an object with ``id``, ``group`` (the unit
annotated together: a subject), ``num_slices()`` and ``read()`` giving
``{"id", "image" float32 [Z, H, W], "scribble", "label" (int32 [Z, H, W] or
None), "spacing"}``: the files of your own data
(:class:`~keras_regseg.data.volume_files.SubjectFiles`) or ACDC's
(:mod:`keras_regseg.data.acdc`, a preset of this module).

>>> import numpy as np
>>> class Toy:
...     id = group = "toy"
...     def num_slices(self): return 2
...     def read(self):
...         scribble = np.full((2, 6, 6), 255, np.int32); scribble[:, 2, 2] = 1
...         return {"id": "toy", "image": np.ones((2, 6, 6), np.float32), "scribble": scribble,
...                 "label": None, "spacing": (5.0, 1.0, 1.0)}
>>> slices = VolumeSlices([Toy()], size=8, num_classes=2, progress=False)
>>> slices.ids(), slices.images.shape, slices.load(0)["tags"].tolist()   # tags from scribbles
(['toy_s00', 'toy_s01'], (2, 8, 8, 1), [0.0, 1.0])
>>> int((slices.load(0)["dense_label"] == 255).all())                    # no mask: unlabeled
1
>>> Volumes([Toy()], require_masks=False)[0]["spacing"]
(5.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tqdm

from keras_regseg.data.base import SegmentationSource
from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.data.weak_labels import shorten_scribbles
from keras_regseg.data.zoom import zoom_nearest, zoom_seeds

__all__ = ["slice_size", "VolumeSlices", "Volumes"]

_PROGRESS_MIN_FILES = 20


def slice_size(size) -> tuple[int, int]:
    """``(height, width)`` of an int side or a pair, checked positive."""
    if isinstance(size, (int, np.integer)) and size > 0:
        return int(size), int(size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be a positive int or an (height, width) pair; got {size!r}.")


def _progress(items, progress, description):
    """``items`` wrapped in a tqdm bar when asked, or by default when there are many."""
    show = len(items) >= _PROGRESS_MIN_FILES if progress is None else progress
    return tqdm.tqdm(items, desc=description, unit="volume", disable=not show)


class VolumeSlices(SegmentationSource):
    """The 2D slices of ``volumes``, resized to ``size`` and held in memory.

    Samples: ``image`` float32 ``[h, w, 1]``, ``weak_label`` (scribble,
    unlabeled -> IGNORE_INDEX), ``dense_label`` (the mask; all IGNORE_INDEX for
    a volume without one), ``tags`` (classes of the mask, else of the
    scribbles) and ``id`` ``"<volume>_s03"`` (slice 3). Slices are resized with
    nearest-neighbour zoom (``scipy.ndimage.zoom(order=0)``, for images too, as
    WSL4MIS does); labels are stored as uint8 and returned as int32.

    Args:
        volumes: the volumes (module docstring).
        size: side of the square slices (int) or ``(height, width)``.
        num_classes: classes including background.
        class_names: K names (``class0`` ... by default).
        scribble_ratio: fraction of each scribble's length kept (1 = all, 0 = one
            click per scribble), by :func:`~keras_regseg.data.weak_labels.shorten_scribbles`
            on the native-size slices (every scribble keeps at least one pixel through
            the resize, :func:`~keras_regseg.data.zoom.zoom_seeds`).
        progress: show a progress bar; ``None`` shows one when loading many files.
        description: the progress bar's label.
    """

    channels = 1

    def __init__(self, volumes: Sequence, size: int | Sequence[int], num_classes: int,
                 class_names: Sequence[str] | None = None, scribble_ratio: float = 1.0,
                 progress: bool | None = None, description: str = "volumes"):
        if not 0 <= scribble_ratio <= 1:
            raise ValueError(f"scribble_ratio must be in [0, 1]; got {scribble_ratio!r}.")
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names or (f"class{k}" for k in range(self.num_classes)))
        self.size = slice_size(size)
        self.scribble_ratio = float(scribble_ratio)
        # Allocate once (slice counts come from the file headers) and fill volume by volume:
        # no second copy of the data as concatenating per-volume arrays would make.
        total = sum(volume.num_slices() for volume in volumes)
        self.images = np.empty((total, *self.size, 1), np.float32)
        self.weak_labels = np.empty((total, *self.size), np.uint8)
        self.dense_labels = np.empty((total, *self.size), np.uint8)
        self.tags = np.empty((total, self.num_classes), np.float32)
        self._ids, self._groups = [], []
        start = 0
        for volume in _progress(volumes, progress, description):
            arrays = volume.read()
            image = arrays["image"]
            part = slice(start, start + image.shape[0])
            if part.stop > total:
                raise ValueError(f"volume {volume.id!r} changed while it was being read.")
            self.images[part, ..., 0] = zoom_nearest(image, self.size)
            self.weak_labels[part] = self._weak_labels(arrays["scribble"], image.shape)
            label = arrays["label"]
            self.dense_labels[part] = (IGNORE_INDEX if label is None
                                       else zoom_nearest(label, self.size))
            # Tags: the classes present in each slice's mask (its scribbles without one).
            present = self.dense_labels[part] if label is not None else self.weak_labels[part]
            self.tags[part] = (present[:, None] == np.arange(
                self.num_classes)[:, None, None]).any(axis=(2, 3))
            self._ids.extend(f"{volume.id}_s{z:02d}" for z in range(image.shape[0]))
            self._groups.extend([volume.group] * image.shape[0])
            start = part.stop

    def _weak_labels(self, scribble, shape):
        if scribble is None:
            return IGNORE_INDEX
        if self.scribble_ratio < 1:
            return zoom_seeds(shorten_scribbles(scribble, self.scribble_ratio), self.size)
        return zoom_nearest(scribble, self.size)

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return list(self._ids)

    def groups(self):
        """The subject of each slice: a subject is annotated as one unit."""
        return list(self._groups)

    def load(self, index):
        return {
            "image": self.images[index],
            "weak_label": self.weak_labels[index].astype(np.int32),
            "dense_label": self.dense_labels[index].astype(np.int32),
            "tags": self.tags[index],
            "id": self._ids[index],
        }

    def indexed_tf_dataset(self, indices):
        """Map a ``tf.data.Dataset`` of int64 indices to sample dicts (in-memory gather)."""
        arrays = {
            "image": tf.constant(self.images),
            "weak_label": tf.constant(self.weak_labels),
            "dense_label": tf.constant(self.dense_labels),
            "tags": tf.constant(self.tags),
            "id": tf.constant(self._ids),
        }

        def gather(index):
            sample = {key: value[index] for key, value in arrays.items()}
            for key in ("weak_label", "dense_label"):
                sample[key] = tf.cast(sample[key], tf.int32)
            return sample

        return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    def to_tf_dataset(self):
        return self.indexed_tf_dataset(tf.data.Dataset.range(len(self)))


class Volumes:
    """Whole volumes at native size, read on access, for 3D scoring and prediction.

    ``volumes[i]`` (and iteration) gives the volume's ``read()`` dict;
    ``require_masks`` refuses, naming the volume, one without a mask.
    """

    def __init__(self, volumes: Sequence, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, require_masks: bool = True):
        self.volumes = list(volumes)
        self.num_classes, self.class_names = num_classes, class_names
        self.require_masks = require_masks

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"volume index {index} out of range for {len(self)} volumes.")
        arrays = self.volumes[index].read()
        if self.require_masks and arrays["label"] is None:
            raise ValueError(f"volume {arrays['id']!r} has no mask; scoring needs one.")
        return arrays

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def ids(self):
        """Volume ids, in index order."""
        return [volume.id for volume in self.volumes]
