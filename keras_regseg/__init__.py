"""keras_regseg: train Keras segmentation networks from weak labels.

Subpackages load on first use, so ``import keras_regseg`` (and ``--help`` of
its commands) starts no TensorFlow. Touching ``keras_regseg.models``,
``.losses`` or ``.methods`` registers their classes with Keras;
:func:`keras_regseg.load_model` (or :func:`register_keras_objects` before a
plain ``keras.saving.load_model``) reads any keras_regseg ``.keras`` file.

>>> import keras_regseg as krs
>>> krs.losses.PartialCrossEntropy().name
'partial_cross_entropy'
"""

import importlib

from keras_regseg.version import __version__  # noqa: F401

_SUBPACKAGES = ("data", "evaluation", "export", "losses", "methods", "metrics", "models", "ops",
                "solvers", "training", "inference", "visualization", "prediction", "constants",
                "saving")
__all__ = ["load_model", "register_keras_objects", "__version__", *_SUBPACKAGES]


def register_keras_objects():
    """Import the modules that register keras_regseg's networks, losses and models with Keras."""
    for name in ("losses", "metrics", "models", "methods.adm_model", "methods.trust_region_model",
                 "methods.ccnn_model"):
        importlib.import_module(f"keras_regseg.{name}")


def load_model(path, safe_mode=True, compile=False):
    """Load a ``.keras`` file saved by keras_regseg; see :func:`keras_regseg.saving.load_model`."""
    from keras_regseg.saving import load_model as load

    return load(path, safe_mode=safe_mode, compile=compile)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_regseg.{name}")
    raise AttributeError(f"module 'keras_regseg' has no attribute {name!r}")
