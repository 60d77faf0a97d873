"""Stop training at the first step whose loss is NaN or inf, before anything of it is saved.

``keras.callbacks.TerminateOnNaN`` only sets ``stop_training``: ``fit`` then
still ends the epoch, and every ``on_epoch_end`` callback after it (the
metrics file, ``checkpoints/last.keras``, the resumable backup) saves the
broken network over the last good one. :class:`StopOnNonFinite` raises
instead, so the epoch never ends: the checkpoint and the backup keep the last
good epoch, and rerunning the same command resumes from it.
"""

import math

import keras
import numpy as np

__all__ = ["NonFiniteLossError", "StopOnNonFinite"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the epoch and batch."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise :class:`NonFiniteLossError` when a batch logs a non-finite ``loss``.

    Keras logs the running mean of the epoch, so the first batch with a NaN
    or inf network output (or gradient step that produced one) is the one named.

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.array([[1.0], [np.nan]], "float32")
    >>> try:
    ...     model.fit(x, x, batch_size=1, epochs=1, verbose=0, callbacks=[StopOnNonFinite()])
    ... except NonFiniteLossError as error:
    ...     print(str(error).split(";")[0])
    loss = nan at epoch 1, batch 2 of 2 (training step 2)
    """

    def __init__(self, keys=("loss",)):
        super().__init__()
        self.keys = tuple(keys)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key in self.keys:
            value = (logs or {}).get(key)
            if value is None:
                continue
            value = float(np.asarray(keras.ops.convert_to_numpy(value)))
            if not math.isfinite(value):
                raise NonFiniteLossError(self._message(key, value, batch))

    def _message(self, key, value, batch):
        steps = (self.params or {}).get("steps")
        of = f" of {steps}" if steps else ""
        step = f" (training step {self.epoch * steps + batch + 1})" if steps else ""
        if self.epoch:
            kept = (f"nothing of epoch {self.epoch + 1} was saved: the checkpoints and the "
                    f"backup keep epoch {self.epoch}, and rerunning the same command resumes "
                    "from there")
        else:
            kept = "no epoch had finished, so nothing was saved"
        return (f"{key} = {value} at epoch {self.epoch + 1}, batch {batch + 1}{of}{step}; "
                f"training stopped and {kept}. A NaN or inf network output usually means a "
                "learning rate too high for the data (optimizer.learning_rate) or NaN/inf in "
                "the input images.")
