"""Score a network on a plain folder of images and one of masks (label PNGs).

``masks/<name>.png`` belongs to ``images/<name>.<ext>`` (the same relative path,
sub-folders included); mask pixel values are class indices, ``void_value``
(255 by default) marks pixels without ground truth. Used by
``keras-regseg-evaluate --images DIR --masks DIR``.
"""

import os

import numpy as np

from keras_regseg.data.io import read_label_png
from keras_regseg.data.spec import IGNORE_INDEX

__all__ = ["folder_samples"]


def folder_samples(images, masks, channels, num_classes, void_value=255):
    """Sample dicts ``{"image", "dense_label", "id"}`` of the image/mask pairs, in order.

    Raises ``FileNotFoundError`` naming the image whose mask is missing, and
    ``ValueError`` naming a mask of another size or with values outside the classes.
    """
    from keras_regseg.prediction import _named_images, read_for_model

    named = _named_images(images)
    pairs = []
    for path, relative in named:
        mask_path = os.path.join(masks, os.path.splitext(relative)[0] + ".png")
        if not os.path.isfile(mask_path):
            raise FileNotFoundError(f"{path}: no mask {mask_path}; expected a label PNG of the "
                                    "same name under --masks.")
        pairs.append((path, mask_path, relative))
    for path, mask_path, relative in pairs:
        image, _ = read_for_model(path, channels)
        mask = read_label_png(mask_path).astype(np.int32)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but {path} is "
                             f"{image.shape[0]}x{image.shape[1]}; a mask has its image's size.")
        bad = np.unique(mask[(mask >= num_classes) & (mask != void_value)])
        if bad.size:
            raise ValueError(f"{mask_path}: value {int(bad[0])} is not a class index in "
                             f"[0, {num_classes}) nor the void value {void_value}.")
        yield {"image": image, "dense_label": np.where(mask == void_value, IGNORE_INDEX, mask),
               "id": relative}
