"""keras_regseg: train Keras segmentation networks from weak labels.

Importing the package registers its networks, losses and training models
with Keras, so ``keras.saving.load_model`` reads keras_regseg ``.keras``
files. The training and solver subpackages load on first use.

>>> import keras_regseg as krs
>>> krs.losses.PartialCrossEntropy().name
'partial_cross_entropy'
"""

import importlib

from keras_regseg import data, evaluation, export, losses, methods, models  # noqa: F401
from keras_regseg.saving import load_model  # noqa: F401
from keras_regseg.version import __version__  # noqa: F401

_LAZY = ("inference", "solvers", "training", "visualization", "prediction")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"keras_regseg.{name}")
    raise AttributeError(f"module 'keras_regseg' has no attribute {name!r}")
