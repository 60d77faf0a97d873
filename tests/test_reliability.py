"""Regression tests of the second reliability round (issue 19): one test per defect found.

Silent wrong results (label PNG readers, class counts), lost work (finished
runs, concurrent runs, leftovers, broken backups), memory bombs (image and
config sizes), untrusted inputs (SavedModel graphs, paths outside the data
root, the Keras version) and one-line errors from every command.
"""

import configparser
import io
import json
import os
import stat
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, PngImagePlugin

from helpers import make_voc, one_batch, random_image
from keras_regseg.cli import evaluate as evaluate_cli
from keras_regseg.cli import export as export_cli
from keras_regseg.cli import predict as predict_cli
from keras_regseg.cli import train as train_cli
from keras_regseg.constants import IGNORE_INDEX
from keras_regseg.data.io import (read_image, read_label_png, tf_decode_image,
                                  tf_decode_label_png, voc_palette)
from keras_regseg.data.voc import VOCFolder
from keras_regseg.export import export_saved_model
from keras_regseg.models import UNet
from keras_regseg.saving import check_safe_keras, load_model
from keras_regseg.training.callbacks import BrokenBackupError
from keras_regseg.training.config import ConfigError, TrainConfig
from keras_regseg.training.data_errors import DataFileError
from keras_regseg.training.run_folder import RunFolderBusyError, RunFolderLock
from keras_regseg.training.trainer import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}}


def tiny_config(tmp_path, data=None, **training):
    return TrainConfig.from_dict({
        "data": data or {"name": "synthetic", "size": 16, "num_train": 4, "num_val": 2},
        "model": TINY_MODEL,
        "training": {"iterations": 2, "steps_per_epoch": 1, "batch_size": 2,
                     "num_grid_images": 1, **training},
        "output": str(tmp_path / "run")})


def voc_data(root, **extra):
    return {"name": "voc", "path": str(root), "val_split": "train", "num_classes": 3,
            "augmentation": "none", **extra}


def scribble(size=16):
    values = np.full((size, size), 255)
    values[2, 2:12], values[9, 3:13] = 0, 1
    return values


def mask_of(values):
    """A dense mask that agrees with the scribble ``values`` (unlabeled pixels -> class 0)."""
    return np.where(values == 255, 0, values)


def error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---------------------------------------------------------------- 1, 2: label PNG readers

def save_short_palette_png(path, values, palette_size=21, pnginfo=None):
    """What ``Image.fromarray(s, "P"); im.putpalette(palette[:21])`` writes: index 255 kept."""
    image = Image.fromarray(values.astype(np.uint8), "P")
    image.putpalette(voc_palette()[:palette_size].ravel().tolist())
    image.save(path, pnginfo=pnginfo)


def test_1_unlabeled_pixels_beyond_a_short_palette_stay_unlabeled_in_training(tmp_path):
    values = scribble()
    voc = make_voc(str(tmp_path), {"a": (random_image((16, 16, 3), 0), values)})
    save_short_palette_png(voc.scribble_paths[0], values)
    assert np.array_equal(read_label_png(voc.scribble_paths[0]), values)
    expected = np.where(values == 255, IGNORE_INDEX, values)
    _, y_true = one_batch(VOCFolder(str(tmp_path), num_classes=3))
    np.testing.assert_array_equal(y_true[0, ..., 0].numpy(), expected)  # 255 was read as 0


def test_2_a_text_chunk_holding_plte_before_the_palette_does_not_fool_the_reader(tmp_path):
    values = scribble()
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "PLTE\x00\x00\x00\x03" + "x" * 40)   # PIL writes it first
    path = str(tmp_path / "s.png")
    save_short_palette_png(path, values, palette_size=256, pnginfo=info)
    data = open(path, "rb").read()
    assert data.index(b"PLTE") < data.index(b"PLTE", data.index(b"PLTE") + 1)  # two matches
    np.testing.assert_array_equal(read_label_png(path), values)
    np.testing.assert_array_equal(tf_decode_label_png(tf.constant(data), path).numpy(), values)


