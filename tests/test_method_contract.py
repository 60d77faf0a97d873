"""The contract every registered method passes (keras-hub's shared-test spirit).

A method added to :data:`keras_regseg.methods.registry.METHOD_MODULES` is
checked here without a line of its own: it trains to a finite loss, its
network saves and reloads in safe mode, its fit model saves, reloads and
trains on with its optimizer state, the network exports for serving, a
crashed run resumes to the uninterrupted run's weights, and it trains on two
mirrored replicas under mixed float16.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.export import export_saved_model, load_serving
from keras_regseg.methods import registry
from keras_regseg.training.config import TrainConfig
from keras_regseg.training.data_setup import build_training_data
from keras_regseg.training.optimizer import build_optimizer
from keras_regseg.training.trainer import train

METHODS = registry.names()

TINY = {
    "data": {"name": "synthetic", "size": 32, "num_train": 8, "num_val": 2},
    "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
    "training": {"iterations": 4, "steps_per_epoch": 2, "batch_size": 4, "num_grid_images": 1,
                 "validate_every": 2, "seed": 3},
    "optimizer": {"learning_rate": 0.05},
    # Solvers in the training process, stage A every epoch, a small CCNN dual problem.
    "adm": {"processes": 0},
    "trust_region": {"every": 1, "processes": 0, "overlap": False},
    "ccnn": {"downscale": 8, "max_iterations": 50},
}


def tiny_config(method, output, **training):
    values = {key: dict(value) for key, value in TINY.items()}
    values["training"].update(training)
    return TrainConfig.from_dict(dict(values, method=method, output=str(output)))


@pytest.fixture(scope="module")
def data():
    return build_training_data(TrainConfig.from_dict(TINY).data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """One uninterrupted run per method, shared by the tests below."""
    root = tmp_path_factory.mktemp("contract")
    return {method: train(tiny_config(method, root / method), data=data, verbose=0)
            for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_trains_to_a_finite_loss_and_the_network_reloads_in_safe_mode(method, runs, data):
    result = runs[method]
    with open(os.path.join(result.output, "metrics.json")) as f:
        losses = json.load(f)["history"]["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all(), losses
    reloaded = keras.saving.load_model(os.path.join(result.output, "model.keras"),
                                       safe_mode=True)
    images = data.validation.load(0)["image"][None]
    np.testing.assert_allclose(reloaded.predict(images, verbose=0),
                               result.network.predict(images, verbose=0), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_the_fit_model_reloads_and_trains_on_with_its_optimizer(method, runs, data, tmp_path):
    config = tiny_config(method, tmp_path / "run")
    network = keras.saving.load_model(os.path.join(runs[method].output, "model.keras"))
    setup = registry.prepare_method(config, network, data)
    setup.model.compile(optimizer=build_optimizer(config.optimizer, 100), jit_compile=False)
    dataset = make_training_dataset(data.train, batch_size=4, seed=0, target=setup.targets,
                                    proposals=setup.proposals)
    setup.model.fit(dataset, epochs=1, steps_per_epoch=2, callbacks=setup.callbacks, verbose=0)
    path = str(tmp_path / "fit_model.keras")
    setup.model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    saved_state = [v.numpy() for v in setup.model.optimizer.variables]
    assert int(reloaded.optimizer.iterations) == 2
    for saved, loaded in zip(saved_state, reloaded.optimizer.variables):
        np.testing.assert_array_equal(saved, loaded.numpy())
    images = data.validation.load(0)["image"][None]
    np.testing.assert_allclose(reloaded.predict(images, verbose=0),
                               setup.model.predict(images, verbose=0), atol=1e-5)
    before = [w.copy() for w in reloaded.get_weights()]
    history = reloaded.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(reloaded.optimizer.iterations) == 4
    assert max(float(np.abs(a - b).max()) for a, b in zip(before, reloaded.get_weights())) > 0


@pytest.mark.parametrize("method", METHODS)
def test_the_trained_network_exports_for_serving(method, runs, data, tmp_path):
    network = runs[method].network
    export_saved_model(network, str(tmp_path))
    images = np.stack([data.validation.load(i)["image"] for i in range(2)])
    served = load_serving(str(tmp_path))(images)
    expected = keras.ops.softmax(network(images, training=False), axis=-1).numpy()
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)


class CrashAt(keras.callbacks.Callback):
    """Fails at the start of an epoch, as a killed or crashed run stops."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"crash at epoch {epoch}")


@pytest.mark.parametrize("method", METHODS)
def test_a_crashed_run_resumes_to_the_uninterrupted_weights(method, runs, data, tmp_path):
    config = tiny_config(method, tmp_path / "run")
    with pytest.raises(RuntimeError, match="crash at epoch 1"):
        train(config, data=data, verbose=0, callbacks=[CrashAt(1)])
    assert os.path.isdir(tmp_path / "run" / "backup")
    resumed = train(config, data=data, verbose=0)
    for ours, reference in zip(resumed.network.get_weights(), runs[method].network.get_weights()):
        np.testing.assert_array_equal(ours, reference)


MIRRORED_FLOAT16 = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    values, root, methods = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    report = {}
    for method in methods:
        values["training"].update(distribute="mirrored", mixed_precision="float16")
        config = TrainConfig.from_dict(dict(values, method=method,
                                            output=os.path.join(root, method)))
        result = train(config, verbose=0)
        with open(os.path.join(result.output, "metrics.json")) as f:
            losses = json.load(f)["history"]["loss"]
        report[method] = {"losses": losses, "mean_dice": result.metrics.get("mean_dice"),
                          "finite_weights": all(np.isfinite(w).all()
                                                for w in result.network.get_weights())}
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def mirrored_float16(tmp_path_factory):
    """Every method trained on two mirrored CPU replicas under mixed float16 (one process)."""
    root = tmp_path_factory.mktemp("mirrored")
    # Logical devices must be set before TensorFlow starts: a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_FLOAT16, json.dumps(TINY), str(root), ",".join(METHODS)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", METHODS)
def test_trains_on_two_mirrored_replicas_under_mixed_float16(method, mirrored_float16):
    report = mirrored_float16[method]
    assert len(report["losses"]) == 2 and np.isfinite(report["losses"]).all(), report
    assert report["finite_weights"]
