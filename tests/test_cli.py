"""The entry points as a user calls them: train, export, evaluate; and the README example."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_regseg.cli import evaluate as evaluate_cli
from keras_regseg.cli import export as export_cli
from keras_regseg.cli import train as train_cli

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_train_export_evaluate_round_trip(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "data: {name: synthetic, size: 32, num_train: 8, num_val: 4}\n"
        "model: {name: unet, options: {filters: [4, 8], dropout: 0.0}}\n"
        "training: {iterations: 2, steps_per_epoch: 2, batch_size: 4, num_grid_images: 1}\n")
    run = tmp_path / "run"
    assert train_cli.main(["--config", str(config), "--output", str(run), "--seed", "3"]) == 0
    assert (run / "model.keras").exists()
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["config"]["training"]["seed"] == 3

    assert export_cli.main(["--model", str(run / "model.keras"), "--name", "tiny",
                            "--root", str(tmp_path / "saved")]) == 0
    assert (tmp_path / "saved" / "tiny" / "1" / "saved_model.pb").exists()

    # The SavedModel and the .keras file score the same on the validation data.
    scores = {}
    for name, model in (("keras", run / "model.keras"), ("saved", tmp_path / "saved" / "tiny" / "1")):
        out = tmp_path / f"{name}.json"
        assert evaluate_cli.main(["--model", str(model), "--config", str(config),
                                  "--json", str(out)]) == 0
        scores[name] = json.loads(out.read_text())
    assert scores["keras"]["miou"] == pytest.approx(scores["saved"]["miou"], abs=1e-6)
    assert "miou" in capsys.readouterr().out


def test_bad_flags_fail_before_training(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {batch_size: many}\n")
    assert train_cli.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "training.batch_size" in err and "expected int" in err
    assert export_cli.main(["--model", str(tmp_path / "missing.keras")]) == 2
    assert "missing.keras" in capsys.readouterr().err


def test_train_script_help_runs_as_a_program():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--method", "--config", "--data", "--epochs", "--batch-size", "--output"):
        assert flag in result.stdout


def test_a_fresh_process_loads_saved_networks_after_registering_the_package(tmp_path):
    from keras_regseg.models import UNet

    path = tmp_path / "net.keras"
    UNet(num_classes=3, filters=(4, 8), dropout=0.0).save(path)
    for load in ("keras_regseg.register_keras_objects(); m = keras.saving.load_model(%r)",
                 "m = keras_regseg.load_model(%r)"):
        code = "import keras, keras_regseg; " + load % str(path) + "; print(m.num_classes)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("3")


def test_importing_the_package_and_reading_configs_start_no_tensorflow():
    code = ("import sys, keras_regseg; from keras_regseg.training.config import TrainConfig; "
            "from keras_regseg.cli.train import build_parser; build_parser(); "
            "TrainConfig.from_dict({'method': 'trust_region'}); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_help_is_fast():
    import time

    started = time.perf_counter()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and "--method" in result.stdout
    assert elapsed < 2.0, f"--help took {elapsed:.1f} s"


def test_set_assigns_any_config_key_last_and_refuses_unknown_ones():
    from keras_regseg.cli.train import build_parser, config_from_args
    from keras_regseg.training.config import ConfigError

    args = build_parser().parse_args([
        "--config", "configs/ccnn_acdc.yaml", "--seed", "3", "--set", "ccnn.boxes=true",
        "--set", "ccnn.box_fraction=[0.7, 0.4, 0.3, 0.7]", "--set", "training.seed=5"])
    config = config_from_args(args)
    assert config.ccnn.boxes is True and config.ccnn.box_fraction == [0.7, 0.4, 0.3, 0.7]
    assert config.training.seed == 5       # --set is applied after the other flags
    for bad, message in (("ccnn.box=1", "unknown key 'ccnn.box'"),
                         ("solver.x=1", "unknown section 'solver'"),
                         ("ccnn.boxes", "expected key=value")):
        with pytest.raises(ConfigError, match=message):
            config_from_args(build_parser().parse_args(["--set", bad]))


def test_a_short_training_run_prints_no_tensorflow_log_line(tmp_path):
    import re

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "train.py", "--iterations", "2", "--steps-per-epoch",
                           "1", "--output", str(tmp_path / "run")], capture_output=True,
                          text=True, env=env, timeout=600,
                          cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert done.returncode == 0, done.stderr[-2000:]
    noise = [line for line in done.stderr.splitlines()
             if re.match(r"[IWEF]\d{4} ", line) or "absl" in line]
    assert noise == []
    verbose = subprocess.run([sys.executable, "-c", "from keras_regseg.cli.quiet import "
                              "load_tensorflow_quietly as q; q(verbose=True); import tensorflow"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert re.search(r"[IWE]\d{4} ", verbose.stderr)   # the noise this test would catch


def test_evaluate_a_folder_of_images_against_a_folder_of_masks(tmp_path, capsys):
    import keras
    from PIL import Image

    from keras_regseg.data.io import write_label_png
    from keras_regseg.evaluation.confusion import ConfusionAccumulator
    from keras_regseg.models import UNet

    keras.utils.set_random_seed(0)
    model = UNet(num_classes=3, filters=(4, 8), dropout=0.0)
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    accumulator = ConfusionAccumulator(3)
    for name in ("a", "sub/b", "sub/deep/c"):
        for folder in ("images", "masks"):
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (10, 14), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / f"{name}.png")
        mask = rng.integers(0, 3, (10, 14)).astype(np.uint8)
        mask[0] = 255                                    # void
        write_label_png(str(tmp_path / "masks" / f"{name}.png"), mask)
        from keras_regseg.export.serving_model import serving_model
        labels = serving_model(model)(image[None, ..., None].astype(np.float32) / 255)["labels"]
        accumulator.update(mask[None], labels.numpy())
    out = tmp_path / "metrics.json"
    assert evaluate_cli.main(["--model", str(tmp_path / "m.keras"), "--images",
                              str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                              "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    expected = accumulator.result()
    assert metrics["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert metrics["num_images"] == 3
    assert {"iou_per_class/class_0", "dice_per_class/class_2"} <= set(metrics)
    assert "dice_per_class/class_2" in capsys.readouterr().out
    (tmp_path / "masks" / "sub" / "b.png").unlink()
    assert evaluate_cli.main(["--model", str(tmp_path / "m.keras"), "--images",
                              str(tmp_path / "images"), "--masks", str(tmp_path / "masks")]) == 2
    assert "b.png: no mask" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "predict"])
def test_help_shows_plain_text_not_restructuredtext(command, capsys):
    module = importlib.import_module(f"keras_regseg.cli.{command}")
    with pytest.raises(SystemExit):
        module.build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "keras-regseg" in text and "``" not in text and ":func:" not in text
