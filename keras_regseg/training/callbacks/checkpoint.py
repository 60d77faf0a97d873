"""Model checkpoints written atomically (temporary file, then rename)."""

import keras

from keras_regseg.utils.files import atomic_write


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model as ``.keras`` after every epoch, never leaving a partial file.

    Keras's own ``ModelCheckpoint`` writes in place, so a kill during the
    write leaves a corrupt file where the last good one was.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        atomic_write(self.path, self.model.save)
