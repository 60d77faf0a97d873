"""The hyperparameters a tuning run searches, per method, around a base configuration.

Each hyperparameter is named by its config key (``"gd.weight"``), so a trial's
values are applied with ``TrainConfig.override(**values)``. Ranges are set
around the base configuration's own values, so that the base configuration
(the default trial, see :mod:`keras_regseg.training.tuning`) always lies
inside the space and the search explores around what the user chose:

- every method: ``optimizer.learning_rate``, log scale, base / 10 .. base x 10;
- then what the method's record adds (``search`` of its module in
  :mod:`keras_regseg.methods`): ``gd.weight``; ``adm.gamma`` and
  ``adm.potts_weight``; ``trust_region.lambda_weight`` and
  ``trust_region.epsilon``; the CCNN bounds. pCE and full supervision search
  the learning rate only.

>>> from keras_regseg.training.config import TrainConfig
>>> space = search_space(TrainConfig.from_dict({"method": "adm"}))
>>> for hp in space.space:
...     print(hp.name, hp.min_value, hp.max_value, hp.sampling)
optimizer.learning_rate 0.001 0.1 log
adm.gamma 0.15 15.0 log
adm.potts_weight 8.0 800.0 log
>>> space.values["adm.gamma"]        # the default is the base configuration's value
1.5
"""

import keras_tuner

from keras_regseg.methods import registry
from keras_regseg.training.config import data_shape

__all__ = ["describe", "LOG_FACTOR", "log_range", "search_space"]

LOG_FACTOR = 10.0
"""Log-scale ranges span base / LOG_FACTOR .. base x LOG_FACTOR."""


def search_space(config, num_classes=None):
    """``keras_tuner.HyperParameters`` of ``config.method``, defaults = ``config``'s values.

    The learning rate for every method, then what the method's record adds
    (its ``search``). ``num_classes`` (K, needed by the trust region's epsilon
    range) defaults to the classes of ``config.data``.
    """
    record = registry.get(config.method)
    hp = keras_tuner.HyperParameters()
    log_range(hp, "optimizer.learning_rate", config.optimizer.learning_rate)
    if record.search is not None:
        record.search(hp, config, num_classes or data_shape(config.data)[0])
    return hp


def log_range(hp, key, base, factor=LOG_FACTOR, upper=None):
    """Add ``key`` to ``hp``: log scale from ``base / factor`` to ``base * factor`` (at most ``upper``)."""
    base = float(base)
    if not base > 0:
        raise ValueError(f"cannot search {key} = {base!r} on a log scale around its value; "
                         "expected a positive base value (set it in the config).")
    high = base * factor if upper is None else max(min(base * factor, upper), base)
    hp.Float(key, base / factor, high, sampling="log", default=base)


def describe(hp):
    """One line per hyperparameter: name, range, scale and default (for logs and reports).

    >>> from keras_regseg.training.config import TrainConfig
    >>> print(describe(search_space(TrainConfig())))
    optimizer.learning_rate: 0.001 .. 0.1 (log), default 0.01
    """
    return "\n".join(f"{p.name}: {p.min_value:.4g} .. {p.max_value:.4g} ({p.sampling}), "
                     f"default {p.default:.4g}" for p in hp.space)
