"""ACDC cardiac MRI volumes with scribbles, in the WSL4MIS h5 format.

A folder of ``patientNNN_frameMM.h5`` files, each holding three (Z, H, W)
datasets: ``image`` float32 in [0, 1], ``label`` uint8 (0 background, 1 RV,
2 Myo, 3 LV) and ``scribble`` uint16 with 4 = unannotated (read as
:data:`~keras_regseg.data.spec.IGNORE_INDEX`).

The standard protocol is 5-fold cross-validation by patient: fold ``k`` tests
patients ``20(k-1)+1 .. 20k`` and trains on the other 80. :class:`ACDCSlices`
gives the 2D training slices, resized to a square with nearest-neighbour zoom
(``scipy.ndimage.zoom(order=0)``, for images too, as WSL4MIS does) and held in
memory; :class:`ACDCVolumes` gives whole volumes at native size for 3D
evaluation.

>>> import os, tempfile
>>> import h5py, numpy as np
>>> folder = tempfile.mkdtemp()
>>> for patient in (1, 21):
...     with h5py.File(os.path.join(folder, f"patient{patient:03d}_frame01.h5"), "w") as f:
...         _ = f.create_dataset("image", data=np.zeros((2, 8, 6), "float32"))
...         _ = f.create_dataset("label", data=np.ones((2, 8, 6), "uint8"))
...         _ = f.create_dataset("scribble", data=np.full((2, 8, 6), 4, "uint16"))
>>> train = ACDCSlices(folder, fold=1, split="train", size=16, progress=False)
>>> train.ids(), train.images.shape
(['patient021_frame01_s00', 'patient021_frame01_s01'], (2, 16, 16, 1))
>>> volume = ACDCVolumes(folder, fold=1, split="test")[0]
>>> volume["id"], volume["label"].shape, int(volume["scribble"].max())
('patient001_frame01', (2, 8, 6), 255)
"""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import scipy.ndimage
import tensorflow as tf
import tqdm

from keras_regseg.data.base import SegmentationSource
from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.data.weak_labels import shorten_scribbles

__all__ = ["ACDC_CLASS_NAMES", "ACDC_NUM_CLASSES", "ACDC_UNANNOTATED", "ACDCSlices", "ACDCVolumes",
           "fold_patients", "list_volume_files", "read_raw_volume", "read_volume",
           "scribble_to_labels", "split_patients", "SPLITS", "volume_id", "zoom_nearest",
           "zoom_seeds"]

ACDC_CLASS_NAMES = ("background", "RV", "Myo", "LV")
ACDC_NUM_CLASSES = 4
ACDC_UNANNOTATED = 4
"""Scribble value of unannotated pixels in the WSL4MIS files."""

NUM_FOLDS, PATIENTS_PER_FOLD = 5, 20
_FILE_PATTERN = re.compile(r"patient(\d{3})_frame(\d{2})\.h5")
_DATASETS = ("image", "label", "scribble")
_PROGRESS_MIN_FILES = 20


def fold_patients(fold: int) -> tuple[list[int], list[int]]:
    """``(train, test)`` sorted patient numbers of cross-validation ``fold`` (1..5).

    >>> train, test = fold_patients(2)
    >>> test[0], test[-1], len(train)
    (21, 40, 80)
    """
    if fold not in range(1, NUM_FOLDS + 1):
        raise ValueError(f"fold must be in 1..{NUM_FOLDS}; got {fold!r}.")
    test = list(range(PATIENTS_PER_FOLD * (fold - 1) + 1, PATIENTS_PER_FOLD * fold + 1))
    train = [p for p in range(1, NUM_FOLDS * PATIENTS_PER_FOLD + 1) if p not in test]
    return train, test


SPLITS = ("train", "val", "test")


