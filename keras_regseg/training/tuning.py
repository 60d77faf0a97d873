"""Hyperparameter search: train one configuration per trial, keep the best (``train.py --tune``).

A tuning run owns one folder::

    <run>/
      trials/<id>/             one ordinary training run per trial (train()'s folder)
      tuning/results.md        the table: trial, values, objective, best first
      tuning/results.json      the same, with every trial's final metrics
      tuning/best_config.yaml  the best trial's full configuration (TrainConfig.from_yaml)
      tuning/search.json       what was searched (a rerun must search the same)
      tuning/keras_tuner/      the oracle's state

Every trial calls :func:`keras_regseg.training.trainer.train` on the base
configuration with the trial's values as overrides, so distribution
(``training.distribute``), mixed precision and resuming work as in a single
run; the data are built once and shared. The objective is the final
validation score train() returns: ``mean_dice`` on volumes (ACDC), ``miou``
otherwise, maximized. Trial 0 is always the base configuration itself, so the
table says whether the search beat it. The search space is
:func:`keras_regseg.training.search_space.search_space`; ``keras_tuner``'s
random-search or Bayesian-optimization oracle proposes the values.

Rerunning the same command resumes: finished trials are kept, an interrupted
trial resumes from its last epoch, and ``trials`` may be raised to search on.

The objective is measured on the run's validation data (for ACDC the fold's
test volumes, as the WSL4MIS protocol validates on them), the same data a
run's final report uses: the best trial's score there is optimistic, being
the maximum over trials. Hold out data of your own for an unbiased number.
"""

import importlib.util
import json
import math
import os
import time

import keras_tuner

from keras_regseg.training.search_space import search_space
from keras_regseg.training.tuning_report import (TuningResult, first_trial_id,  # noqa: F401
                                                 format_value, write_results)

from keras_regseg.training.tuning_options import DEFAULT_TRIALS, TUNERS, check_options  # noqa: F401

__all__ = ["BayesianOracle", "default_tuning_output", "DefaultFirst", "make_oracle",
           "objective_name", "RandomSearchOracle", "TrainingTuner", "trial_config", "tune"]


def default_tuning_output(config):
    """``runs/<method>_<data>_tuning``: stable, so rerunning a tuning command resumes it."""
    return os.path.join("runs", f"{config.method}_{config.data.name}_tuning")


def objective_name(data):
    """``"mean_dice"`` for volumetric validation data (ACDC), ``"miou"`` otherwise."""
    return "mean_dice" if data.volumes is not None else "miou"


def trial_config(base, values, output):
    """``base`` with a trial's ``values`` (config keys) and its own ``output`` folder."""
    return base.override(source=f"<tuning trial in {output}>", output=output, **values)


class DefaultFirst:
    """Oracle mixin: the first trial runs the search space's defaults (the base configuration)."""

    def populate_space(self, trial_id):
        if not self.trials:
            values = {hp.name: hp.default for hp in self.hyperparameters.space}
            return {"status": "RUNNING", "values": values}
        return super().populate_space(trial_id)


class RandomSearchOracle(DefaultFirst, keras_tuner.oracles.RandomSearchOracle):
    """Random search after the default trial."""