# ---------------------------------------------------------------- 3, 4: class and channel counts

def test_3_evaluate_refuses_a_model_with_other_classes_than_the_data(tmp_path, capsys):
    model_path = str(tmp_path / "three.keras")
    UNet(num_classes=3, filters=(4, 8), dropout=0.0).save(model_path)
    config = tmp_path / "five.yaml"
    config.write_text("data: {name: synthetic, size: 16, num_train: 2, num_val: 2, "
                      "num_classes: 5}\n")
    status = evaluate_cli.main(["--model", model_path, "--config", str(config)])
    lines = error_lines(capsys)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {model_path}: the model takes 1-channel images and "
                               "predicts 3 classes; the data has 1 channel(s) and 5 classes.")


def test_4_voc_folders_honour_num_classes_and_channels_beyond_21_classes(tmp_path):
    values = scribble()
    values[12, 2:14] = 29                                   # class 29 of 30
    make_voc(str(tmp_path / "voc"), {"a": (random_image((16, 16, 3), 0), values),
                                     "b": (random_image((16, 16, 3), 1), values)},
             masks={"a": mask_of(values), "b": mask_of(values)}, num_classes=30)
    config = tiny_config(tmp_path, voc_data(tmp_path / "voc", num_classes=30, channels=1))
    result = train(config, verbose=0)
    assert result.network.input_shape[-1] == 1 and result.network.output_shape[-1] == 30
    recorded = json.load(open(tmp_path / "run" / "metrics.json"))["config"]["data"]
    assert (recorded["num_classes"], recorded["channels"]) == (30, 1)


def test_4_a_dataset_with_fixed_classes_refuses_other_counts():
    with pytest.raises(ConfigError, match="data.num_classes = 5, but acdc data has 4"):
        TrainConfig.from_dict({"data": {"name": "acdc", "path": "x", "num_classes": 5}})


# ---------------------------------------------------------------- 5, 10: config files

def test_5_a_repeated_yaml_key_is_refused_naming_file_and_key(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("training:\n  iterations: 10\ntraining:\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: line 3: key 'training' appears twice"):
        TrainConfig.from_yaml(str(path))


def test_10_a_yaml_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        previous = chr(ord("a") + level - 1)
        lines.append(f"{chr(ord('a') + level)}: &{chr(ord('a') + level)} "
                     f"[*{previous},*{previous},*{previous},*{previous},*{previous},"
                     f"*{previous},*{previous},*{previous},*{previous}]")
    lines.append("model: {name: unet, options: {filters: *i}}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 600
    started = time.time()
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_yaml(str(path))
    assert time.time() - started < 5 and len(str(error.value)) < 300
    assert "bomb.yaml: expands to more than" in str(error.value)


def test_10_model_options_are_bounded_and_echoed_short(tmp_path):
    options = {"filters": list(range(5000))}
    with pytest.raises(ConfigError, match="model.options holds more than 1000 values") as error:
        TrainConfig.from_dict({"model": {"name": "unet", "options": options}})
    assert len(str(error.value)) < 300
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"method": "x" * 100_000})
    assert len(str(error.value)) < 400


def test_10_an_oversized_config_file_is_not_read(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="huge.yaml: config file of 2097155 bytes"):
        TrainConfig.from_yaml(str(path))


# ---------------------------------------------------------------- 6, 7, 11: the run folder

def test_6_rerunning_a_finished_run_leaves_it_alone_unless_overwrite(tmp_path, capsys):
    config = tiny_config(tmp_path)
    first = train(config, verbose=0)
    run = tmp_path / "run"
    before = {name: (run / name).read_bytes()
              for name in ("metrics.json", "model.keras", "checkpoints/last.keras")}
    again = train(config, verbose=1)
    assert "holds a finished run" in capsys.readouterr().out
    assert {name: (run / name).read_bytes() for name in before} == before
    assert again.metrics == first.metrics
    assert train_cli.main(["--config", str(write_config(tmp_path, config))]) == 0
    assert {name: (run / name).read_bytes() for name in before} == before
    train(config.override(**{"training.seed": 1}), verbose=0, overwrite=True)
    assert (run / "model.keras").read_bytes() != before["model.keras"]


