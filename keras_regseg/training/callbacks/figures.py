"""Figures refreshed during training: loss/metric curves and a validation prediction grid."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.visualization import prediction_grid, training_curves

__all__ = ["PredictionGridCallback", "TrainingCurvesCallback"]


class TrainingCurvesCallback(keras.callbacks.Callback):
    """Redraw ``path`` (PNG) from ``history.series()`` after every epoch."""

    def __init__(self, path, history):
        super().__init__()
        self.path = path
        self.history = history

    def on_epoch_end(self, epoch, logs=None):
        training_curves(self.path, self.history.series())


class PredictionGridCallback(keras.callbacks.Callback):
    """Draw image / scribbles / prediction / ground truth for a few validation samples.

    Writes ``path`` (PNG) and, when ``log_dir`` is given, the same picture to
    TensorBoard's image tab at the step of the epoch's scalars (Keras's
    TensorBoard callback logs epoch ``e`` at step ``e``, counted from 0).
    ``extra_maps(model)`` may add columns (e.g. trust-region proposals).
    """

    def __init__(self, path, samples, predict, num_classes, every=1, log_dir=None,
                 extra_maps=None):
        super().__init__()
        self.path = path
        self.samples = samples
        self.predict = predict
        self.num_classes = num_classes
        self.every = int(every)
        self.extra_maps = extra_maps
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        self.draw(epoch)

    def draw(self, step):
        images = [s["image"] for s in self.samples]
        predictions = [np.argmax(self.predict(im[None])[0], axis=-1) for im in images]
        extra = self.extra_maps(self.model) if self.extra_maps else None
        prediction_grid(self.path, images, [s["weak_label"] for s in self.samples], predictions,
                        [s["dense_label"] for s in self.samples], self.num_classes,
                        titles=[s["id"] for s in self.samples], extra=extra)
        if self.writer is not None and os.path.exists(self.path):
            picture = tf.io.decode_png(tf.io.read_file(self.path), channels=3)
            with self.writer.as_default():
                tf.summary.image("validation_grid", picture[None], step=step)
            self.writer.flush()
