"""The run's ``metrics.json``: configuration, per-epoch history and final results."""

import math
import time

import keras

from keras_regseg.utils.files import write_json

__all__ = ["MetricsHistory"]


class MetricsHistory(keras.callbacks.Callback):
    """Collect every logged value per epoch and rewrite ``path`` after each epoch.

    ``static`` holds fixed entries (the configuration); :meth:`finish` adds
    the final evaluation. Epochs restored by ``BackupAndRestore`` keep the
    history read back from an existing file.
    """

    def __init__(self, path, static, history=None):
        super().__init__()
        self.path = path
        self.static = dict(static)
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.epochs_done = len(self.history.get("epoch", []))
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs["learning_rate"] = _current_learning_rate(self.model)
        if epoch < self.epochs_done:   # re-run of an epoch after a resume: replace it
            for values in self.history.values():
                del values[epoch:]
        self.history.setdefault("epoch", []).append(epoch + 1)
        size = len(self.history["epoch"])
        for key, value in logs.items():
            values = self.history.setdefault(key, [])
            values.extend([math.nan] * (size - 1 - len(values)))
            values.append(float(value))
        self.epochs_done = size
        self.write()

    def series(self):
        """``{name: [value per epoch]}`` padded with NaN where a value was not logged."""
        size = len(self.history.get("epoch", []))
        return {k: v + [math.nan] * (size - len(v)) for k, v in self.history.items() if k != "epoch"}

    def write(self, final=None):
        values = dict(self.static)
        values["history"] = self.series() | {"epoch": self.history.get("epoch", [])}
        if final is not None:
            values["final"] = final
        write_json(self.path, values)


def _current_learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return math.nan
    rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))
