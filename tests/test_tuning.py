"""Hyperparameter search: the space per method, the oracles, a tiny real tuning run, the CLI."""

import doctest
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from keras_regseg.cli import train as train_cli
from keras_regseg.losses.robust_ce import default_epsilon, max_epsilon
from keras_regseg.training import search_space as search_space_module
from keras_regseg.training import tuning, tuning_report
from keras_regseg.training.config import TrainConfig
from keras_regseg.training.data_setup import build_training_data
from keras_regseg.training.search_space import search_space
from keras_regseg.training.tuning import TrainingTuner, make_oracle, tune

TINY = {
    "method": "gd",
    "data": {"name": "synthetic", "size": 32, "num_train": 8, "num_val": 2},
    "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
    "training": {"iterations": 2, "steps_per_epoch": 2, "batch_size": 4, "num_grid_images": 1},
}


def tiny_config(tmp_path, **overrides):
    return TrainConfig.from_dict({**TINY, "output": str(tmp_path / "tune"), **overrides})


@pytest.fixture(scope="module")
def tiny_data():
    return build_training_data(TrainConfig.from_dict(TINY).data)


# --- search space ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, keys", [
    ("pce", []),
    ("full", []),
    ("gd", ["gd.weight"]),
    ("adm", ["adm.gamma", "adm.potts_weight"]),
    ("trust_region", ["trust_region.lambda_weight", "trust_region.epsilon"]),
    ("ccnn", ["ccnn.foreground_lower", "ccnn.background_lower", "ccnn.background_upper"]),
])
def test_each_method_searches_the_learning_rate_and_its_own_weights(method, keys):
    config = TrainConfig.from_dict({"method": method})
    space = search_space(config)
    assert [hp.name for hp in space.space] == ["optimizer.learning_rate", *keys]
    lr = space.space[0]
    assert (lr.sampling, lr.min_value, lr.max_value) == ("log", pytest.approx(0.001),
                                                         pytest.approx(0.1))
    for hp in space.space:
        # The base configuration is a point of the space: trial 0 runs it as it is.
        assert hp.min_value <= hp.default <= hp.max_value, hp
        assert hp.min_value < hp.max_value, hp
        section, name = hp.name.split(".")
        value = getattr(getattr(config, section), name)
        if value is not None:
            assert hp.default == pytest.approx(value), hp


def test_ranges_follow_the_base_configuration():
    config = TrainConfig.from_dict({"method": "adm", "optimizer": {"learning_rate": 0.002},
                                    "adm": {"gamma": 3.0}})
    space = {hp.name: hp for hp in search_space(config).space}
    lr = space["optimizer.learning_rate"]
    assert (lr.min_value, lr.max_value) == (pytest.approx(2e-4), pytest.approx(0.02))
    assert space["adm.gamma"].default == 3.0 and space["adm.gamma"].max_value == pytest.approx(30.0)
    # gd.weight null: the search is around the regularizer's own default weight.
    grid = {hp.name: hp for hp in search_space(TrainConfig.from_dict({"method": "gd"})).space}
    assert grid["gd.weight"].default == 1.0
    dense = TrainConfig.from_dict({"method": "gd", "gd": {"regularizer": "dense"}})
    from keras_regseg.methods.gd import regularizer_loss
    # dense: around the weight the loss uses at the config's image size (its default follows
    # the kernel's size in pixels).
    side = dense.data.size
    assert search_space(dense).values["gd.weight"] == pytest.approx(
        regularizer_loss(dense.gd).weight_for(side, side))


def test_trust_region_epsilon_range_depends_on_the_classes_and_stays_below_its_maximum():
    config = TrainConfig.from_dict({"method": "trust_region"})
    for classes in (2, 4, 21):
        space = {hp.name: hp for hp in search_space(config, classes).space}
        epsilon = space["trust_region.epsilon"]
        assert epsilon.default == pytest.approx(default_epsilon(classes))
        assert epsilon.max_value < max_epsilon(classes) and epsilon.sampling == "linear"


def test_ccnn_bounds_never_cross():
    config = TrainConfig.from_dict({"method": "ccnn", "ccnn": {"background_lower": 0.4,
                                                               "background_upper": 0.6}})
    space = {hp.name: hp for hp in search_space(config).space}
    assert space["ccnn.background_lower"].max_value <= space["ccnn.background_upper"].min_value
    assert space["ccnn.foreground_lower"].max_value <= 0.5


def test_a_zero_weight_cannot_be_searched_on_a_log_scale():
    with pytest.raises(ValueError, match=r"adm.gamma = 0.0 on a log scale"):
        search_space(TrainConfig.from_dict({"method": "adm", "adm": {"gamma": 0.0}}))


# --- options -------------------------------------------------------------------------------


def test_bad_options_give_clear_errors(tmp_path, capsys):
    config = tiny_config(tmp_path)
    with pytest.raises(ValueError, match="trials = 0; expected a positive number"):
        tune(config, trials=0)
    with pytest.raises(ValueError, match="tuner = 'grid'; expected one of random, bayesian"):
        tune(config, trials=2, tuner="grid")
    with pytest.raises(ValueError, match="'multiworker' is not supported"):
        tune(config.override(**{"training.distribute": "multiworker"}), trials=2)
    assert not os.path.exists(config.output)             # nothing was started
    assert train_cli.main(["--tune", "--trials", "0"]) == 2
    assert "trials = 0" in capsys.readouterr().err
    assert train_cli.main(["--trials", "3"]) == 2
    assert "--trials and --tuner need --tune" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(["--tune", "--tuner", "grid"])
    assert "invalid choice: 'grid'" in capsys.readouterr().err


