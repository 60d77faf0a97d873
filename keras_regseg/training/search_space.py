"""The hyperparameters a tuning run searches, per method, around a base configuration.

Each hyperparameter is named by its config key (``"gd.weight"``), so a trial's
values are applied with ``TrainConfig.override(**values)``. Ranges are set
around the base configuration's own values, so that the base configuration
(the default trial, see :mod:`keras_regseg.training.tuning`) always lies
inside the space and the search explores around what the user chose:

- every method: ``optimizer.learning_rate``, log scale, base / 10 .. base x 10;
- ``gd``: ``gd.weight`` (the regularizer's weight; ``null`` is its default), log, / 10 .. x 10;
- ``adm``: ``adm.gamma`` and ``adm.potts_weight``, log, / 10 .. x 10;
- ``trust_region``: ``trust_region.lambda_weight`` (log, / 10 .. x 10) and
  ``trust_region.epsilon`` (linear, a quarter of its maximum ``(K - 1) / K`` to
  98 % of it). ``trust_region.potts_weight`` is *not* searched: stage A's
  solver minimizes ``potts * (lambda * sum -log f + sum w_pq [..])``
  (:func:`keras_regseg.methods.trust_region_stage_a.solver_weights`), whose
  minimizer does not depend on it;
- ``ccnn``: the tag bounds ``ccnn.foreground_lower`` (log, / 4 .. x 4, at most
  0.5), ``ccnn.background_lower`` (linear, half of it .. the middle of the base
  bounds) and ``ccnn.background_upper`` (linear, that middle .. half-way to 1),
  so every trial keeps ``background_lower <= background_upper``;
- ``pce`` and ``full``: the learning rate only.

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

LOG_FACTOR = 10.0
"""Log-scale ranges span base / LOG_FACTOR .. base x LOG_FACTOR."""

METHOD_KEYS = {
    "pce": (),
    "full": (),
    "gd": ("gd.weight",),
    "adm": ("adm.gamma", "adm.potts_weight"),
    "trust_region": ("trust_region.lambda_weight", "trust_region.epsilon"),
    "ccnn": ("ccnn.foreground_lower", "ccnn.background_lower", "ccnn.background_upper"),
}
"""The method-specific config keys searched, beside the learning rate."""


def search_space(config, num_classes=None):
    """``keras_tuner.HyperParameters`` of ``config.method``, defaults = ``config``'s values.

    ``num_classes`` (K) is needed by the trust region's epsilon range; it
    defaults to ``config.data.num_classes``.
    """
    if config.method not in METHOD_KEYS:
        raise ValueError(f"method = {config.method!r} has no search space; expected one of "
                         f"{', '.join(METHOD_KEYS)}.")
    hp = keras_tuner.HyperParameters()
    _log(hp, "optimizer.learning_rate", config.optimizer.learning_rate)
    if config.method == "gd":
        from keras_regseg.methods.registry import regularizer_loss

        # ``null`` means the regularizer's own default weight: search around that value.
        _log(hp, "gd.weight", regularizer_loss(config.gd).weight)
    elif config.method == "adm":
        _log(hp, "adm.gamma", config.adm.gamma)
        _log(hp, "adm.potts_weight", config.adm.potts_weight)
    elif config.method == "trust_region":
        _trust_region(hp, config.trust_region, num_classes or config.data.num_classes)
    elif config.method == "ccnn":
        _ccnn(hp, config.ccnn)
    return hp


def _log(hp, key, base, factor=LOG_FACTOR, upper=None):
    base = float(base)
    if not base > 0:
        raise ValueError(f"cannot search {key} = {base!r} on a log scale around its value; "
                         "expected a positive base value (set it in the config).")
    high = base * factor if upper is None else max(min(base * factor, upper), base)
    hp.Float(key, base / factor, high, sampling="log", default=base)


def _trust_region(hp, tr_config, num_classes):
    from keras_regseg.losses.robust_ce import default_epsilon, max_epsilon

    _log(hp, "trust_region.lambda_weight", tr_config.lambda_weight)
    epsilon = default_epsilon(num_classes) if tr_config.epsilon is None else tr_config.epsilon
    top = max_epsilon(num_classes)
    hp.Float("trust_region.epsilon", min(0.25 * top, epsilon), max(0.98 * top, epsilon),
             default=float(epsilon))


def _ccnn(hp, ccnn_config):
    _log(hp, "ccnn.foreground_lower", ccnn_config.foreground_lower, factor=4.0, upper=0.5)
    lower, upper = ccnn_config.background_lower, ccnn_config.background_upper
    middle = (lower + upper) / 2
    # Ranges meet at the middle of the base bounds: a trial never has lower > upper.
    hp.Float("ccnn.background_lower", lower / 2, middle, default=float(lower))
    hp.Float("ccnn.background_upper", middle, (upper + 1.0) / 2, default=float(upper))


def describe(hp):
    """One line per hyperparameter: name, range, scale and default (for logs and reports).

    >>> from keras_regseg.training.config import TrainConfig
    >>> print(describe(search_space(TrainConfig())))
    optimizer.learning_rate: 0.001 .. 0.1 (log), default 0.01
    """
    return "\n".join(f"{p.name}: {p.min_value:.4g} .. {p.max_value:.4g} ({p.sampling}), "
                     f"default {p.default:.4g}" for p in hp.space)
