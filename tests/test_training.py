"""End-to-end training runs on tiny synthetic data: outputs, resume, two phases."""

import json
import os

import keras
import numpy as np
import pytest

from keras_regseg.training.config import TrainConfig
from keras_regseg.training.data_setup import build_training_data
from keras_regseg.training.trainer import train

TINY = {
    "data": {"name": "synthetic", "size": 32, "num_train": 16, "num_val": 4},
    "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
    "training": {"iterations": 4, "steps_per_epoch": 2, "batch_size": 4, "num_grid_images": 2},
}


def tiny_config(tmp_path, **sections):
    values = {k: dict(v) for k, v in TINY.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            values.setdefault(key, {}).update(value)
        else:
            values[key] = value
    values["output"] = str(tmp_path / "run")
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def tiny_data():
    return build_training_data(TrainConfig.from_dict(TINY).data)


def read_metrics(output):
    with open(os.path.join(output, "metrics.json")) as f:
        return json.load(f)


def test_a_run_writes_its_folder(tmp_path, tiny_data):
    result = train(tiny_config(tmp_path), data=tiny_data, verbose=0)
    for name in ("model.keras", "checkpoints/last.keras", "metrics.json", "config.yaml",
                 "training_curves.png", "validation_grid.png", "logs"):
        assert os.path.exists(os.path.join(result.output, name)), name
    metrics = read_metrics(result.output)
    assert metrics["history"]["epoch"] == [1, 2]
    assert len(metrics["history"]["loss"]) == 2 and np.isfinite(metrics["history"]["loss"]).all()
    assert 0.0 <= metrics["final"]["miou"] <= 1.0
    assert metrics["config"]["training"]["iterations"] == 4
    # The learning rate follows the poly schedule down to zero at the last iteration.
    rates = metrics["history"]["learning_rate"]
    assert rates[0] > rates[1] >= 0.0
    # The saved network reloads in safe mode and predicts like the trained one.
    reloaded = keras.saving.load_model(os.path.join(result.output, "model.keras"), safe_mode=True)
    image = tiny_data.validation.load(0)["image"][None]
    np.testing.assert_allclose(reloaded.predict(image, verbose=0),
                               result.network.predict(image, verbose=0), atol=1e-5)


def test_the_keras_metrics_log_training_and_validation_scores(tmp_path, tiny_data):
    config = tiny_config(tmp_path, training={"validate_every": 1})
    result = train(config, data=tiny_data, verbose=0)
    metrics = read_metrics(result.output)
    history, final = metrics["history"], metrics["final"]
    # Compiled into fit: the fit to the seeds of the training batches.
    for name in ("miou", "dice", "pixel_accuracy"):
        assert len(history[name]) == 2 and all(0.0 <= v <= 1.0 for v in history[name]), name
    # Per epoch on the dense validation labels, by the same metric classes: after the
    # last epoch it is the final evaluation's number (the same network).
    assert history["val_miou"][-1] == pytest.approx(final["miou"], abs=1e-6)
    assert history["val_pixel_accuracy"][-1] == pytest.approx(final["pixel_accuracy"], abs=1e-6)
    assert 0.0 < history["val_dice"][-1] <= 1.0


class Crash(keras.callbacks.Callback):
    """Stops the process-like run at the start of a given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_rerunning_an_interrupted_run_resumes_it(tmp_path, tiny_data):
    config = tiny_config(tmp_path, training={"iterations": 6, "steps_per_epoch": 2})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, data=tiny_data, verbose=0, callbacks=[Crash(epoch=2)])
    assert read_metrics(config.output)["history"]["epoch"] == [1, 2]
    assert not os.path.exists(os.path.join(config.output, "model.keras"))

    epochs_run, steps_at_end = [], []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

        def on_train_end(self, logs=None):
            steps_at_end.append(int(self.model.optimizer.iterations))

    train(config, data=tiny_data, verbose=0, callbacks=[Count()])
    assert epochs_run == [2]                     # only the missing epoch ran
    history = read_metrics(config.output)["history"]
    assert history["epoch"] == [1, 2, 3]
    assert steps_at_end == [6]                   # the step counter was restored too


def test_two_phase_training_pretrains_with_pce(tmp_path, tiny_data):
    config = tiny_config(tmp_path, method="full", training={"pretrain_iterations": 2})
    # pretraining applies to regularized methods only; "full" trains directly.
    train(config, data=tiny_data, verbose=0)
    assert not os.path.exists(os.path.join(config.output, "pretrain"))


def test_init_from_starts_from_saved_weights(tmp_path, tiny_data):
    first = train(tiny_config(tmp_path / "a"), data=tiny_data, verbose=0)
    config = tiny_config(tmp_path / "b", training={
        "init_from": os.path.join(first.output, "model.keras"), "iterations": 2,
        "steps_per_epoch": 2})
    config = config.override(**{"optimizer.learning_rate": 1e-12})  # practically frozen
    second = train(config, data=tiny_data, verbose=0)
    # Trainable weights start from the saved ones (batch-norm statistics still move).
    for started, saved in zip(second.network.trainable_weights, first.network.trainable_weights):
        np.testing.assert_allclose(started.numpy(), saved.numpy(), atol=1e-6)


def test_iterations_must_split_into_epochs(tmp_path, tiny_data):
    config = tiny_config(tmp_path, training={"iterations": 5, "steps_per_epoch": 2})
    with pytest.raises(ValueError, match="not a multiple of training.steps_per_epoch"):
        train(config, data=tiny_data, verbose=0)


def test_ccnn_trains_from_tags_and_saves_the_plain_network(tmp_path, tiny_data):
    config = tiny_config(tmp_path, method="ccnn", ccnn={"size_bits": True, "downscale": 4,
                                                       "background_lower": 0.5,
                                                       "background_upper": 0.95})
    result = train(config, data=tiny_data, verbose=0)
    history = read_metrics(result.output)["history"]
    assert np.isfinite(history["ccnn_violation"]).all()
    assert np.isfinite(history["loss"]).all()
    saved = keras.saving.load_model(os.path.join(result.output, "model.keras"))
    assert saved.name == result.network.name        # the network, not the CCNN wrapper


def test_final_metrics_include_the_potts_energy_of_predictions(tmp_path, tiny_data):
    from keras_regseg.losses import potts_energy_np
    from keras_regseg.training.evaluation import mean_potts_energy

    source = tiny_data.validation
    # A "network" that returns the ground truth: the energy is that of the true masks.
    def oracle(images):
        index = {source.load(i)["image"].tobytes(): i for i in range(len(source))}
        return np.stack([np.eye(source.num_classes)[source.load(index[im.tobytes()])["dense_label"]]
                         for im in images])
    expected = np.mean([potts_energy_np(s["dense_label"], s["image"]) / s["dense_label"].size
                        for s in (source.load(i) for i in range(len(source)))])
    assert mean_potts_energy(oracle, source) == pytest.approx(expected)
    assert mean_potts_energy(oracle, source, batch_size=1) == pytest.approx(expected)
    # A constant labeling has no boundary: zero energy.
    constant = lambda images: np.ones(images.shape[:3] + (source.num_classes,)) * np.eye(source.num_classes)[0]
    assert mean_potts_energy(constant, source) == 0.0


@pytest.mark.parametrize("regularizer", ["grid", "dense"])
def test_gd_pretrains_with_pce_then_adds_the_crf(tmp_path, tiny_data, regularizer):
    from keras_regseg.methods.registry import prepare_method

    config = tiny_config(tmp_path, method="gd", gd={"regularizer": regularizer},
                         training={"pretrain_iterations": 2})
    result = train(config, data=tiny_data, verbose=0)
    assert os.path.exists(os.path.join(result.output, "pretrain", "model.keras"))
    assert read_metrics(os.path.join(result.output, "pretrain"))["config"]["method"] == "pce"
    assert np.isfinite(read_metrics(result.output)["history"]["loss"]).all()
    assert "potts_energy" in read_metrics(result.output)["final"]
    # The GD loss is pCE plus a positive regularizer on a non-constant prediction.
    setup = prepare_method(config, result.network)
    images, y_true = next(iter(__import__("keras_regseg").data.make_training_dataset(
        tiny_data.train, batch_size=4, seed=0, target=setup.targets)))
    assert sorted(y_true) == ["image", "seeds"]
    logits = result.network(images) * 0 + np.random.default_rng(0).normal(
        size=(4, 32, 32, 4)).astype("float32")
    pce = float(setup.model.loss_fn.losses[0](y_true, logits))
    assert float(setup.model.loss_fn(y_true, logits)) > pce


def test_tensorboard_images_share_the_steps_of_the_epoch_scalars(tmp_path):
    import glob

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    config = TrainConfig().override(**{
        "output": str(tmp_path / "run"), "data.num_train": 16, "data.num_val": 4,
        "training.iterations": 4, "training.steps_per_epoch": 2})
    train(config, verbose=0)
    steps = {}
    for folder in glob.glob(str(tmp_path / "run" / "logs" / "**"), recursive=True):
        if not glob.glob(folder + "/events.out.tfevents.*"):
            continue
        events = EventAccumulator(folder, size_guidance={"images": 0, "tensors": 0})
        events.Reload()
        for tag in events.Tags()["tensors"]:
            steps.setdefault(tag, sorted(e.step for e in events.Tensors(tag)))
    assert steps["validation_grid"] == steps["epoch_loss"] == [0, 1]


def test_images_whose_sides_are_not_multiples_of_the_stride_train(tmp_path):
    from keras_regseg.data.base import InMemorySource
    from keras_regseg.training.data_setup import TrainingData

    rng = np.random.default_rng(0)
    images = rng.random((8, 42, 54, 1)).astype(np.float32)   # the UNet's stride is 4 here
    dense = (images[..., 0] > 0.5).astype(np.int32)
    weak = np.where(rng.random(dense.shape) < 0.05, dense, 255).astype(np.int32)
    source = InMemorySource(images, weak, 2, dense_labels=dense)
    data = TrainingData(train=source, validation=source)
    config = tiny_config(tmp_path, data={"augmentation": "none"},
                         model={"name": "unet", "options": {"filters": [4, 8, 8], "dropout": 0.0}})
    result = train(config, data=data, verbose=0)
    assert result.network.size_divisor == 4
    assert np.isfinite(result.metrics["miou"])
