"""Turn a :class:`~keras_regseg.training.config.DataConfig` into data sources."""

import dataclasses
import os
import typing

from keras_regseg.data.base import SegmentationSource
from keras_regseg.training.config import data_shape

__all__ = ["build_training_data", "FOLDER_LAYOUT", "folder_layout", "TrainingData"]


@dataclasses.dataclass
class TrainingData:
    """What a run trains on and validates against.

    ``volumes`` is set for volumetric data (ACDC): validation then follows the
    WSL4MIS protocol (3D Dice, HD95 per volume); otherwise ``validation``
    images are scored by mIoU.
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
    """Sources for ``config.name`` in ``synthetic``, ``acdc``, ``voc``, ``folder``."""
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
    raise ValueError(f"unknown dataset {config.name!r}; expected synthetic, acdc, voc or folder.")


FOLDER_LAYOUT = dict(image_dir="images", scribble_dir="scribbles", mask_dir="masks",
                     split_file="splits/{split}.txt")
"""``data.name: folder``: where the images, scribbles, masks and split lists are."""


def folder_layout(path):
    """:class:`~keras_regseg.data.voc.VOCFolder` arguments of a plain folder (masks optional)."""
    layout = dict(FOLDER_LAYOUT)
    if not os.path.isdir(os.path.join(path, layout["mask_dir"])):
        layout["mask_dir"] = None
    return layout
