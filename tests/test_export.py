"""Tests of the SavedModel export, including serving from a process without keras_regseg."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.export import export_saved_model, load_serving, pad_to_multiple
from keras_regseg.models import UNet

SERVE_IN_FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
export_dir, inputs_path, outputs_path = sys.argv[1:4]
loaded = tf.saved_model.load(export_dir)
serve = loaded.signatures["serving_default"]
inputs = np.load(inputs_path)
outputs = {}
for key in inputs.files:
    result = serve(images=tf.constant(inputs[key]))
    outputs[key + "_probabilities"] = result["probabilities"].numpy()
    outputs[key + "_labels"] = result["labels"].numpy()
np.savez(outputs_path, **outputs)
print(json.dumps({"keras_regseg_imported": "keras_regseg" in sys.modules,
                  "outputs": sorted(serve.structured_outputs)}))
"""


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    net = UNet(num_classes=3, input_channels=2, filters=(4, 8, 16), dropout=0.5)
    rng = np.random.default_rng(0)
    for w in net.non_trainable_weights:  # BN statistics away from 0/1: inference mode shows
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    return net


def _images(shape, seed):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _keras_probabilities(model, images):
    """Reference: bottom/right reflect padding to the size divisor, model, crop, softmax."""
    _, h, w, _ = images.shape
    d = model.size_divisor
    padded = np.pad(images, [(0, 0), (0, -h % d), (0, -w % d), (0, 0)], mode="reflect")
    logits = model(padded, training=False).numpy()[:, :h, :w]
    return keras.ops.softmax(logits, axis=-1).numpy()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Parent directory holding the tiny UNet exported as version 1."""
    root = str(tmp_path_factory.mktemp("export"))
    assert export_saved_model(model, root) == os.path.join(root, "1")
    return root


def test_serving_in_fresh_process_matches_keras(model, exported, tmp_path):
    path = os.path.join(exported, "1")
    inputs = {"divisible": _images((2, 16, 20, 2), 1), "odd": _images((1, 37, 45, 2), 2)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-c", SERVE_IN_FRESH_PROCESS, path, str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npz")],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"keras_regseg_imported": False, "outputs": ["labels", "probabilities"]}
    outputs = np.load(tmp_path / "outputs.npz")

    divisible = inputs["divisible"]  # no padding involved: plain softmax of the model
    expected = keras.ops.softmax(model(divisible, training=False), axis=-1).numpy()
    np.testing.assert_allclose(outputs["divisible_probabilities"], expected, atol=1e-5)

    odd = outputs["odd_probabilities"]
    assert odd.shape == (1, 37, 45, 3) and odd.dtype == np.float32
    np.testing.assert_allclose(odd, _keras_probabilities(model, inputs["odd"]), atol=1e-5)
    for key in inputs:
        probabilities, labels = outputs[key + "_probabilities"], outputs[key + "_labels"]
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, probabilities.argmax(-1))
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def pointwise():
    """A model that exports fast, for the tests about directories and versions."""
    return keras.Sequential([keras.Input((None, None, 2)), keras.layers.Conv2D(3, 1)])


def test_versions_are_numbered_and_written_atomically(pointwise, tmp_path):
    root = str(tmp_path / "export")
    assert export_saved_model(pointwise, root) == os.path.join(root, "1")
    assert export_saved_model(pointwise, root, version=7) == os.path.join(root, "7")
    assert export_saved_model(pointwise, root) == os.path.join(root, "8")
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(pointwise, root, version=7)
    with pytest.raises(ValueError, match="non-negative int"):
        export_saved_model(pointwise, root, version=-1)
    assert sorted(os.listdir(root)) == ["1", "7", "8"]  # no temporary directory left behind


def test_failed_export_leaves_nothing(pointwise, tmp_path, monkeypatch):
    def save_half_then_fail(module, export_dir, *args, **kwargs):
        open(os.path.join(export_dir, "saved_model.pb"), "wb").close()
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", save_half_then_fail)
    root = str(tmp_path / "export")
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(pointwise, root)
    assert os.listdir(root) == []


def test_load_serving_picks_latest_or_given_version(model, pointwise, exported, tmp_path):
    x = _images((1, 9, 6, 2), 3)
    unet = load_serving(exported)  # the latest (only) version
    assert unet.path == os.path.join(exported, "1")
    np.testing.assert_allclose(unet(x)["probabilities"].numpy(),
                               _keras_probabilities(model, x), atol=1e-5)
    root = str(tmp_path / "export")
    export_saved_model(pointwise, root, version=3)
    export_saved_model(pointwise, root, version=10)  # 10 > 3 as numbers, not as strings
    assert load_serving(root).path == os.path.join(root, "10")
    third = load_serving(root, version=3)
    expected = keras.ops.softmax(pointwise(x), axis=-1).numpy()
    np.testing.assert_allclose(third(x)["probabilities"].numpy(), expected, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        load_serving(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="saved_model.pb missing"):
        load_serving(root, version=5)


@pytest.mark.parametrize("shape", [(1, 5, 7, 1), (2, 8, 3, 2), (1, 9, 12, 1)])
def test_pad_to_multiple_reflects_like_numpy(shape):
    x = _images(shape, 4)
    h, w = shape[1:3]
    expected = np.pad(x, [(0, 0), (0, -h % 4), (0, -w % 4), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(pad_to_multiple(tf.constant(x), 4).numpy(), expected)


def test_pad_to_multiple_reflects_what_it_can_then_pads_zeros():
    x = _images((1, 2, 13, 1), 5)  # height 2 needs 14 rows: 1 reflected, 13 zeros; width reflects
    padded = pad_to_multiple(tf.constant(x), 16).numpy()
    assert padded.shape == (1, 16, 16, 1)
    reflected = np.pad(x, [(0, 0), (0, 1), (0, 3), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(padded[:, :3], reflected)
    assert not padded[:, 3:].any()


def test_export_rejects_unknown_channels(tmp_path):
    inputs = keras.Input((None, None, None))
    with pytest.raises(ValueError, match="known C"):
        export_saved_model(keras.Model(inputs, inputs), str(tmp_path))
