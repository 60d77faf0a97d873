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

import keras


def load_model(path, safe_mode=True, compile=False):
    """Load a ``.keras`` file saved by keras_regseg (or any Keras model file)."""
    import keras_regseg

    keras_regseg.register_keras_objects()

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file; expected a .keras file.")
    return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
