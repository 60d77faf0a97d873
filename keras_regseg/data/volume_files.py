"""Medical volumes of your own: NIfTI or h5 files, one subject each, in your split.

A folder (``data.name: volumes``, :data:`VOLUME_LAYOUT`)::

    my_data/
      images/<subject>.nii.gz        (.nii.gz, .nii or .h5)
      scribbles/<subject>.nii.gz     training subjects; optional for the others
      masks/<subject>.nii.gz         optional (validation and test subjects need them to be scored)
      splits/train.txt, val.txt, test.txt   subject ids, one per line

or a manifest CSV (``data.manifest``) with the columns ``subject,split,image,scribble,mask``
(paths relative to the manifest; ``scribble`` and ``mask`` may be empty).

An h5 file holds its array in the dataset ``image``, ``scribble`` or ``label``
(or in its only dataset); an image h5 that also holds ``scribble`` and
``label`` datasets serves as all three (the WSL4MIS layout) when no separate
file is given. Volumes are 3-D; the slice axis is the last one for NIfTI
(``X, Y, Z``) and the first for h5 (``Z, H, W``) unless ``slice_axis`` says
otherwise. Voxel spacing comes from the NIfTI header, else from the h5
dataset's ``spacing`` attribute, else from ``spacing`` (file axis order).

>>> import os, tempfile
>>> import nibabel, numpy as np
>>> root = tempfile.mkdtemp()
>>> for folder in ("images", "scribbles", "splits"):
...     os.makedirs(os.path.join(root, folder))
>>> affine = np.diag([1.5, 1.5, 8.0, 1.0])                   # anisotropic voxels
>>> nibabel.save(nibabel.Nifti1Image(np.arange(60.0).reshape(3, 4, 5), affine),
...              os.path.join(root, "images", "case1.nii.gz"))
>>> nibabel.save(nibabel.Nifti1Image(np.full((3, 4, 5), 255, np.uint8), affine),
...              os.path.join(root, "scribbles", "case1.nii.gz"))
>>> with open(os.path.join(root, "splits", "train.txt"), "w") as f:
...     _ = f.write("case1\\n")
>>> subject, = list_subjects(root, "train", num_classes=2)
>>> volume = subject.read()
>>> volume["image"].shape, volume["spacing"], volume["label"]     # slices first, no mask
((5, 3, 4), (8.0, 1.5, 1.5), None)
>>> float(volume["image"].min()), float(volume["image"].max())  # percentile clip, then [0, 1]
(0.0, 1.0)
"""

from __future__ import annotations

import csv
import dataclasses
import os
import typing

import numpy as np

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.data.voc import map_label_values, path_inside, read_split_file

__all__ = ["H5_DATASETS", "INTENSITY_NORMALIZATIONS", "list_subjects", "MANIFEST_COLUMNS",
           "nibabel_module", "normalize_intensities", "read_volume_array", "SubjectFiles",
           "VOLUME_EXTENSIONS", "VOLUME_LAYOUT", "VolumeArray", "volume_kind", "volume_shape"]

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".h5")
VOLUME_LAYOUT = dict(image_dir="images", scribble_dir="scribbles", mask_dir="masks",
                     split_dir="splits")
"""Where a ``volumes`` folder keeps its images, scribbles, masks and split lists."""
MANIFEST_COLUMNS = ("subject", "split", "image", "scribble", "mask")
H5_DATASETS = {"image": "image", "scribble": "scribble", "mask": "label"}
"""The h5 dataset read for each kind of file (WSL4MIS's names)."""
INTENSITY_NORMALIZATIONS = ("percentile", "zscore", "minmax", "none")
PERCENTILES = (0.5, 99.5)
"""``percentile`` clips intensities to these percentiles before scaling to [0, 1]."""


def volume_kind(path: str) -> str | None:
    """``"nifti"``, ``"h5"`` or ``None`` from a file name."""
    name = str(path).lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    return "h5" if name.endswith(".h5") else None


