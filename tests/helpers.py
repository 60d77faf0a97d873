"""Small networks, batches and problems shared by the tests (no test lives here)."""

import io
import os

import keras
import numpy as np
from PIL import Image

from keras_regseg.constants import IGNORE_INDEX, PAD_INDEX
from keras_regseg.data.io import write_label_png
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.voc import VOCFolder

CLASSES = 3
"""Classes of the tiny networks and batches."""


def tiny_network(seed=0, size=16, classes=CLASSES):
    """A two-convolution logits network on ``[size, size, 1]`` images, seeded."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(classes, 1)(hidden))


def square_images(count, size=16, seed=0):
    """Noisy dark images with a bright square at ``[4:12, 4:12]``."""
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((count, size, size, 1)).astype(np.float32)
    images[:, 4:12, 4:12] += 0.8
    return images


def stroke_seeds(count, size=16):
    """Seeds of :func:`square_images`: a stroke of class 0 outside, of class 1 inside."""
    seeds = np.full((count, size, size), IGNORE_INDEX, np.int32)
    seeds[:, 1, 1:6] = 0
    seeds[:, 8, 6:10] = 1
    return seeds


def seed_problem(seed=0, shape=(2, 5, 6), classes=3, unlabeled=0.7):
    """Random labels (a fraction ``unlabeled`` ignored, the last row padding) and logits."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=shape)
    labels[rng.random(labels.shape) < unlabeled] = IGNORE_INDEX
    labels[:, -1] = PAD_INDEX
    logits = rng.normal(size=(*shape, classes)).astype("float32")
    return labels, logits


def make_voc(root, samples, masks=None, num_classes=CLASSES):
    """A VOC folder of ``{id: (image, scribble)}``; arrays are written as PNGs, bytes as they are.

    ``masks`` optionally maps ids to dense masks (greyscale PNGs).
    """
    for sub in ("JPEGImages", "pascal_2012_scribble", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, (image, scribble) in samples.items():
        for folder, content, label in (("JPEGImages", image, False),
                                       ("pascal_2012_scribble", scribble, True)):
            path = os.path.join(root, folder, f"{image_id}.png")
            if isinstance(content, bytes):
                with open(path, "wb") as f:
                    f.write(content)
            elif label:
                write_label_png(path, content)
            else:
                Image.fromarray(content).save(path)
    if masks:
        os.makedirs(os.path.join(root, "SegmentationClassAug"))
        for image_id, mask in masks.items():
            Image.fromarray(np.asarray(mask, np.uint8), "L").save(
                os.path.join(root, "SegmentationClassAug", f"{image_id}.png"))
    with open(os.path.join(root, "ImageSets/Segmentation/train.txt"), "w") as f:
        f.write("\n".join(samples) + "\n")
    return VOCFolder(root, num_classes=num_classes)


def random_image(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def png_bytes(image, mode=None):
    """PNG file contents of a PIL image or of an array (``Image.fromarray(array, mode)``)."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def one_batch(source, **kwargs):
    options = dict(batch_size=1, shuffle=False, repeat=False, seed=0) | kwargs
    return next(iter(make_training_dataset(source, **options)))


def tiny_run_config(data, output, batch_size=2):
    """A ``TrainConfig`` of a few steps of a tiny UNet on ``data`` (a data section dict)."""
    from keras_regseg.training.config import TrainConfig

    return TrainConfig.from_dict({
        "data": {"augmentation": "none", **data},
        "model": {"name": "unet", "options": {"filters": [4, 8, 8], "dropout": 0.0}},
        "training": {"iterations": 4, "steps_per_epoch": 2, "batch_size": batch_size,
                     "num_grid_images": 2},
        "output": str(output)})
