"""The registry of training methods: ``--method`` name -> :class:`~keras_regseg.methods.method.Method`.

Adding a method is writing its module (see :mod:`keras_regseg.methods.method`)
and naming it in :data:`METHOD_MODULES`; the command line, config validation,
the tuner and the trainer read the records from here. Reading them imports no
TensorFlow.

>>> names()
('pce', 'full', 'entropy', 'gd', 'adm', 'trust_region', 'ccnn')
>>> get("gd").config.__name__, get("full").finetunes
('GDConfig', False)
"""

from __future__ import annotations

import functools
import importlib
import typing

from keras_regseg.methods.method import Method, MethodSetup  # noqa: F401 (re-exported)

if typing.TYPE_CHECKING:   # names for the type hints only
    import keras

    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import TrainingData

__all__ = ["get", "METHOD_MODULES", "names", "prepare_method", "records"]

METHOD_MODULES = ("pce", "full", "entropy", "gd", "adm", "trust_region", "ccnn")
"""Modules of :mod:`keras_regseg.methods` holding one ``METHOD`` record each, in display order."""


@functools.lru_cache(maxsize=None)
def records():
    """``{name: Method}`` of every registered method."""
    found = {}
    for module_name in METHOD_MODULES:
        record = importlib.import_module(f"keras_regseg.methods.{module_name}").METHOD
        if record.name in found:
            raise ValueError(f"two methods are named {record.name!r}.")
        found[record.name] = record
    return found


def names():
    """The ``--method`` values, in display order."""
    return tuple(records())


def get(name):
    """The :class:`Method` named ``name``; ``ValueError`` naming the available ones."""
    try:
        return records()[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(names())}.") from None


def prepare_method(config: TrainConfig, network: keras.Model,
                   data: TrainingData | None = None) -> MethodSetup:
    """The :class:`MethodSetup` of ``config.method`` around ``network``.

    ``data`` (a :class:`~keras_regseg.training.data_setup.TrainingData`) is needed
    by the trust region (stage A reads the un-augmented training images).
    """
    return get(config.method).setup(config, network, data)
