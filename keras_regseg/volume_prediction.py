"""Label volumes for NIfTI and h5 volumes, slice by slice, in the volume's own geometry.

Each volume is read and normalized as training read it (``data.normalization``,
``data.slice_axis`` of the run's config), its slices are predicted at the
training size (``data.size``: zoomed there and back, as evaluation does) and
the labels are written with the source's geometry:

    <output>/labels/<name>.nii.gz   uint8 labels, the source's affine and header (NIfTI input)
    <output>/labels/<name>.h5       dataset ``label`` (h5 input)

>>> import os, tempfile
>>> import keras, nibabel, numpy as np
>>> folder = tempfile.mkdtemp()
>>> affine = np.diag([0.8, 0.8, 5.0, 1.0])
>>> nibabel.save(nibabel.Nifti1Image(np.random.rand(12, 10, 3).astype("float32"), affine),
...              os.path.join(folder, "case.nii.gz"))
>>> network = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 1)])
>>> summary = predict_volume_files(network, [os.path.join(folder, "case.nii.gz")],
...                                os.path.join(folder, "out"), size=16, progress=False)
>>> written = nibabel.load(summary.predicted[0][1])
>>> written.shape, bool(np.allclose(written.affine, affine)), written.get_data_dtype().name
((12, 10, 3), True, 'uint8')
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence

import numpy as np
import tqdm

from keras_regseg.data.volume_files import SubjectFiles, nibabel_module, volume_kind
from keras_regseg.evaluation.evaluate import predict_labels, predict_volume
from keras_regseg.utils.files import atomic_write

__all__ = ["find_volumes", "predict_volume_files", "VolumePredictionSummary",
           "write_label_volume"]


@dataclasses.dataclass
class VolumePredictionSummary:
    """``predicted``: ``(input, output)`` pairs, in order."""

    output_dir: str
    predicted: list = dataclasses.field(default_factory=list)

    def __str__(self):
        return f"predicted {len(self.predicted)} volume(s) into {self.output_dir}"


def find_volumes(inputs: Sequence[str], skip_folder: str | None = None) -> list[str]:
    """The volume files (NIfTI, h5) named by ``inputs``: files, folders (walked) or globs.

    Folders are walked without entering ``skip_folder`` (the output folder, so
    that label volumes written by an earlier run are not taken for scans).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.nii.gz", "a.h5", "notes.txt"):
    ...     _ = open(os.path.join(folder, name), "w")
    >>> os.makedirs(os.path.join(folder, "out", "labels"))
    >>> _ = open(os.path.join(folder, "out", "labels", "b.nii.gz"), "w")
    >>> [os.path.basename(p) for p in find_volumes([folder], skip_folder=os.path.join(folder, "out"))]
    ['a.h5', 'b.nii.gz']
    """
    import glob

    skip = None if skip_folder is None else os.path.realpath(skip_folder)
    found = []
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            in_folder = []
            for folder, subfolders, names in os.walk(item):
                subfolders[:] = [d for d in subfolders
                                 if os.path.realpath(os.path.join(folder, d)) != skip]
                in_folder += [os.path.join(folder, name) for name in names if volume_kind(name)]
            found += sorted(in_folder)
        elif os.path.isfile(item):
            found += [item] if volume_kind(item) else []
        else:
            found += sorted(p for p in glob.glob(item, recursive=True)
                            if os.path.isfile(p) and volume_kind(p))
    return list(dict.fromkeys(found))


def _output_name(path):
    name = os.path.basename(path)
    for extension in (".nii.gz", ".nii", ".h5"):
        if name.lower().endswith(extension):
            return name[:-len(extension)]
    return name


def write_label_volume(path: str, labels: np.ndarray, source: dict) -> None:
    """Write ``labels`` (file axis order) as NIfTI with ``source``'s affine and header, or h5."""
    labels = np.asarray(labels, np.uint8)
    if volume_kind(path) == "nifti":
        nibabel = nibabel_module()
        header = source["header"].copy() if source.get("header") is not None else None
        image = nibabel.Nifti1Image(labels, source.get("affine"), header)
        image.set_data_dtype(np.uint8)
        image.header.set_slope_inter(1, 0)     # labels are class indices, never rescaled
        atomic_write(path, lambda tmp: nibabel.save(image, tmp), suffix=".nii.gz")
    else:
        import h5py

        def write(tmp):
            with h5py.File(tmp, "w") as handle:
                handle.create_dataset("label", data=labels, compression="gzip")

        atomic_write(path, write)


def predict_volume_files(model_or_path: typing.Any, paths: Sequence[str], output_dir: str,
                         size: int | None = None, normalization: str = "percentile",
                         slice_axis: int | None = None, progress: bool = True,
                         unsafe: bool = False) -> VolumePredictionSummary:
    """Predict every volume of ``paths`` and write its label volume under ``output_dir/labels``.

    Args:
        model_or_path: a ``keras.Model``, a ``.keras`` file or a SavedModel folder.
        paths: NIfTI (``.nii``, ``.nii.gz``) or h5 files.
        output_dir: created if missing.
        size: the side slices are predicted at (the training ``data.size``);
            ``None`` predicts them at their own size.
        normalization, slice_axis: as ``data.normalization`` / ``data.slice_axis``
            of training (see :mod:`keras_regseg.data.volume_files`).
        progress: show a progress bar.
        unsafe: allow model files holding code (trusted files only).
    """
    from keras_regseg.prediction import load_segmenter

    segmenter = load_segmenter(model_or_path, unsafe=unsafe)
    if segmenter.channels != 1:
        raise ValueError(f"{segmenter.name} takes {segmenter.channels}-channel images; volumes "
                         "give single-channel slices.")
    folder = os.path.join(output_dir, "labels")
    os.makedirs(folder, exist_ok=True)
    summary = VolumePredictionSummary(os.fspath(output_dir))
    for path in tqdm.tqdm(paths, desc="predicting", unit="volume", disable=not progress):
        if volume_kind(path) is None:
            raise ValueError(f"{path}: not a volume file; expected .nii, .nii.gz or .h5.")
        subject = SubjectFiles(_output_name(path), path, normalization=normalization,
                               slice_axis=slice_axis)
        volume = subject.read()
        image = volume["image"]                               # [Z, H, W], slices first
        if size is not None:
            labels = predict_volume(segmenter.predict, image, size)
        else:
            labels = predict_labels(segmenter.predict, image[..., None])
        labels = np.moveaxis(labels, 0, subject.axis_of(path))  # back to the file's axis order
        extension = ".nii.gz" if volume_kind(path) == "nifti" else ".h5"
        target = os.path.join(folder, subject.id + extension)
        write_label_volume(target, labels, volume)
        summary.predicted.append((path, target))
    return summary