class BayesianOracle(DefaultFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    """Gaussian-process Bayesian optimization after the default trial."""


def make_oracle(tuner, hyperparameters, objective, trials, seed):
    """The oracle of ``tuner`` (``"random"`` or ``"bayesian"``) over ``hyperparameters``.

    The same ``seed`` (``training.seed`` in :func:`tune`) proposes the same values.

    The Bayesian oracle samples about half of the trials at random (at least
    two, at most three per hyperparameter) before fitting its Gaussian process.
    """
    kwargs = dict(objective=keras_tuner.Objective(objective, direction="max"),
                  # keras_tuner takes a seed of 0 for "none" (a random one): shift by one.
                  max_trials=trials, hyperparameters=hyperparameters, seed=int(seed) + 1,
                  allow_new_entries=False, tune_new_entries=False)
    if tuner == "random":
        return RandomSearchOracle(**kwargs)
    dimensions = len(hyperparameters.space)
    initial = max(2, min(3 * dimensions, trials // 2))
    return BayesianOracle(num_initial_points=initial, **kwargs)


class TrainingTuner(keras_tuner.Tuner):
    """A ``keras_tuner.Tuner`` whose trial is one :func:`train` run (module docstring)."""

    def __init__(self, oracle, base_config, data, run_dir, objective, verbose=1, train_verbose=0,
                 **kwargs):
        super().__init__(oracle, directory=os.path.join(run_dir, "tuning"),
                         project_name="keras_tuner", **kwargs)
        self.base_config, self.data, self.run_dir = base_config, data, run_dir
        self.objective_name, self.verbose, self.train_verbose = objective, verbose, train_verbose
        self.started = {}

    def trial_output(self, trial_id):
        return os.path.join(self.run_dir, "trials", trial_id)

    def on_trial_begin(self, trial):
        self.started[trial.trial_id] = time.time()
        super().on_trial_begin(trial)

    def run_trial(self, trial, *args, **kwargs):
        from keras_regseg.training.trainer import train

        config = trial_config(self.base_config, trial.hyperparameters.values,
                              self.trial_output(trial.trial_id))
        result = train(config, data=self.data, verbose=self.train_verbose)
        score = result.metrics.get(self.objective_name)
        if score is None:
            raise KeyError(f"train() returned no {self.objective_name!r}; it returned "
                           f"{sorted(result.metrics)}.")
        # A diverged run scores like the worst segmentation, so the oracle moves away from it.
        return {self.objective_name: float(score) if math.isfinite(score) else 0.0}

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)   # scores the trial; raises after too many failures
        finally:
            if self.verbose:
                seconds = time.time() - self.started.get(trial.trial_id, time.time())
                print(self.progress_line(trial, seconds), flush=True)

    def progress_line(self, trial, seconds):
        """``trial 2 (3 of 6): key=value, ... -> miou 0.81 (best 0.82, default 0.80); 45 s``."""
        values = ", ".join(f"{key}={format_value(value)}"
                           for key, value in trial.hyperparameters.values.items())
        number = self.oracle.start_order.index(trial.trial_id) + 1
        default = " default" if trial.trial_id == first_trial_id(self.oracle) else ""
        head = f"trial {trial.trial_id} ({number} of {self.oracle.max_trials}{default}): {values}"
        if trial.status != "COMPLETED":
            reason = (trial.message or "").strip().splitlines()[-1:] or ["unknown error"]
            return f"{head} -> failed ({reason[0]}); {seconds:.0f} s"
        scores = {t.trial_id: t.score for t in self.oracle.trials.values()
                  if t.status == "COMPLETED" and t.score is not None}
        best = max(scores.values())
        first = scores.get(first_trial_id(self.oracle))
        extra = f"best {best:.4f}" + ("" if first is None else f", default {first:.4f}")
        return f"{head} -> {self.objective_name} {trial.score:.4f} ({extra}); {seconds:.0f} s"


def tune(config, trials=DEFAULT_TRIALS, tuner="random", data=None, verbose=1, train_verbose=0):
    """Search ``config.method``'s hyperparameters; write and return the results (module docstring).

    ``trials`` counts every trial, the default configuration (trial 0) included;
    ``tuner`` is ``"random"`` or ``"bayesian"``; ``data`` (a ``TrainingData``)
    skips building the data from ``config.data``. The run folder is
    ``config.output`` (default :func:`default_tuning_output`).
    """
    check_options(trials, tuner, config.training.distribute)
    from keras_regseg.training.data_setup import build_training_data

    run_dir = config.output or default_tuning_output(config)
    data = data or build_training_data(config.data)
    hyperparameters = search_space(config, num_classes=data.num_classes)
    objective = objective_name(data)
    _check_same_search(run_dir, config, tuner, hyperparameters, objective)
    oracle = make_oracle(tuner, hyperparameters, objective, trials, config.training.seed)
    search = TrainingTuner(oracle, config, data, run_dir, objective, verbose=verbose,
                           train_verbose=train_verbose)
    if verbose:
        names = ", ".join(hp.name for hp in hyperparameters.space)
        print(f"Tuning {config.method} on {config.data.name}: {trials} trials ({tuner}; trial 0 is "
              f"the default configuration) over {names}; objective: validation {objective}; "
              f"results in {os.path.join(run_dir, 'tuning')}", flush=True)
    try:
        search.search(verbose=0)
    finally:
        # Written even when the search stops on failures, so finished trials are never lost.
        result = write_results(search, run_dir, config, tuner, objective)
    if verbose:
        print(result.table, flush=True)
    return result


def _check_same_search(run_dir, config, tuner, hyperparameters, objective):
    """Record what is searched; refuse to resume a folder that searched something else."""
    path = os.path.join(run_dir, "tuning", "search.json")
    base = config.to_dict()
    base["output"] = None   # the folder itself may be named differently on a rerun
    description = {"config": base, "tuner": tuner, "objective": objective,
                   "space": hyperparameters.get_config()}
    description = json.loads(json.dumps(description))   # tuples -> lists, as read back
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != description:
            changed = sorted(k for k in description if previous.get(k) != description[k])
            raise ValueError(f"{run_dir} holds a tuning run with another {', '.join(changed)}; "
                             "rerun the same command to resume it, or choose another --output.")
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(description, f, indent=2)
