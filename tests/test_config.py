import pytest

from keras_regseg.cli.train import build_parser, config_from_args
from keras_regseg.training.config import ConfigError, TrainConfig


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_values_are_read_and_typed(tmp_path):
    path = write(tmp_path, "method: gd\ntraining:\n  batch_size: 4\noptimizer:\n  learning_rate: 1\n")
    config = TrainConfig.from_yaml(path)
    assert config.method == "gd" and config.training.batch_size == 4
    assert isinstance(config.optimizer.learning_rate, float)


@pytest.mark.parametrize("text, message", [
    ("trainig:\n  batch_size: 4\n", "unknown key 'trainig'"),
    ("training:\n  batch_sise: 4\n", "unknown key 'training.batch_sise'"),
    ("training:\n  batch_size: four\n", "training.batch_size = 'four' is a str; expected int"),
    ("training:\n  batch_size: 2.5\n", "expected int"),
    ("training:\n  deterministic: 1\n", "expected bool"),
    ("method: magic\n", "method = 'magic'; expected one of"),
    ("data:\n  name: acdc\n", "data.path is required"),
    ("data:\n  scribble_ratio: 2\n", "expected a value in [0, 1]"),
    ("- a\n- b\n", "expected a mapping"),
    ("training: [1, 2]\n", "training must be a mapping"),
])
def test_bad_config_names_file_key_and_expectation(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_yaml(path)
    assert path in str(error.value)
    assert message in str(error.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        TrainConfig.from_yaml(str(tmp_path / "nope.yaml"))


def test_command_line_overrides_yaml(tmp_path):
    path = write(tmp_path, "method: gd\ntraining:\n  batch_size: 4\n  steps_per_epoch: 10\n")
    args = build_parser().parse_args(["--config", path, "--batch-size", "2", "--epochs", "3"])
    config = config_from_args(args)
    assert config.method == "gd"                      # from the file
    assert config.training.batch_size == 2            # the flag wins
    assert config.training.iterations == 30           # epochs x steps per epoch
    assert config.epochs == 3


def test_every_shipped_config_is_valid():
    import glob
    import os

    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    paths = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert paths, "configs/ holds no YAML file"
    for path in paths:
        config = TrainConfig.from_yaml(path)
        assert config.training.iterations % config.training.steps_per_epoch == 0, path


@pytest.mark.parametrize("crop, expected", [(96, 96), ([128, 160], [128, 160])])
def test_crop_size_is_a_side_or_height_and_width(crop, expected):
    assert TrainConfig.from_dict({"data": {"crop_size": crop}}).data.crop_size == expected


@pytest.mark.parametrize("crop", [0, [128], [128, 0], [1, 2, 3], "128", 1.5])
def test_a_crop_size_that_is_not_a_size_is_refused(crop):
    with pytest.raises(ConfigError, match="data.crop_size"):
        TrainConfig.from_dict({"data": {"crop_size": crop}})
