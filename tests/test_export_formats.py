"""Every export format runs in its own runtime and agrees with the Keras network."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_regseg.cli import export as export_cli
from keras_regseg.export import export_file, export_saved_model, run_litert, run_onnx
from keras_regseg.methods.ccnn_model import CCNNModel
from keras_regseg.models import UNet

# 37 x 45: neither side is a multiple of the UNet's stride (16), so padding and cropping matter.
IMAGES = np.random.default_rng(0).random((2, 37, 45, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def network():
    keras.utils.set_random_seed(0)
    model = UNet(num_classes=4, input_channels=1, filters=(4, 8, 8, 8, 8), dropout=0.0)
    return model


def keras_probabilities(network):
    """The library's own prediction path (padding to the stride, then the crop)."""
    from keras_regseg.export.serving_model import serving_model

    return serving_model(network)(IMAGES)["probabilities"].numpy()


def check_outputs(outputs, expected):
    assert outputs["probabilities"].shape == expected.shape
    assert np.abs(outputs["probabilities"] - expected).max() <= 1e-4
    np.testing.assert_array_equal(outputs["labels"], expected.argmax(-1))
    assert outputs["labels"].dtype == np.int32


def test_saved_model_runs_in_a_fresh_process_without_keras_regseg(network, tmp_path):
    path = export_saved_model(network, str(tmp_path / "unet"))
    np.save(tmp_path / "images.npy", IMAGES)
    script = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        serve = tf.saved_model.load({path!r}).signatures["serving_default"]
        out = serve(images=tf.constant(np.load({str(tmp_path / "images.npy")!r})))
        np.save({str(tmp_path / "probabilities.npy")!r}, out["probabilities"].numpy())
        np.save({str(tmp_path / "labels.npy")!r}, out["labels"].numpy())
        print(json.dumps(sorted(__import__("sys").modules.keys() & {{"keras_regseg"}})))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        assert b"_XlaMustCompile" not in f.read()   # TF Serving on CPU refuses XLA clusters
    check_outputs({"probabilities": np.load(tmp_path / "probabilities.npy"),
                   "labels": np.load(tmp_path / "labels.npy")}, keras_probabilities(network))


@pytest.mark.parametrize("export_format, run", [("onnx", run_onnx), ("litert", run_litert)])
def test_portable_formats_match_the_keras_network(network, tmp_path, export_format, run):
    path = export_file(network, str(tmp_path / f"model.{export_format}"), export_format)
    check_outputs(run(path, IMAGES), keras_probabilities(network))
    other_size = IMAGES[:1, :20, :33]   # the same file takes another size
    assert run(path, other_size)["labels"].shape == (1, 20, 33)


def test_a_methods_saved_model_exports_its_network(network, tmp_path):
    wrapper = CCNNModel(network, downscale=2)
    wrapper(IMAGES[:1, :32, :32])
    saved = str(tmp_path / "ccnn.keras")
    wrapper.save(saved)
    root = str(tmp_path / "saved_models")
    assert export_cli.main(["--model", saved, "--name", "ccnn", "--root", root,
                            "--format", "onnx"]) == 0
    assert export_cli.main(["--model", saved, "--name", "ccnn", "--root", root]) == 0
    check_outputs(run_onnx(os.path.join(root, "ccnn", "1", "model.onnx"), IMAGES),
                  keras_probabilities(network))
    assert sorted(os.listdir(os.path.join(root, "ccnn"))) == ["1", "2"]
    assert os.path.exists(os.path.join(root, "ccnn", "2", "saved_model.pb"))
