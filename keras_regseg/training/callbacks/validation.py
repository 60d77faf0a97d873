"""Dense-label validation at the end of epochs, logged like any Keras metric."""

import keras

__all__ = ["ValidationCallback"]


class ValidationCallback(keras.callbacks.Callback):
    """Run ``evaluate(model) -> {name: float}`` every ``every`` epochs and log ``val_<name>``.

    It must come first in the callback list so that TensorBoard, the metrics
    file and the checkpoints see the values it adds to ``logs``. On epochs it
    skips, the last values are not repeated (the curves show real points only).
    """

    def __init__(self, evaluate, every=1):
        super().__init__()
        self.evaluate = evaluate
        self.every = int(every)
        self.last = {}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        self.last = {f"val_{k}": float(v) for k, v in self.evaluate(self.model).items()}
        logs.update(self.last)
