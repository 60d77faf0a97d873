"""Mixed precision: every method trains under mixed_float16 / mixed_bfloat16 with float32
outputs, losses and solver inputs, loss scaling, and no policy leaking out of a run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.losses import GridCRFLoss, PartialCrossEntropy, WeightedSumLoss
from keras_regseg.losses.robust_ce import pack_proposal_targets
from keras_regseg.losses.targets import pack_targets
from keras_regseg.methods import ccnn_model
from keras_regseg.methods.adm_model import ADMModel
from keras_regseg.methods.ccnn_model import CCNNModel
from keras_regseg.methods.trust_region_model import TrustRegionModel
from keras_regseg.methods.trust_region_stage_a import in_graph_probabilities
from keras_regseg.models import build_model
from keras_regseg.solvers import SolverPool
from keras_regseg.training import precision
from keras_regseg.training.config import TrainConfig
from keras_regseg.training.precision import policy_name, precision_policy
from keras_regseg.training.trainer import train

CLASSES = 3
SIZE = 16


@pytest.fixture(autouse=True)
def float32_around_each_test():
    """Every test starts from float32 and must leave float32 behind."""
    keras.config.set_dtype_policy("float32")
    yield
    leaked = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float32")
    assert leaked == "float32", f"the test left the global dtype policy at {leaked}"


def tiny_unet(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("unet", CLASSES, 1, filters=(4, 8), dropout=0.0)


def tiny_batch(batch=2, seed=0):
    """Images with a bright square; seeds: a stroke of each class."""
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((batch, SIZE, SIZE, 1)).astype(np.float32)
    images[:, 4:12, 4:12] += 0.8
    seeds = np.full((batch, SIZE, SIZE), 255, np.int32)
    seeds[:, 1, 1:6] = 0
    seeds[:, 8, 6:10] = 1
    seeds[:, 14, 10:14] = 2
    return images, seeds


def sgd():
    # Weight decay on: the wrapped optimizer's settings must survive the loss-scale wrapper.
    return keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4)


def train_two_steps(model, images, y):
    """Two optimizer steps; returns (logs of the last, largest weight change of the network)."""
    before = [w.numpy().copy() for w in model.trainable_weights]
    for _ in range(2):
        logs = model.train_on_batch(images, y, return_dict=True)
    change = max(float(np.abs(w.numpy() - b).max())
                 for w, b in zip(model.trainable_weights, before))
    return logs, change


class RecordingADM(ADMModel):
    """ADMModel that remembers the dtypes its solver receives."""

    seen = []

    def _solve(self, probabilities, images, seeds):
        RecordingADM.seen.append((probabilities.dtype, images.dtype))
        return super()._solve(probabilities, images, seeds)


def pce_case(images, seeds):
    network = tiny_unet()
    network.compile(optimizer=sgd(), loss=PartialCrossEntropy(), jit_compile=False)
    return network, network, seeds


def gd_case(images, seeds):
    network = tiny_unet()
    loss = WeightedSumLoss([PartialCrossEntropy(), GridCRFLoss(weight=1.0)])
    network.compile(optimizer=sgd(), loss=loss, jit_compile=False)
    return network, network, pack_targets(seeds, images)


def adm_case(images, seeds):
    network = tiny_unet()
    model = RecordingADM(network, potts_weight=0.5, pool=SolverPool(processes=0))
    model.compile(optimizer=sgd())
    return model, network, pack_targets(seeds, images)


def trust_region_case(images, seeds):
    network = tiny_unet()
    model = TrustRegionModel(network, epsilon=0.4, learn_epsilon=True)
    model.compile(optimizer=sgd())
    proposals = np.zeros_like(seeds)
    proposals[:, 4:12, 4:12] = 1
    return model, network, pack_proposal_targets(seeds, proposals, images)


def ccnn_case(images, seeds):
    network = tiny_unet()
    model = CCNNModel(network, downscale=2, solver_jit_compile=False)
    model.compile(optimizer=sgd(), jit_compile=False)
    return model, network, np.array([[1, 1, 0]] * len(images), np.float32)


CASES = {"pce": pce_case, "gd_grid": gd_case, "adm": adm_case,
         "trust_region": trust_region_case, "ccnn": ccnn_case}


@pytest.mark.parametrize("method", sorted(CASES))
def test_methods_train_under_mixed_float16(method, monkeypatch):
    solver_inputs = []
    solve_dual = ccnn_model.solve_dual
    def recording_solve_dual(logits, *args):
        solver_inputs.append(logits.dtype)
        return solve_dual(logits, *args)

    monkeypatch.setattr(ccnn_model, "solve_dual", recording_solve_dual)
    RecordingADM.seen = []
    images, seeds = tiny_batch()
    with precision_policy("float16"):
        model, network, y = CASES[method](images, seeds)
        logs, change = train_two_steps(model, images, y)
        outputs = network(images, training=False)
        body = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)][0]
        assert body.compute_dtype == "float16"          # the policy did reach the network
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(logs["loss"]), logs
    assert outputs.dtype == tf.float32 and np.isfinite(outputs.numpy()).all()
    assert all(w.dtype == "float32" for w in model.weights)    # variables stay float32
    assert change > 1e-4                                        # the steps were not all skipped
    if method == "adm":
        float32 = np.dtype("float32")
        assert RecordingADM.seen and set(RecordingADM.seen) == {(float32, float32)}
    if method == "ccnn":
        assert solver_inputs and set(solver_inputs) == {tf.float32}
    if method == "trust_region":
        # Stage A's in-graph prediction hands the solver float32 probabilities.
        assert in_graph_probabilities(network)(images).dtype == tf.float32
        inner = model.optimizer.inner_optimizer
        assert not inner._use_weight_decay(model.epsilon_logit)   # the error model is not decayed
        assert 0.0 < float(model.epsilon) < 1.0


def test_loss_scaling_skips_an_overflowing_step_and_lowers_the_scale():
    """The train_step hands the scaled loss to the LossScaleOptimizer: a float16 overflow of
    the scaled gradients skips the step and halves the scale instead of writing inf weights."""
    images, seeds = tiny_batch()
    with precision_policy("float16"):
        network = tiny_unet()
        model = TrustRegionModel(network, epsilon=0.4)
        # A loss scale so large that the scaled float16 gradients overflow.
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(sgd(), initial_scale=2.0 ** 40))
        y = pack_proposal_targets(seeds, np.ones_like(seeds), images)
        before = [w.numpy().copy() for w in network.trainable_weights]
        model.train_on_batch(images, y)
    assert float(model.optimizer.dynamic_scale) == 2.0 ** 39
    for w, b in zip(network.trainable_weights, before):   # (BatchNorm statistics do move)
        np.testing.assert_array_equal(w.numpy(), b)


def test_bfloat16_trains_adm_without_loss_scaling():
    images, seeds = tiny_batch()
    with precision_policy("bfloat16"):
        model, network, y = adm_case(images, seeds)
        logs, change = train_two_steps(model, images, y)
        assert network.layers[2].compute_dtype == "bfloat16"
        outputs = network(images, training=False)
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(logs["loss"]) and change > 1e-4
    assert outputs.dtype == tf.float32


def test_policy_names_and_restore_after_an_error():
    assert [policy_name(p) for p in ("none", "float16", "bfloat16")] == [
        "float32", "mixed_float16", "mixed_bfloat16"]
    with pytest.raises(ValueError, match="mixed_precision = 'fp16'; expected one of none"):
        policy_name("fp16")
    with pytest.raises(RuntimeError):
        with precision_policy("float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"
    previous = precision.set_precision("bfloat16")
    assert previous.name == "float32" and keras.config.dtype_policy().name == "mixed_bfloat16"
    keras.config.set_dtype_policy(previous)


NETWORKS = {
    "unet": dict(filters=(4, 8), dropout=0.0),
    "deeplabv3plus": dict(alpha=0.35, aspp_filters=8, atrous_rates=(2, 4), low_level_filters=4,
                          decoder_filters=8),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_saved_mixed_network_reloads_with_the_same_parameters(tmp_path, name):
    """A saved network carries its weights, not its precision: the loading policy decides."""
    images = tiny_batch()[0] if name == "unet" else np.random.default_rng(0).random(
        (1, 32, 32, 1)).astype(np.float32)
    keras.utils.set_random_seed(0)
    plain = build_model(name, CLASSES, 1, **NETWORKS[name])
    with precision_policy("float16"):
        mixed = build_model(name, CLASSES, 1, **NETWORKS[name])
    assert mixed.count_params() == plain.count_params()
    assert mixed(images).dtype == tf.float32
    assert mixed.get_layer("logits").compute_dtype == "float32"
    path = str(tmp_path / "mixed.keras")
    mixed.save(path)
    reloaded = keras.saving.load_model(path)                   # under float32
    assert reloaded.count_params() == mixed.count_params()
    np.testing.assert_allclose(reloaded(images).numpy(), mixed(images).numpy(), atol=5e-3)
    with precision_policy("float16"):
        reloaded_mixed = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded_mixed(images).numpy(), mixed(images).numpy())
    assert reloaded_mixed(images).dtype == tf.float32
    convs = [l for l in reloaded.layers if isinstance(l, keras.layers.Conv2D)]
    convs_mixed = [l for l in reloaded_mixed.layers if isinstance(l, keras.layers.Conv2D)]
    if convs:   # (DeepLab's body is a nested backbone model)
        assert convs[0].compute_dtype == "float32" and convs_mixed[0].compute_dtype == "float16"


TINY = {
    "data": {"name": "synthetic", "size": 32, "num_train": 8, "num_val": 2},
    "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
    "training": {"iterations": 2, "steps_per_epoch": 2, "batch_size": 4, "num_grid_images": 1,
                 "mixed_precision": "float16"},
}


@pytest.mark.parametrize("method", ["gd", "trust_region"])
def test_train_runs_end_to_end_under_float16_and_restores_the_policy(tmp_path, method):
    values = {**TINY, "method": method, "output": str(tmp_path / "run"),
              "trust_region": {"processes": 0}}
    result = train(TrainConfig.from_dict(values), verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    assert result.network.layers[2].compute_dtype == "float16"
    with open(os.path.join(result.output, "metrics.json")) as f:
        metrics = json.load(f)
    assert np.isfinite(metrics["history"]["loss"]).all()
    assert 0.0 <= metrics["final"]["miou"] <= 1.0
    assert metrics["config"]["training"]["mixed_precision"] == "float16"
    reloaded = keras.saving.load_model(os.path.join(result.output, "model.keras"), compile=False)
    assert reloaded.count_params() == result.network.count_params()


def test_train_restores_the_policy_when_it_fails(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("simulated crash")

    values = {**TINY, "output": str(tmp_path / "run")}
    values["training"] = {**TINY["training"], "mixed_precision": "bfloat16"}
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TrainConfig.from_dict(values), verbose=0, callbacks=[Crash()])
    assert keras.config.dtype_policy().name == "float32"
