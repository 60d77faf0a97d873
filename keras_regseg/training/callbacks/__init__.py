"""Callbacks a training run uses: validation, atomic checkpoints, metrics file, figures."""

from keras_regseg.training.callbacks.checkpoint import AtomicModelCheckpoint, ResumableBackup
from keras_regseg.training.callbacks.figures import PredictionGridCallback, TrainingCurvesCallback
from keras_regseg.training.callbacks.history import MetricsHistory
from keras_regseg.training.callbacks.validation import ValidationCallback
