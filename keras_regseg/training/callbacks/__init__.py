"""Callbacks a training run uses: validation, checkpoints, metrics file, figures, NaN stop."""

from keras_regseg.training.callbacks.checkpoint import (AtomicModelCheckpoint, BrokenBackupError,
                                                       ResumableBackup)
from keras_regseg.training.callbacks.figures import PredictionGridCallback, TrainingCurvesCallback
from keras_regseg.training.callbacks.history import MetricsHistory
from keras_regseg.training.callbacks.nonfinite import NonFiniteLossError, StopOnNonFinite
from keras_regseg.training.callbacks.validation import ValidationCallback

__all__ = ["AtomicModelCheckpoint", "BrokenBackupError", "MetricsHistory", "NonFiniteLossError",
           "PredictionGridCallback", "ResumableBackup", "StopOnNonFinite",
           "TrainingCurvesCallback", "ValidationCallback"]
