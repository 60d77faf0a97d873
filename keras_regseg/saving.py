"""Load saved keras_regseg models.

This helper registers keras_regseg's layers, models and losses with Keras
(after :func:`keras_regseg.register_keras_objects`, plain
``keras.saving.load_model`` works too), gives a clear error for a missing file and keeps safe mode on by default: a ``.keras``
file that carries Python code (a ``Lambda`` layer) is refused unless the
caller trusts it (``safe_mode=False``).

>>> import os, tempfile, keras_regseg as krs
>>> path = os.path.join(tempfile.mkdtemp(), "net.keras")
>>> krs.models.UNet(num_classes=2, filters=(4, 8), dropout=0.0).save(path)
>>> load_model(path).name
'unet'
"""

import os
import re

import keras

__all__ = ["check_safe_keras", "load_model", "MIN_SAFE_KERAS"]

MIN_SAFE_KERAS = (3, 11, 3)
"""Keras versions before this one reportedly skip safe mode for ``.h5`` files."""


def check_safe_keras(version=None):
    """Raise ``RuntimeError`` when the installed Keras cannot be trusted with safe mode.

    >>> check_safe_keras("3.10.0")
    Traceback (most recent call last):
    ...
    RuntimeError: Keras 3.10.0 is installed; loading model files safely needs Keras 3.11.3 or later (pip install -U "keras>=3.11.3").
    """
    version = version or keras.__version__
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    if parts < MIN_SAFE_KERAS:
        needed = ".".join(map(str, MIN_SAFE_KERAS))
        raise RuntimeError(f"Keras {version} is installed; loading model files safely needs "
                           f"Keras {needed} or later (pip install -U \"keras>={needed}\").")


def load_model(path, safe_mode=True, compile=False):
    """Load a ``.keras`` file saved by keras_regseg (or any Keras model file)."""
    import keras_regseg

    check_safe_keras()
    keras_regseg.register_keras_objects()

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file; expected a .keras file.")
    return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
