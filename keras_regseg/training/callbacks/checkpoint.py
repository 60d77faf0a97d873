"""Model checkpoints written atomically (temporary file, then rename)."""

import keras

from keras_regseg.utils.files import atomic_write


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model as ``.keras`` after every epoch, never leaving a partial file.

    Keras's own ``ModelCheckpoint`` writes in place, so a kill during the
    write leaves a corrupt file where the last good one was.

    ``network`` is the model to save when the fitted model wraps it (methods
    with their own ``train_step``); by default the fitted model itself.
    """

    def __init__(self, path, network=None):
        super().__init__()
        self.path = path
        self.network = network

    def on_epoch_end(self, epoch, logs=None):
        atomic_write(self.path, (self.network or self.model).save)
