"""ACDC cardiac MRI volumes with scribbles, in the WSL4MIS h5 format.

A folder of ``patientNNN_frameMM.h5`` files, each holding three (Z, H, W)
datasets: ``image`` float32 in [0, 1], ``label`` uint8 (0 background, 1 RV,
2 Myo, 3 LV) and ``scribble`` uint16 with 4 = unannotated (read as
:data:`~keras_regseg.data.spec.IGNORE_INDEX`).

The standard protocol is 5-fold cross-validation by patient: fold ``k`` tests
patients ``20(k-1)+1 .. 20k`` and trains on the other 80; a number of the
training patients can be held out as a ``val`` split. ACDC is a preset of the
generic volume data (:mod:`keras_regseg.data.volumes`): :class:`ACDCSlices`
gives the 2D training slices, resized with nearest-neighbour zoom as WSL4MIS
does, :class:`ACDCVolumes` whole volumes at native size for 3D evaluation.

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

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.data.volumes import Volumes, VolumeSlices

__all__ = ["ACDC_CLASS_NAMES", "ACDC_NUM_CLASSES", "ACDC_UNANNOTATED", "ACDCFile", "ACDCSlices",
           "ACDCVolumes", "fold_patients", "list_volume_files", "read_raw_volume", "read_volume",
           "scribble_to_labels", "split_patients", "SPLITS", "volume_id"]

ACDC_CLASS_NAMES = ("background", "RV", "Myo", "LV")
ACDC_NUM_CLASSES = 4
ACDC_UNANNOTATED = 4
"""Scribble value of unannotated pixels in the WSL4MIS files."""

NUM_FOLDS, PATIENTS_PER_FOLD = 5, 20
_FILE_PATTERN = re.compile(r"patient(\d{3})_frame(\d{2})\.h5")
_DATASETS = ("image", "label", "scribble")


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


class ACDCFile:
    """One ACDC h5 file as a volume of :mod:`keras_regseg.data.volumes`."""

    def __init__(self, path):
        self.path = path
        self.id = volume_id(path)
        self.group = self.id.split("_")[0]     # the patient: both frames annotated as one unit

    def num_slices(self):
        """Z, from the h5 metadata (no decompression)."""
        with h5py.File(self.path, "r") as f:
            if "image" not in f:
                raise ValueError(f"{self.path}: no dataset 'image'; expected datasets "
                                 f"{', '.join(_DATASETS)}.")
            return f["image"].shape[0]

    def read(self):
        return dict(read_volume(self.path), spacing=None)


class ACDCSlices(VolumeSlices):
    """The 2D slices of one fold's ``split``, resized to ``size`` and held in memory.

    Samples as :class:`~keras_regseg.data.volumes.VolumeSlices` (``id``
    ``"patient001_frame01_s03"``: slice 3); ``groups()`` are the patients.

    Args:
        folder: the folder of h5 volumes (e.g. ``.../ACDC_training_volumes``).
        fold: cross-validation fold, 1..5.
        split: ``"train"`` (80 patients, less ``holdout``), ``"val"`` (``holdout`` of
            them) or ``"test"`` (20 patients); see :func:`split_patients`.
        size: side of the square slices (int) or ``(height, width)``.
        progress: show a progress bar; ``None`` shows one when loading many files.
        scribble_ratio: fraction of each scribble's length kept (1 = all, 0 = one click
            per scribble), see :class:`~keras_regseg.data.volumes.VolumeSlices`.
        holdout: training patients set apart as the ``"val"`` split.
    """

    def __init__(self, folder: str | os.PathLike, fold: int = 1, split: str = "train",
                 size: int = 256, progress: bool | None = None, scribble_ratio: float = 1.0,
                 holdout: int = 0):
        self.folder, self.fold, self.split = folder, fold, split
        files = [ACDCFile(p) for p in list_volume_files(folder, fold, split, holdout)]
        super().__init__(files, size, ACDC_NUM_CLASSES, ACDC_CLASS_NAMES, scribble_ratio,
                         progress, f"ACDC fold {fold} {split}")


class ACDCVolumes(Volumes):
    """Whole volumes of one fold's ``split`` at native size, read on access.

    ``volumes[i]`` (and iteration) gives ``{"id": "patient001_frame01",
    "image": (Z, H, W) float32, "label": (Z, H, W) int32, "scribble": (Z, H, W)
    int32, "spacing": None}`` with unannotated scribble pixels at IGNORE_INDEX
    (the WSL4MIS files carry no spacing: HD95 is in voxels). Arguments as
    :class:`ACDCSlices`; ``split`` defaults to ``"test"``.
    """

    def __init__(self, folder: str | os.PathLike, fold: int = 1, split: str = "test",
                 holdout: int = 0):
        self.folder, self.fold, self.split = folder, fold, split
        self.paths = list_volume_files(folder, fold, split, holdout)
        super().__init__([ACDCFile(p) for p in self.paths], ACDC_NUM_CLASSES, ACDC_CLASS_NAMES)
