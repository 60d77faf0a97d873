"""A network trained on a Keras loss of dict targets: the model of pCE, full, entropy and GD.

Keras's ``compile(loss=...)`` wants ``y_true`` of the same structure as the
network's output, so a loss cannot read the dict of targets a method asks for
(seeds, image, ...). :class:`LossModel` runs the loss in
:class:`~keras_regseg.methods.wrapper.NetworkWrapper`'s training step instead,
the step every method shares, and reduces it as ``compile(loss=...)`` does.

>>> import numpy as np, keras
>>> from keras_regseg.losses import PartialCrossEntropy
>>> net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1)])
>>> model = LossModel(net, PartialCrossEntropy())
>>> model.compile(optimizer=keras.optimizers.SGD(0.5))
>>> seeds = np.full((2, 4, 4), 255, "int32"); seeds[:, 0, 0] = 1
>>> history = model.fit(np.ones((2, 4, 4, 1), "float32"), {"seeds": seeds}, epochs=3, verbose=0)
>>> history.history["loss"][-1] < history.history["loss"][0]
True
"""

from __future__ import annotations

import typing

import keras

from keras_regseg.methods.wrapper import NetworkWrapper
from keras_regseg.ops.replicas import replicas

__all__ = ["LossModel"]


@keras.saving.register_keras_serializable(package="keras_regseg")
class LossModel(NetworkWrapper):
    """``network`` trained on ``loss`` (a ``keras.losses.Loss`` returning per-pixel values).

    The loss reads ``y_true`` as :mod:`keras_regseg.losses.targets` describes
    (a dict of named targets, or packed ones) and sees the logits in its own
    dtype (float32 under mixed precision), as in ``compile(loss=...)``.
    """

    def __init__(self, network: keras.Model, loss: keras.losses.Loss | dict,
                 **kwargs: typing.Any):
        super().__init__(network, **kwargs)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if not isinstance(loss, keras.losses.Loss):
            raise TypeError(f"loss must be a keras.losses.Loss; got {type(loss).__name__}.")
        self.loss_fn = loss

    def batch_loss(self, y, logits, sample_weight=None, training=True):
        """The loss as ``compile(loss=...)`` computes it (its own reduction: the mean over
        pixels, scaled by ``1 / replicas``), plus the layers' losses."""
        loss = self.loss_fn(y, logits, sample_weight)
        if self.losses:
            loss += self.layer_losses() / replicas()
        return loss, {}

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss_fn)
        return config
