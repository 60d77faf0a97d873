"""Turn a :class:`~keras_regseg.training.config.DataConfig` into data sources."""

import dataclasses
import os
import typing

from keras_regseg.data.base import SegmentationSource
from keras_regseg.training.config import data_shape

__all__ = ["build_evaluation_data", "build_training_data", "default_evaluation_split",
           "FOLDER_LAYOUT", "folder_layout", "TrainingData"]


@dataclasses.dataclass
class TrainingData:
    """What a run trains on and validates against.

    ``volumes`` is set for volumetric data (ACDC, your volumes): validation then
    follows the WSL4MIS protocol (3D Dice, HD95 per volume, in millimetres when
    the volumes know their spacing); otherwise ``validation`` images are scored
    by mIoU.
    """

    train: SegmentationSource
    validation: SegmentationSource
    volumes: typing.Optional[typing.Sequence] = None
    input_size: typing.Optional[int] = None

    @property
    def num_classes(self):
        return self.train.num_classes

    @property
    def channels(self):
        return self.train.channels


def build_training_data(config):
    """Sources for ``config.name`` in ``synthetic``, ``acdc``, ``voc``, ``folder``, ``volumes``."""
    if config.boxes_file is not None and config.name not in ("voc", "folder"):
        raise ValueError(f"data.boxes_file = {config.boxes_file!r} is read from VOC and plain "
                         f"folders only; data.name is {config.name!r} (its boxes come from the "
                         "masks).")
    if config.name == "synthetic":
        from keras_regseg.data.synthetic import SyntheticShapes

        classes, channels = data_shape(config)
        common = dict(size=config.size, channels=channels, num_classes=classes,
                      scribble_ratio=config.scribble_ratio)
        return TrainingData(
            train=SyntheticShapes(num_samples=config.num_train, split="train", **common),
            validation=SyntheticShapes(num_samples=config.num_val, split="val", **common),
            input_size=config.size)
    if config.name == "acdc":
        from keras_regseg.data.acdc import ACDCSlices, ACDCVolumes

        # With held-out training patients, validation and the final scores are on them and
        # the test patients are never read (settings are chosen there).
        holdout = config.holdout_patients
        evaluate_on = "val" if holdout else "test"
        train = ACDCSlices(config.path, fold=config.fold, split="train", size=config.size,
                           scribble_ratio=config.scribble_ratio, holdout=holdout)
        volumes = ACDCVolumes(config.path, fold=config.fold, split=evaluate_on, holdout=holdout)
        validation = ACDCSlices(config.path, fold=config.fold, split=evaluate_on,
                                size=config.size, holdout=holdout)
        return TrainingData(train=train, validation=validation, volumes=volumes,
                            input_size=config.size)
    if config.name == "volumes":
        _, train = _volume_slices(config, config.train_split, require="scribble",
                                  scribble_ratio=config.scribble_ratio)
        return _volume_data(config, config.val_split, train=train)
    if config.name in ("voc", "folder"):
        from keras_regseg.data.voc import VOCFolder

        classes, channels = data_shape(config)
        common = dict(num_classes=classes, channels=channels, max_pixels=config.max_pixels,
                      unlabeled_value=config.unlabeled_value)
        if config.name == "folder":
            common.update(folder_layout(config.path))
        return TrainingData(
            train=VOCFolder(config.path, split=config.train_split,
                            scribble_ratio=config.scribble_ratio,
                            boxes_file=config.boxes_file, **common),
            validation=VOCFolder(config.path, split=config.val_split, **common))
    raise ValueError(f"unknown dataset {config.name!r}; expected synthetic, acdc, voc, folder "
                     "or volumes.")


def default_evaluation_split(config):
    """The split ``keras-regseg-evaluate`` scores when not told: what training validated on
    (ACDC's test fold, or its held-out patients; the validation split of 2D data), but for
    your own volumes their ``test_split``."""
    if config.name == "acdc":
        return "val" if config.holdout_patients else "test"
    return config.test_split if config.name == "volumes" else config.val_split


def build_evaluation_data(config, split=None):
    """:class:`TrainingData` of ``split`` alone, to score a trained network: no training
    data is read (its ``train`` is the split's source too, for the classes and channels)."""
    split = split or default_evaluation_split(config)
    if config.name == "acdc":
        from keras_regseg.data.acdc import SPLITS, ACDCSlices, ACDCVolumes

        if split not in SPLITS:
            raise ValueError(f"ACDC split {split!r}; expected one of {', '.join(SPLITS)}.")
        holdout = config.holdout_patients
        source = ACDCSlices(config.path, fold=config.fold, split=split, size=config.size,
                            holdout=holdout)
        return TrainingData(train=source, validation=source, input_size=config.size,
                            volumes=ACDCVolumes(config.path, fold=config.fold, split=split,
                                                holdout=holdout))
    if config.name == "volumes":
        return _volume_data(config, split)
    if config.name == "synthetic":
        config = dataclasses.replace(config, val_split=split)
    elif config.name in ("voc", "folder"):
        config = dataclasses.replace(config, val_split=split, train_split=split,
                                     boxes_file=None)
    data = build_training_data(config)
    return dataclasses.replace(data, train=data.validation)


def _volume_slices(config, split, require, scribble_ratio=1.0):
    """The subjects of a ``volumes`` split (each with a ``require`` file) and their slices."""
    from keras_regseg.data.volume_files import list_subjects
    from keras_regseg.data.volumes import VolumeSlices

    classes, _ = data_shape(config)
    subjects = list_subjects(config.path, split, config.manifest, require=require,
                             num_classes=classes, unlabeled_value=config.unlabeled_value,
                             normalization=config.normalization, slice_axis=config.slice_axis,
                             spacing=config.spacing)
    return subjects, VolumeSlices(subjects, config.size, classes, scribble_ratio=scribble_ratio,
                                  description=f"{split} volumes")


def _volume_data(config, split, train=None):
    """Validation (or evaluation) data of a ``volumes`` split: its slices and whole volumes."""
    from keras_regseg.data.volumes import Volumes

    subjects, validation = _volume_slices(config, split, require="mask")
    return TrainingData(train=train or validation, validation=validation,
                        volumes=Volumes(subjects, validation.num_classes, validation.class_names),
                        input_size=config.size)


FOLDER_LAYOUT = dict(image_dir="images", scribble_dir="scribbles", mask_dir="masks",
                     split_file="splits/{split}.txt")
"""``data.name: folder``: where the images, scribbles, masks and split lists are."""


def folder_layout(path):
    """:class:`~keras_regseg.data.voc.VOCFolder` arguments of a plain folder (masks optional)."""
    layout = dict(FOLDER_LAYOUT)
    if not os.path.isdir(os.path.join(path, layout["mask_dir"])):
        layout["mask_dir"] = None
    return layout
