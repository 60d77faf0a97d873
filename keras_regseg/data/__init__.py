"""Datasets, weak-label tools and the tf.data pipeline.

>>> from keras_regseg.data import DictTargets, SyntheticShapes, make_training_dataset
>>> images, y_true = next(iter(make_training_dataset(
...     SyntheticShapes(8, size=32), batch_size=4, seed=0, target=DictTargets(("seeds", "image")))))
>>> tuple(images.shape), tuple(y_true["seeds"].shape), tuple(y_true["image"].shape)
((4, 32, 32, 1), (4, 32, 32), (4, 32, 32, 1))
"""

from keras_regseg.data import spec
from keras_regseg.data.acdc import ACDCSlices, ACDCVolumes, fold_patients
from keras_regseg.data.augment import Augmentation, augment_sample
from keras_regseg.data.base import InMemorySource, SegmentationSource, tags_from_labels
from keras_regseg.data.pipeline import DictTargets, make_eval_dataset, make_training_dataset
from keras_regseg.data.synthetic import SPLITS, SyntheticShapes
from keras_regseg.data.voc import VOC_CLASS_NAMES, VOCFolder
from keras_regseg.data.volume_files import list_subjects
from keras_regseg.data.volumes import Volumes, VolumeSlices
from keras_regseg.data.weak_labels import (scribbles_from_mask, shorten_scribbles,
                                           size_bits_from_mask, tags_from_mask)

__all__ = ["ACDCSlices", "ACDCVolumes", "augment_sample", "Augmentation", "DictTargets",
           "fold_patients",
           "InMemorySource", "make_eval_dataset", "make_training_dataset", "scribbles_from_mask",
           "SegmentationSource", "shorten_scribbles", "size_bits_from_mask", "spec", "SPLITS",
           "SyntheticShapes", "tags_from_labels", "tags_from_mask", "VOC_CLASS_NAMES", "VOCFolder",
           "list_subjects", "Volumes", "VolumeSlices"]