def write_config(tmp_path, config):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def test_7_a_second_run_on_the_same_folder_is_refused_naming_the_holder(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from keras_regseg.training.run_folder import "
         f"RunFolderLock\nwith RunFolderLock({str(folder)!r}):\n print('locked', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusyError, match=f"another run \\(PID {holder.pid}\\)"):
            train(tiny_config(tmp_path), verbose=0)
        status = train_cli.main(["--config", str(write_config(tmp_path, tiny_config(tmp_path)))])
        lines = error_lines(capsys)
        assert status == 2 and len(lines) == 1 and f"PID {holder.pid}" in lines[0]
        assert not (folder / "metrics.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with RunFolderLock(str(folder)):   # a killed holder's lock goes with it
        pass


def test_11_temporaries_of_killed_writes_are_removed_when_a_run_starts(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    leftovers = [run / ".tmp-x1.keras", run / "checkpoints" / ".tmp-x2.keras"]
    for path in leftovers:
        path.write_bytes(b"0" * 1000)
    train(tiny_config(tmp_path), verbose=0)
    assert not any(path.exists() for path in leftovers)
    assert (run / "checkpoints" / "last.keras").exists()


def test_11_a_backup_naming_a_missing_file_says_what_to_delete(tmp_path):
    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "state.json").write_text(json.dumps(
        {"epoch": 1, "weights": "epoch-0001.weights.h5", "seeds": "epoch-0001.seeds.npz"}))
    with pytest.raises(BrokenBackupError, match=r"names epoch-0001.weights.h5, which is missing"
                                                r".*Delete the folder .*backup"):
        train(tiny_config(tmp_path), verbose=0)


# ---------------------------------------------------------------- 8, 9: image files

def png_header_only(width, height):
    """A PNG whose header declares ``width x height`` greyscale pixels (a few bytes of data)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def test_8_an_image_declaring_too_many_pixels_is_refused_from_its_header(tmp_path):
    values = scribble()
    make_voc(str(tmp_path / "voc"), {"a": (random_image((16, 16, 3), 0), values)})
    bomb = png_header_only(16000, 16000)
    assert len(bomb) < 200
    (tmp_path / "voc" / "JPEGImages" / "a.png").write_bytes(bomb)
    with pytest.raises(ValueError, match="a.png: 16000x16000 pixels .* more than the limit"):
        VOCFolder(str(tmp_path / "voc"), num_classes=3)           # training and evaluation
    with pytest.raises(ValueError, match="a.png: 16000x16000 pixels"):
        read_image(str(tmp_path / "voc" / "JPEGImages" / "a.png"))
    with pytest.raises(tf.errors.InvalidArgumentError, match='a.png"?: 16000x16000 pixels'):
        tf_decode_image(tf.constant(bomb), 3, "a.png")            # in the graph, before decoding
    with pytest.raises(tf.errors.InvalidArgumentError, match='l.png"?: 16000x16000 pixels'):
        tf_decode_label_png(tf.constant(png_header_only(16000, 16000)), "l.png")
    config = tiny_config(tmp_path, voc_data(tmp_path / "voc", max_pixels=10 ** 9))
    assert config.data.max_pixels == 10 ** 9                     # configurable


def test_8_predict_skips_an_oversized_image_and_writes_the_others(tmp_path, capsys):
    model_path = str(tmp_path / "net.keras")
    UNet(num_classes=3, filters=(4, 8), dropout=0.0).save(model_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(random_image((64, 64), 0)).save(inputs / "big.jpg")
    Image.fromarray(random_image((16, 16), 1)).save(inputs / "small.png")
    status = predict_cli.main(["--model", model_path, "--input", str(inputs), "--output",
                               str(tmp_path / "out"), "--quiet", "--max-pixels", "1000"])
    assert status == 1
    assert "big.jpg: 64x64 pixels (4096) is more than the limit of 1000" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out" / "labels") == ["small.png"]


def corrupt_jpeg(seed):
    """A JPEG whose header is whole and whose compressed data is garbage."""
    buffer = io.BytesIO()
    Image.fromarray(random_image((16, 16, 3), seed)).save(buffer, "JPEG")
    data = buffer.getvalue()
    start = data.index(b"\xff\xda") + 20
    return data[:start] + b"\xff\x48" * 8 + data[start + 16:]   # an invalid marker mid-scan


def test_9_a_corrupt_image_after_the_first_stops_training_naming_the_file(tmp_path):
    root = tmp_path / "voc"
    make_voc(str(root), {name: (random_image((16, 16, 3), i), scribble())
                         for i, name in enumerate(("a", "b", "c"))},
             masks={name: mask_of(scribble()) for name in ("a", "b", "c")})
    for name in ("a", "b", "c"):   # JPEG files, one of them corrupt past its header
        os.remove(root / "JPEGImages" / f"{name}.png")
        Image.fromarray(random_image((16, 16, 3), 5)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "JPEGImages" / "c.jpg").write_bytes(corrupt_jpeg(3))
    with pytest.raises(DataFileError, match=r"c.jpg: cannot decode \(.*Uncompress failed"):
        train(tiny_config(tmp_path, voc_data(root), iterations=4, steps_per_epoch=2), verbose=0)


# ---------------------------------------------------------------- 12-14: untrusted inputs

class Snooping(tf.Module):
    """A 'segmentation model' that reads a file and writes another when called."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32,
                                                name="images")])
    def serve(self, images):
        stolen = tf.io.read_file("/etc/hostname")
        tf.io.write_file(self.target, stolen)
        probabilities = tf.concat([images, 1.0 - images], axis=-1)
        return {"probabilities": probabilities,
                "labels": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}