# --- oracles (no training) -----------------------------------------------------------------


class QuadraticTuner(TrainingTuner):
    """Scores a trial without training: best at learning rate 0.03, gd.weight 0.2."""

    def run_trial(self, trial, *args, **kwargs):
        import math

        values = trial.hyperparameters.values
        distance = (math.log10(values["optimizer.learning_rate"] / 0.03) ** 2
                    + math.log10(values["gd.weight"] / 0.2) ** 2)
        return {self.objective_name: 1.0 / (1.0 + distance)}


@pytest.mark.parametrize("kind", ["random", "bayesian"])
def test_oracles_start_from_the_default_and_stay_in_the_space(tmp_path, kind):
    config = tiny_config(tmp_path)
    space = search_space(config)
    oracle = make_oracle(kind, space, "miou", trials=7, seed=0)
    tuner = QuadraticTuner(oracle, config, None, str(tmp_path / "tune"), "miou", verbose=0)
    tuner.search(verbose=0)
    rows = tuning_report.collect_rows(tuner)
    # The same seed (training.seed, 0 here) proposes the same values.
    again = QuadraticTuner(make_oracle(kind, search_space(config), "miou", trials=7, seed=0),
                           config, None, str(tmp_path / "again"), "miou", verbose=0)
    again.search(verbose=0)
    assert [r["values"] for r in tuning_report.collect_rows(again)] == [r["values"] for r in rows]
    assert len(rows) == 7 and all(r["status"] == "COMPLETED" for r in rows)
    first = next(r for r in rows if r["default"])
    assert first["trial"] == "0" and first["values"] == space.values
    for row in rows:
        for hp in space.space:
            assert hp.min_value <= row["values"][hp.name] <= hp.max_value
    assert len({json.dumps(r["values"], sort_keys=True) for r in rows}) == 7
    assert rows[0]["objective"] == max(r["objective"] for r in rows)   # best first


# --- a real tuning run -----------------------------------------------------------------------


def test_a_tiny_tuning_run_writes_the_table_json_and_a_loadable_best_config(tmp_path, tiny_data,
                                                                            capsys):
    config = tiny_config(tmp_path)
    folder = os.path.join(config.output, "tuning")
    first = tune(config, trials=1, data=tiny_data)          # the default configuration only
    assert "trial 0 (1 of 1 default)" in capsys.readouterr().out   # the progress line
    stamp = os.path.getmtime(os.path.join(first.rows[0]["output"], "metrics.json"))
    # Rerunning with more trials resumes: the finished trial is kept, one more runs.
    result = tune(config, trials=2, data=tiny_data)
    out = capsys.readouterr().out
    assert "trial 1 (2 of 2)" in out and "trial 0 (" not in out
    assert os.path.getmtime(os.path.join(first.rows[0]["output"], "metrics.json")) == stamp

    table = open(os.path.join(folder, "results.md"), encoding="utf-8").read()
    assert "| rank | trial | optimizer.learning_rate | gd.weight | miou |" in table
    assert table.count("| default |") == 1 and result.table in table
    saved = json.load(open(os.path.join(folder, "results.json"), encoding="utf-8"))
    assert saved["objective"] == "miou" and saved["direction"] == "max"
    trials = saved["trials"]
    assert [t["trial"] for t in trials] == [r["trial"] for r in result.rows]
    assert sorted(t["trial"] for t in trials) == ["0", "1"]
    scores = [t["objective"] for t in trials]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    for trial in trials:
        # Each trial is an ordinary run in its own folder; the objective is its final score.
        assert trial["output"] == os.path.join(config.output, "trials", trial["trial"])
        final = json.load(open(os.path.join(trial["output"], "metrics.json")))["final"]
        assert final["miou"] == pytest.approx(trial["objective"])
    default = next(t for t in trials if t["default"])
    assert default["trial"] == "0"
    assert default["values"] == {"optimizer.learning_rate": 0.01, "gd.weight": 1.0}
    assert trials[1]["values"] != trials[0]["values"]

    best = TrainConfig.from_yaml(os.path.join(folder, "best_config.yaml"))
    tried = [t["values"] for t in trials]
    assert {"optimizer.learning_rate": best.optimizer.learning_rate,
            "gd.weight": best.gd.weight} in tried
    assert best.output is None and best.method == "gd"
    assert best.training.iterations == config.training.iterations
    assert best == result.best_config
    # A folder that searched something else is refused.
    with pytest.raises(ValueError, match="holds a tuning run with another config"):
        tune(config.override(**{"training.batch_size": 2}), trials=3, data=tiny_data)


def test_docstring_examples():
    from keras_regseg.training import tuning_options

    for module in (tuning_options, tuning_report, search_space_module):
        result = doctest.testmod(module)
        assert result.attempted >= 2 and result.failed == 0


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.tuning import tune

    values = json.loads({values!r})
    result = tune(TrainConfig.from_dict(values), trials=2, verbose=0)
    print(json.dumps({{"rows": result.rows,
                       "replicas": tf.distribute.MirroredStrategy().num_replicas_in_sync}}))
""")


def test_tuning_under_a_mirrored_strategy_and_mixed_precision(tmp_path):
    # Logical devices must be set before TensorFlow starts: run in a fresh process.
    values = {**TINY, "output": str(tmp_path / "tune"),
              "training": {**TINY["training"], "distribute": "mirrored",
                           "mixed_precision": "float16"}}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT.format(values=json.dumps(values))],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    rows = report["rows"]
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    for row in rows:
        saved = yaml.safe_load(open(os.path.join(row["output"], "config.yaml")))
        assert saved["training"]["distribute"] == "mirrored"
        assert saved["training"]["mixed_precision"] == "float16"