def split_patients(fold, split, holdout=0):
    """Sorted patient numbers of ``split`` in ``fold``, ``holdout`` training patients set apart.

    ``"val"`` is ``holdout`` of the fold's 80 training patients, evenly spaced
    over them, and ``"train"`` the others: a validation set to choose settings
    on without ever reading the test patients. ``holdout=0`` is the protocol:
    no validation set.

    >>> val = split_patients(1, "val", holdout=16)
    >>> len(val), val[:3], len(split_patients(1, "train", holdout=16))
    (16, [25, 30, 35], 64)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    train, test = fold_patients(fold)
    if not isinstance(holdout, int) or not 0 <= holdout < len(train):
        raise ValueError(f"holdout must be an integer in 0..{len(train) - 1}; got {holdout!r}.")
    if split == "test":
        return test
    step = len(train) / holdout if holdout else 0
    val = [train[int((i + 1) * step) - 1] for i in range(holdout)]
    return val if split == "val" else [p for p in train if p not in val]


def list_volume_files(folder, fold, split, holdout=0):
    """Sorted h5 paths of the patients of ``split`` (see :func:`split_patients`) in ``fold``."""
    wanted = set(split_patients(fold, split, holdout))
    if not wanted:
        raise ValueError(f"split {split!r} of fold {fold} is empty (holdout = {holdout}); "
                         "set data.holdout_patients to hold training patients out for it.")
    if folder is None or not os.path.isdir(folder):
        raise FileNotFoundError(
            f"ACDC folder {folder} not found; expected a folder of WSL4MIS "
            "patientNNN_frameMM.h5 files (ACDC_training_volumes).")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))
    if not names:
        raise FileNotFoundError(f"ACDC folder {folder} holds no .h5 files.")
    odd = [n for n in names if not _FILE_PATTERN.fullmatch(n)]
    if odd:
        raise ValueError(f"{os.path.join(folder, odd[0])}: file name does not match "
                         "patientNNN_frameMM.h5.")
    chosen = [os.path.join(folder, n) for n in names
              if int(_FILE_PATTERN.fullmatch(n).group(1)) in wanted]
    if not chosen:
        raise FileNotFoundError(
            f"ACDC folder {folder} holds no volume of the {split} patients of fold {fold} "
            f"(patients {min(wanted):03d}..{max(wanted):03d}"
            + (", minus the test ones" if split != "test" else "") + ").")
    return chosen


def read_raw_volume(path):
    """The three datasets of one h5 file, checked, in their stored dtypes.

    Raises ``ValueError`` naming the file for a missing dataset, mismatched
    shapes or values out of range (image outside [0, 1], label outside 0..3,
    scribble outside 0..4).
    """
    with h5py.File(path, "r") as f:
        missing = [name for name in _DATASETS if name not in f]
        if missing:
            raise ValueError(f"{path}: no dataset {missing[0]!r}; expected datasets "
                             f"{', '.join(_DATASETS)}.")
        arrays = {name: f[name][()] for name in _DATASETS}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1 or arrays["image"].ndim != 3:
        raise ValueError(f"{path}: datasets must share one (Z, H, W) shape; got "
                         + ", ".join(f"{n} {s}" for n, s in shapes.items()) + ".")
    image = arrays["image"].astype(np.float32, copy=False)
    low, high = image.min(), image.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{path}: image values must be finite; "
                         f"{int((~np.isfinite(image)).sum())} are NaN or infinite.")
    if low < 0 or high > 1:
        raise ValueError(f"{path}: image values must be in [0, 1]; got [{low}, {high}].")
    for name, top in (("label", ACDC_NUM_CLASSES - 1), ("scribble", ACDC_UNANNOTATED)):
        values = arrays[name]
        if values.min() < 0 or values.max() > top:
            raise ValueError(f"{path}: {name} values must be in 0..{top}; got "
                             f"{values.min()}..{values.max()}.")
    return image, arrays["label"], arrays["scribble"]


def scribble_to_labels(scribble, dtype=np.int32):
    """Scribble values as class indices with 4 (unannotated) -> IGNORE_INDEX."""
    return np.where(scribble == ACDC_UNANNOTATED, IGNORE_INDEX, scribble).astype(dtype)


def volume_id(path):
    """``patientNNN_frameMM`` of an h5 path."""
    return os.path.splitext(os.path.basename(path))[0]


def read_volume(path):
    """One h5 file as ``{"id", "image", "label", "scribble"}``, arrays of shape (Z, H, W).

    ``image`` is float32, ``label`` and ``scribble`` int32.

    Scribble value 4 becomes IGNORE_INDEX. Errors as :func:`read_raw_volume`.
    """
    image, label, scribble = read_raw_volume(path)
    return {"id": volume_id(path), "image": image, "label": label.astype(np.int32),
            "scribble": scribble_to_labels(scribble)}


def _progress(paths, progress, description):
    """``paths`` wrapped in a tqdm bar when asked, or by default when there are many."""
    show = len(paths) >= _PROGRESS_MIN_FILES if progress is None else progress
    return tqdm.tqdm(paths, desc=description, unit="volume", disable=not show)


def _square_size(size):
    if isinstance(size, (int, np.integer)) and size > 0:
        return int(size), int(size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be a positive int or an (height, width) pair; got {size!r}.")


def zoom_nearest(volume, size):
    """Resize the last two axes of (Z, H, W) ``volume`` to ``size`` like ``zoom(order=0)``.

    Order-0 zoom picks, per axis, one source index for each output index. The
    index maps come from ``scipy.ndimage.zoom`` itself (applied to ``arange``),
    so the result is identical to zooming each slice, and a gather with them is
    several times faster than zooming the volume. Identical includes scipy's
    quirk: for some sizes float rounding puts the last output row or column
    just outside the input, and zoom fills it with 0.

    >>> volume = np.arange(2 * 5 * 3).reshape(2, 5, 3)
    >>> bool(np.array_equal(zoom_nearest(volume, (7, 4)),
    ...                     scipy.ndimage.zoom(volume, (1, 7 / 5, 4 / 3), order=0)))
    True
    """
    rows, cols = (_zoom_source_indices(n, out) for n, out in zip(volume.shape[1:], size))
    zoomed = volume[:, np.maximum(rows, 0)[:, None], np.maximum(cols, 0)[None, :]]
    zoomed[:, (rows < 0)[:, None] | (cols < 0)[None, :]] = 0
    return zoomed


def _zoom_source_indices(size_in, size_out):
    """``[size_out]``: the input index order-0 zoom copies to each output index (-1: its 0 fill)."""
    # Source indices + 1, so that zoom's out-of-bounds fill (0) becomes index -1.
    return scipy.ndimage.zoom(np.arange(1, size_in + 1, dtype=np.float64), size_out / size_in,
                              order=0).astype(np.intp) - 1


def _zoom_sources(size_in, size_out):
    """Boolean ``[size_in]``: the input indices that order-0 zoom copies to some output index."""
    sources = _zoom_source_indices(size_in, size_out)
    kept = np.zeros(size_in, bool)
    kept[sources[sources >= 0]] = True
    return kept


def _forward_index(size_in, size_out):
    """``[size_in]``: the output index nearest to each input index under order-0 zoom."""
    if size_in == 1 or size_out == 1:
        return np.zeros(size_in, np.intp)
    scale = (size_out - 1) / (size_in - 1)
    return np.clip(np.rint(np.arange(size_in) * scale), 0, size_out - 1).astype(np.intp)


def zoom_seeds(weak_label, size, ignore_index=IGNORE_INDEX):
    """Resize a (Z, H, W) seed map like :func:`zoom_nearest`, without losing any scribble.

    Order-0 zoom keeps about one input row and column in every ``H / h``: a long
    stroke survives as dashes, but a click (one pixel) or a short piece of a
    shortened scribble often vanishes (at 256 -> 128, about 3 clicks in 4 did
    on ACDC). Every seed component (8-connected, one class, one slice) with no
    pixel left gets one: its pixel nearest its centroid, mapped to the output
    grid. Components with a surviving pixel are left exactly as zoomed.

    >>> seeds = np.full((1, 8, 8), 255, np.int32); seeds[0, 3, 3] = 1     # one click
    >>> int((zoom_nearest(seeds, (4, 4)) == 1).sum()), int((zoom_seeds(seeds, (4, 4)) == 1).sum())
    (0, 1)
    """
    zoomed = zoom_nearest(weak_label, size)
    _, height, width = weak_label.shape
    kept_rows, kept_cols = _zoom_sources(height, size[0]), _zoom_sources(width, size[1])
    out_rows, out_cols = _forward_index(height, size[0]), _forward_index(width, size[1])
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True          # 8-connectivity inside each slice, never across slices
    for value in np.unique(weak_label[weak_label != ignore_index]):
        components, _ = scipy.ndimage.label(weak_label == value, structure)
        for index, box in enumerate(scipy.ndimage.find_objects(components), start=1):
            z, y, x = np.nonzero(components[box] == index)
            z, y, x = z + box[0].start, y + box[1].start, x + box[2].start
            if (kept_rows[y] & kept_cols[x]).any():
                continue
            nearest = np.argmin((y - y.mean()) ** 2 + (x - x.mean()) ** 2)
            target = (z[nearest], out_rows[y[nearest]], out_cols[x[nearest]])
            if zoomed[target] == ignore_index:
                zoomed[target] = value
    return zoomed


def _num_slices(path):
    """Z of a volume, from the h5 metadata (no decompression)."""
    with h5py.File(path, "r") as f:
        if "image" not in f:
            raise ValueError(f"{path}: no dataset 'image'; expected datasets "
                             f"{', '.join(_DATASETS)}.")
        return f["image"].shape[0]


class ACDCSlices(SegmentationSource):
    """The 2D slices of one fold's ``split``, resized to ``size`` and held in memory.

    Samples: ``image`` float32 ``[h, w, 1]``, ``weak_label`` (scribble, unannotated
    -> IGNORE_INDEX), ``dense_label`` (ground truth), ``tags`` (classes of the
    ground truth) and ``id`` ``"patient001_frame01_s03"`` (slice 3).
    Labels are stored as uint8 (a quarter of int32's memory) and returned as int32.

    Args:
        folder: the folder of h5 volumes (e.g. ``.../ACDC_training_volumes``).
        fold: cross-validation fold, 1..5.
        split: ``"train"`` (80 patients, less ``holdout``), ``"val"`` (``holdout`` of
            them) or ``"test"`` (20 patients); see :func:`split_patients`.
        size: side of the square slices (int) or ``(height, width)``.
        progress: show a progress bar; ``None`` shows one when loading many files.
        scribble_ratio: fraction of each scribble's length kept (1 = all, 0 = one click
            per scribble), by :func:`~keras_regseg.data.weak_labels.shorten_scribbles`
            on the native-size slices (every scribble keeps at least one pixel through
            the resize, :func:`zoom_seeds`).
        holdout: training patients set apart as the ``"val"`` split.
    """

    num_classes = ACDC_NUM_CLASSES
    channels = 1
    class_names = ACDC_CLASS_NAMES

    def __init__(self, folder: str | os.PathLike, fold: int = 1, split: str = "train",
                 size: int = 256, progress: bool | None = None, scribble_ratio: float = 1.0,
                 holdout: int = 0):
        if not 0 <= scribble_ratio <= 1:
            raise ValueError(f"scribble_ratio must be in [0, 1]; got {scribble_ratio!r}.")
        self.folder, self.fold, self.split = folder, fold, split
        self.size = _square_size(size)
        self.scribble_ratio = float(scribble_ratio)
        paths = list_volume_files(folder, fold, split, holdout)
        # Allocate once (slice counts come from the h5 metadata) and fill volume by volume:
        # no second copy of the data as concatenating per-volume arrays would make.
        total = sum(_num_slices(p) for p in paths)
        self.images = np.empty((total, *self.size, 1), np.float32)
        self.weak_labels = np.empty((total, *self.size), np.uint8)
        self.dense_labels = np.empty((total, *self.size), np.uint8)
        self.tags = np.empty((total, self.num_classes), np.float32)
        self._ids = []
        start = 0
        for path in _progress(paths, progress, f"ACDC fold {fold} {split}"):
            image, label, scribble = read_raw_volume(path)
            part = slice(start, start + image.shape[0])
            if part.stop > total:
                raise ValueError(f"{path} changed while it was being read.")
            self.images[part, ..., 0] = zoom_nearest(image, self.size)
            if self.scribble_ratio < 1:
                scribble = shorten_scribbles(scribble_to_labels(scribble), self.scribble_ratio)
                self.weak_labels[part] = zoom_seeds(scribble, self.size)
            else:
                # Zoom the stored uint16 first: nearest zoom copies values, so mapping
                # after it gives the same result on fewer pixels.
                self.weak_labels[part] = scribble_to_labels(zoom_nearest(scribble, self.size),
                                                            np.uint8)
            self.dense_labels[part] = zoom_nearest(label, self.size)
            # Tags: the classes present in each ground-truth slice.
            self.tags[part] = (self.dense_labels[part, None] == np.arange(
                self.num_classes)[:, None, None]).any(axis=(2, 3))
            self._ids.extend(f"{volume_id(path)}_s{z:02d}" for z in range(image.shape[0]))
            start = part.stop

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return list(self._ids)

    def groups(self):
        """The patient of each slice (``patient021``): a patient is annotated as one unit."""
        return [sample_id.split("_")[0] for sample_id in self._ids]

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


class ACDCVolumes:
    """Whole volumes of one fold's ``split`` at native size, read on access.

    ``volumes[i]`` (and iteration) gives ``{"id": "patient001_frame01",
    "image": (Z, H, W) float32, "label": (Z, H, W) int32, "scribble": (Z, H, W)
    int32}`` with unannotated scribble pixels at IGNORE_INDEX. Arguments as
    :class:`ACDCSlices`; ``split`` defaults to ``"test"``.
    """

    num_classes = ACDC_NUM_CLASSES
    class_names = ACDC_CLASS_NAMES

    def __init__(self, folder: str | os.PathLike, fold: int = 1, split: str = "test",
                 holdout: int = 0):
        self.folder, self.fold, self.split = folder, fold, split
        self.paths = list_volume_files(folder, fold, split, holdout)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"volume index {index} out of range for {len(self)} volumes.")
        return read_volume(self.paths[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def ids(self):
        """Volume ids (``patientNNN_frameMM``), in index order."""
        return [os.path.splitext(os.path.basename(p))[0] for p in self.paths]
