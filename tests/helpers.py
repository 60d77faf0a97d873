"""Small networks, batches and problems shared by the tests (no test lives here)."""

import keras
import numpy as np

from keras_regseg.constants import IGNORE_INDEX, PAD_INDEX

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
