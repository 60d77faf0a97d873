"""A Keras callback timing training steps, shared by the throughput and scaling benchmarks.

Kept out of ``common.py``, which scripts without TensorFlow (``solver.py``) import.
"""

import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training batch after the first ``skip`` ones."""

    def __init__(self, skip):
        super().__init__()
        self.skip, self.times, self._start = skip, [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.skip:
            self.times.append(time.perf_counter() - self._start)
