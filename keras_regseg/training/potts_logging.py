"""Log the Potts energy of every method's predictions each epoch (training and validation).

The grid Potts energy of the argmax labeling is what the ADM and trust-region
papers compare optimizers by; logging it for every method (pCE and GD too)
makes runs comparable. Training images are a fixed subset of the
un-augmented training set, so the curve follows the network, not the crops.
"""

import keras
import numpy as np

from keras_regseg.training.evaluation import mean_potts_energy

__all__ = ["PottsEnergyCallback", "spread_indices", "TRAIN_SUBSET", "VALIDATION_SUBSET"]

TRAIN_SUBSET = 32
"""Training images scored per epoch (evenly spread over the training set)."""

VALIDATION_SUBSET = 64
"""Validation images scored per epoch (the final evaluation scores them all)."""


class _Subset:
    """``len`` and ``load`` over some indices of a source (what ``mean_potts_energy`` reads)."""

    def __init__(self, source, indices):
        self.source, self.indices = source, list(indices)

    def __len__(self):
        return len(self.indices)

    def load(self, index):
        return self.source.load(self.indices[index])


def spread_indices(length, count):
    """``count`` indices evenly spread over ``range(length)`` (all of them if fewer).

    >>> spread_indices(10, 4), spread_indices(3, 5)
    ([0, 2, 5, 7], [0, 1, 2])
    """
    if length <= count:
        return list(range(length))
    return np.linspace(0, length, count, endpoint=False).astype(int).tolist()


class PottsEnergyCallback(keras.callbacks.Callback):
    """Add ``potts_energy`` (training subset) and ``val_potts_energy`` to the epoch logs.

    Values are the mean per-pixel 8-grid contrast-sensitive Potts energy (weight 1)
    of ``argmax predict(image)`` (:func:`~keras_regseg.training.evaluation.mean_potts_energy`).
    """

    def __init__(self, predict, train_source, validation_source, every=1,
                 train_count=TRAIN_SUBSET, validation_count=VALIDATION_SUBSET):
        super().__init__()
        self.predict = predict
        self.train = _Subset(train_source, spread_indices(len(train_source), train_count))
        self.validation = _Subset(validation_source,
                                  spread_indices(len(validation_source), validation_count))
        self.every = int(every)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        logs["potts_energy"] = mean_potts_energy(self.predict, self.train)
        logs["val_potts_energy"] = mean_potts_energy(self.predict, self.validation)
