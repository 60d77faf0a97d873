"""A weighted sum of per-pixel losses, e.g. pCE + weight * CRF regularizer."""

from __future__ import annotations

import typing
from collections.abc import Sequence

import keras

from keras_regseg.losses.cross_entropy import PartialCrossEntropy

__all__ = ["WeightedSumLoss"]


@keras.saving.register_keras_serializable(package="keras_regseg")
class WeightedSumLoss(keras.losses.Loss):
    """``sum_i weights[i] * losses[i](y_true, y_pred)``, per pixel.

    Every term must return per-pixel values ``[B, H, W]`` (all keras_regseg
    losses do), so the sum stays per-pixel and Keras's reduction and
    ``tf.distribute`` scaling stay right.

    >>> import numpy as np
    >>> pce = PartialCrossEntropy()
    >>> total = WeightedSumLoss([pce, pce], [1.0, 0.5])
    >>> y = np.zeros((1, 2, 2), "float32"); logits = np.zeros((1, 2, 2, 2), "float32")
    >>> round(float(total(y, logits)) / float(pce(y, logits)), 3)
    1.5
    """

    def __init__(self, losses: Sequence[keras.losses.Loss], weights: Sequence[float] | None = None,
                 name: str = "weighted_sum_loss", **kwargs: typing.Any):
        super().__init__(name=name, **kwargs)
        self.losses = [keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
                       for loss in losses]
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.losses):
            raise ValueError(f"got {len(self.losses)} losses but {len(self.weights)} weights; "
                             "expected one weight per loss.")

    def call(self, y_true, y_pred):
        total = 0.0
        for loss, weight in zip(self.losses, self.weights):
            if weight != 0.0:
                total = total + weight * loss.call(y_true, y_pred)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            losses=[keras.saving.serialize_keras_object(loss) for loss in self.losses],
            weights=self.weights,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.saving.deserialize_keras_object(loss)
                            for loss in config["losses"]]
        return cls(**config)