def test_12_a_savedmodel_reading_and_writing_files_is_refused_unless_unsafe(tmp_path, capsys):
    target = str(tmp_path / "written.txt")
    module = Snooping(target)
    folder = str(tmp_path / "snoop" / "1")
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    Image.fromarray(random_image((8, 8), 0)).save(tmp_path / "x.png")
    args = ["--model", folder, "--input", str(tmp_path / "x.png"), "--output",
            str(tmp_path / "out"), "--quiet"]
    assert predict_cli.main(args) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "holds the op 'ReadFile'" in lines[0] or "'WriteFile'" in lines[0]
    assert not os.path.exists(target)
    assert predict_cli.main(args + ["--unsafe"]) == 0     # opting in runs it
    assert os.path.exists(target)


def test_12_the_library_s_own_exports_pass_the_gate(tmp_path):
    for network in (UNet(num_classes=3, filters=(4, 8), dropout=0.0),):
        folder = export_saved_model(network, str(tmp_path / "ok"))
        from keras_regseg.export.graph_check import check_saved_model

        check_saved_model(folder)   # raises when an op of our own export is missing


def test_13_a_split_file_outside_the_data_root_is_refused_without_echoing_it(tmp_path):
    make_voc(str(tmp_path / "voc"), {"a": (random_image((16, 16, 3), 0), scribble())})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("secret-word rest\n")
    with pytest.raises(ValueError, match="leads out of the data folder") as error:
        VOCFolder(str(tmp_path / "voc"), split="../../../outside/x", num_classes=3)
    assert "secret-word" not in str(error.value)
    absolute = VOCFolder(str(tmp_path / "voc"), split_file=str(tmp_path / "voc" /
                         "ImageSets/Segmentation/train.txt"), num_classes=3)
    assert absolute.ids() == ["a"]                          # explicit absolute paths stay


def test_14_keras_versions_without_safe_h5_loading_are_refused(tmp_path, monkeypatch):
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    requirements = parser["options"]["install_requires"]
    assert "keras>=3.11.3" in requirements.replace(" ", "")
    with pytest.raises(RuntimeError, match="Keras 3.11.2 is installed"):
        check_safe_keras("3.11.2")
    check_safe_keras("3.11.3")
    path = str(tmp_path / "net.keras")
    UNet(num_classes=2, filters=(4, 8), dropout=0.0).save(path)
    monkeypatch.setattr(keras, "__version__", "3.10.0")
    with pytest.raises(RuntimeError, match="Keras 3.10.0"):
        load_model(path)