def normalize_intensities(volume: np.ndarray, method: str = "percentile") -> np.ndarray:
    """One volume's intensities as float32, normalized by ``method``.

    ``percentile``: clipped to the 0.5 and 99.5 percentiles, then scaled to
    [0, 1] (robust to a few hot voxels; MRI has no absolute scale);
    ``minmax``: scaled to [0, 1]; ``zscore``: zero mean, unit standard
    deviation (CT-like data whose scale means something may prefer ``none``).
    A constant volume becomes zeros.

    >>> normalize_intensities(np.array([0.0, 5.0, 10.0]), "minmax").tolist()
    [0.0, 0.5, 1.0]
    >>> normalize_intensities(np.array([1.0, 3.0]), "zscore").tolist()
    [-1.0, 1.0]
    """
    if method not in INTENSITY_NORMALIZATIONS:
        raise ValueError(f"normalization is {method!r}; expected one of "
                         f"{', '.join(INTENSITY_NORMALIZATIONS)}.")
    volume = np.asarray(volume, np.float32)
    if method == "none":
        return volume
    if method == "zscore":
        std = float(volume.std())
        return ((volume - volume.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
    if method == "percentile":
        low, high = np.percentile(volume, PERCENTILES)
        volume = np.clip(volume, low, high)
    low, high = float(volume.min()), float(volume.max())
    if high <= low:
        return np.zeros_like(volume)
    return ((volume - low) / (high - low)).astype(np.float32)


@dataclasses.dataclass
class VolumeArray:
    """A volume as stored: the array in file axis order, its spacing and NIfTI geometry."""

    array: np.ndarray
    spacing: tuple | None = None
    affine: np.ndarray | None = None
    header: typing.Any = None


def _h5_dataset(handle, path, kind):
    name = H5_DATASETS[kind]
    if name in handle:
        return handle[name]
    datasets = [key for key in handle if hasattr(handle[key], "shape")]
    if len(datasets) == 1:
        return handle[datasets[0]]
    raise ValueError(f"{path}: no dataset {name!r}; expected a dataset {name!r} or a single "
                     f"dataset (found {', '.join(datasets) or 'none'}).")


def nibabel_module():
    """``nibabel``, or an ImportError saying how to install it (the ``volumes`` extra)."""
    try:
        import nibabel
    except ImportError:
        raise ImportError("NIfTI files need nibabel: pip install 'keras-regseg[volumes]' "
                          "(or pip install nibabel).") from None
    return nibabel


def _check_3d(path, kind, shape):
    if len(shape) != 3:
        raise ValueError(f"{path}: {kind} volume has shape {tuple(shape)}; expected 3 axes "
                         "(a 4-D series or a 2-D image is not a volume).")
    return tuple(shape)


def _check_volume_file(path, kind):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such {kind} file.")
    if volume_kind(path) is None:
        raise ValueError(f"{path}: not a volume file; expected one of "
                         f"{', '.join(VOLUME_EXTENSIONS)}.")
    return volume_kind(path)


def volume_shape(path: str, kind: str = "image") -> tuple:
    """The 3-D shape of a volume file, from its header (no voxel is read)."""
    if _check_volume_file(path, kind) == "nifti":
        return _check_3d(path, kind, nibabel_module().load(path).shape)
    import h5py

    with h5py.File(path, "r") as handle:
        return _check_3d(path, kind, _h5_dataset(handle, path, kind).shape)


def read_volume_array(path: str, kind: str = "image") -> VolumeArray:
    """The ``kind`` (image, scribble, mask) array of a NIfTI or h5 file, 3-D checked."""
    if _check_volume_file(path, kind) == "nifti":
        image = nibabel_module().load(path)
        _check_3d(path, kind, image.shape)
        return VolumeArray(np.asarray(image.dataobj),
                           tuple(float(z) for z in image.header.get_zooms()[:3]),
                           image.affine, image.header)
    import h5py

    with h5py.File(path, "r") as handle:
        dataset = _h5_dataset(handle, path, kind)
        _check_3d(path, kind, dataset.shape)
        stored = dataset.attrs.get("spacing")
        spacing = None if stored is None else tuple(float(s) for s in np.ravel(stored))
        return VolumeArray(dataset[()], spacing)


def _integral_labels(array, path, kind):
    """Integer labels of ``array``; non-integral values (a resampled mask) raise."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            bad = array[~np.isfinite(array) | (array != np.round(array))][0]
            raise ValueError(f"{path}: {kind} values must be integers (class indices); got "
                             f"{float(bad)} (was the volume resampled with interpolation?).")
    return array.astype(np.int64)


@dataclasses.dataclass
class SubjectFiles:
    """One subject's files and how to read them.

    ``read()`` gives ``{"id", "image" float32 [Z, H, W] normalized, "scribble"
    int32 or None, "label" int32 or None, "spacing" (z, h, w) or None,
    "affine", "header"}``: slices first, unlabeled scribble pixels at
    IGNORE_INDEX. Every check names the subject and the file.
    """

    id: str
    image: str
    scribble: str | None = None
    mask: str | None = None
    num_classes: int = 2
    unlabeled_value: int = IGNORE_INDEX
    normalization: str = "percentile"
    slice_axis: int | None = None
    spacing: typing.Sequence[float] | None = None

    @property
    def group(self):
        """The unit a person annotates: the subject."""
        return self.id

    def axis_of(self, path: str) -> int:
        """The slice axis of ``path`` (``slice_axis``, or the format's own)."""
        if self.slice_axis is not None:
            if self.slice_axis not in (0, 1, 2):
                raise ValueError(f"slice_axis is {self.slice_axis!r}; expected 0, 1 or 2.")
            return self.slice_axis
        return 2 if volume_kind(path) == "nifti" else 0

    def _label_source(self, kind):
        """The file holding the subject's ``kind`` labels, or None."""
        path = self.scribble if kind == "scribble" else self.mask
        if path is not None or volume_kind(self.image) != "h5":
            return path
        import h5py

        with h5py.File(self.image, "r") as handle:
            return self.image if H5_DATASETS[kind] in handle else None

    def num_slices(self) -> int:
        """Slices along the slice axis, from the file's header."""
        return volume_shape(self.image)[self.axis_of(self.image)]

    def read(self) -> dict:
        image = read_volume_array(self.image, "image")
        if not np.all(np.isfinite(image.array)):
            raise ValueError(f"subject {self.id!r}: {self.image}: image values must be finite; "
                             f"{int((~np.isfinite(image.array)).sum())} are NaN or infinite.")
        axis = self.axis_of(self.image)
        labels = {}
        for kind in ("scribble", "mask"):
            path = self._label_source(kind)
            if path is None:
                labels[kind] = None
                continue
            stored = read_volume_array(path, kind)
            self._check_same_grid(image, stored, path, kind)
            values = _integral_labels(stored.array, path, kind)
            unlabeled = self.unlabeled_value if kind == "scribble" else IGNORE_INDEX
            values = map_label_values(values, path, unlabeled, self.num_classes,
                                      "scribble" if kind == "scribble" else "mask")
            labels[kind] = np.moveaxis(values, axis, 0)
        spacing = image.spacing or (tuple(float(s) for s in self.spacing)
                                    if self.spacing is not None else None)
        if spacing is not None:
            spacing = (spacing[axis],) + tuple(s for i, s in enumerate(spacing) if i != axis)
        return {"id": self.id,
                "image": np.ascontiguousarray(np.moveaxis(
                    normalize_intensities(image.array, self.normalization), axis, 0)),
                "scribble": labels["scribble"], "label": labels["mask"], "spacing": spacing,
                "affine": image.affine, "header": image.header}

    def _check_same_grid(self, image, other, path, kind):
        if other.array.shape != image.array.shape:
            raise ValueError(f"subject {self.id!r}: {path}: {kind} shape {other.array.shape} "
                             f"differs from the image's {image.array.shape} ({self.image}).")
        if (image.affine is not None and other.affine is not None
                and not np.allclose(image.affine, other.affine, atol=1e-3)):
            raise ValueError(f"subject {self.id!r}: {path}: {kind} affine differs from the "
                             f"image's ({self.image}); resample it onto the image grid "
                             "(nearest neighbour) first.")


def _find_file(folder, subject):
    for extension in VOLUME_EXTENSIONS:
        path = os.path.join(folder, subject + extension)
        if os.path.isfile(path):
            return path
    return None


def _folder_subjects(root, split):
    """``[(id, image, scribble, mask)]`` of ``split`` in a :data:`VOLUME_LAYOUT` folder."""
    split_dir = path_inside(root, VOLUME_LAYOUT["split_dir"], "split folder")
    split_path = os.path.join(split_dir, f"{split}.txt")
    ids = read_split_file(split_path)
    others = sorted(n for n in os.listdir(split_dir)
                    if n.endswith(".txt") and n != f"{split}.txt")
    for name in others:
        shared = set(ids) & set(read_split_file(os.path.join(split_dir, name)))
        if shared:
            raise ValueError(f"subject {sorted(shared)[0]!r} is listed in {split_path} and in "
                             f"{os.path.join(split_dir, name)}; a subject belongs to one split.")
    folders = {kind: os.path.join(root, VOLUME_LAYOUT[f"{kind}_dir"])
               for kind in ("image", "scribble", "mask")}
    rows = []
    for subject in ids:
        image = _find_file(folders["image"], subject)
        if image is None:
            raise FileNotFoundError(
                f"subject {subject!r} listed in {split_path}: no image file "
                f"{os.path.join(folders['image'], subject)}{{{','.join(VOLUME_EXTENSIONS)}}}.")
        rows.append((subject, image, _find_file(folders["scribble"], subject),
                     _find_file(folders["mask"], subject)))
    return rows


def _manifest_subjects(manifest, split):
    """``[(id, image, scribble, mask)]`` of the rows of ``split`` in a manifest CSV."""
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"{manifest}: manifest not found.")
    base = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("subject", "split", "image") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: no column {missing[0]!r}; expected the columns "
                             f"{','.join(MANIFEST_COLUMNS)} (scribble and mask optional).")
        seen, rows = {}, []
        for line, row in enumerate(reader, start=2):
            subject = (row.get("subject") or "").strip()
            if not subject:
                raise ValueError(f"{manifest}:{line}: empty subject.")
            if subject in seen:
                raise ValueError(f"{manifest}:{line}: subject {subject!r} already on line "
                                 f"{seen[subject]}; a subject has one row (one split).")
            seen[subject] = line
            if row["split"].strip() != split:
                continue
            paths = []
            for column in ("image", "scribble", "mask"):
                value = (row.get(column) or "").strip()
                path = path_inside(base, value, f"{column} file") if value else None
                if path is not None and not os.path.isfile(path):
                    raise FileNotFoundError(f"{manifest}:{line}: {column} file {path} of "
                                            f"subject {subject!r} not found.")
                if column == "image" and path is None:
                    raise ValueError(f"{manifest}:{line}: subject {subject!r} has no image.")
                paths.append(path)
            rows.append((subject, *paths))
    if not rows:
        raise ValueError(f"{manifest}: no subject in split {split!r}.")
    return rows


def list_subjects(root: str | None, split: str, manifest: str | None = None,
                  require: str | None = None, **settings: typing.Any) -> list[SubjectFiles]:
    """The subjects of ``split``, from a :data:`VOLUME_LAYOUT` folder or a ``manifest`` CSV.

    ``require`` (``"scribble"`` or ``"mask"``) refuses subjects without that
    file (training needs scribbles, scoring needs masks). ``settings`` are
    :class:`SubjectFiles` fields (``num_classes``, ``unlabeled_value``,
    ``normalization``, ``slice_axis``, ``spacing``).
    """
    if manifest is not None:
        rows = _manifest_subjects(manifest, split)
    else:
        if root is None or not os.path.isdir(root):
            raise FileNotFoundError(f"volume folder {root} not found; expected images/, "
                                    "scribbles/, masks/ and splits/<split>.txt.")
        rows = _folder_subjects(root, split)
    subjects = [SubjectFiles(subject, image, scribble, mask, **settings)
                for subject, image, scribble, mask in rows]
    if require is not None:
        for subject in subjects:
            if subject._label_source(require) is None:
                raise FileNotFoundError(
                    f"subject {subject.id!r} of split {split!r} has no {require} file "
                    f"(next to {subject.image}); the {split} split needs {require}s.")
    return subjects
