"""keras_regseg: train Keras segmentation networks from weak labels.

Subpackages load on first use (``krs.models``, ``krs.losses``...), so the
command-line tools can check their flags before TensorFlow starts.

>>> import keras_regseg as krs
>>> krs.losses.PartialCrossEntropy().name
'partial_cross_entropy'
"""

import importlib

from keras_regseg.version import __version__

_SUBPACKAGES = ("data", "evaluation", "export", "losses", "methods", "models", "solvers",
                "training", "inference", "visualization")


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_regseg.{name}")
    raise AttributeError(f"module 'keras_regseg' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