# ---------------------------------------------------------------- 15: one-line errors

def one_error_line(capsys, status):
    lines = error_lines(capsys)
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_15_configs_and_split_lists_that_are_not_utf8_are_named(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("# café\ntraining: {iterations: 2}\n".encode("latin-1"))
    line = one_error_line(capsys, train_cli.main(["--config", str(config)]))
    assert "latin1.yaml: config file is not UTF-8 text" in line
    make_voc(str(tmp_path / "voc"), {"a": (random_image((16, 16, 3), 0), scribble())})
    split = tmp_path / "voc" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_bytes("a\nb\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="train.txt: split file is not UTF-8 text"):
        VOCFolder(str(tmp_path / "voc"), num_classes=3)


def test_15_a_byte_order_mark_is_accepted(tmp_path):
    config = tmp_path / "bom.yaml"
    config.write_bytes(b"\xef\xbb\xbftraining: {iterations: 7, steps_per_epoch: 7}\n")
    assert TrainConfig.from_yaml(str(config)).training.iterations == 7
    make_voc(str(tmp_path / "voc"), {"a": (random_image((16, 16, 3), 0), scribble())})
    split = tmp_path / "voc" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_bytes(b"\xef\xbb\xbfa\n")
    assert VOCFolder(str(tmp_path / "voc"), num_classes=3).ids() == ["a"]


def test_15_a_config_that_is_a_folder_is_one_line(tmp_path, capsys):
    line = one_error_line(capsys, train_cli.main(["--config", str(tmp_path)]))
    assert f"{tmp_path}: is a folder; expected a config file" in line


@pytest.mark.parametrize("key, value", [("learning_rate", ".nan"), ("learning_rate", ".inf"),
                                        ("momentum", ".nan"), ("momentum", "1.5")])
def test_15_non_finite_or_out_of_range_optimizer_values_are_refused_by_validation(
        tmp_path, capsys, key, value):
    config = tmp_path / "bad.yaml"
    config.write_text(f"optimizer: {{{key}: {value}}}\n")
    line = one_error_line(capsys, train_cli.main(["--config", str(config)]))
    assert f"bad.yaml: optimizer.{key} = " in line


def test_15_a_foreign_savedmodel_is_one_line(tmp_path, capsys):
    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0}

    module = Foreign()
    folder = str(tmp_path / "foreign")
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    Image.fromarray(random_image((8, 8), 0)).save(tmp_path / "x.png")
    line = one_error_line(capsys, predict_cli.main(
        ["--model", folder, "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "o")]))
    assert "expected images -> probabilities" in line


def test_15_a_channel_mismatch_is_one_line_naming_both(tmp_path, capsys):
    model_path = str(tmp_path / "rgb.keras")
    UNet(num_classes=4, input_channels=3, filters=(4, 8), dropout=0.0).save(model_path)
    config = tmp_path / "grey.yaml"
    config.write_text("data: {name: synthetic, size: 16, num_train: 2, num_val: 2}\n")
    line = one_error_line(capsys, evaluate_cli.main(["--model", model_path,
                                                     "--config", str(config)]))
    assert "takes 3-channel images" in line and "the data has 1 channel(s)" in line
    assert len(line) < 400


def test_15_export_of_a_missing_or_broken_model_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    line = one_error_line(capsys, export_cli.main(["--model", str(broken), "--root",
                                                   str(tmp_path / "exports")]))
    assert "broken.keras: cannot load the model" in line


def test_15_verbose_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError):
        train_cli.main(["--config", str(tmp_path), "--verbose"])


# ---------------------------------------------------------------- 16: file modes

def test_16_run_files_and_exports_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        result = train(tiny_config(tmp_path), verbose=0)
        folder = export_saved_model(result.network, str(tmp_path / "exports"))
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    for path in (run / "model.keras", run / "metrics.json", run / "checkpoints" / "last.keras"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(folder, "saved_model.pb")).st_mode) == 0o644
