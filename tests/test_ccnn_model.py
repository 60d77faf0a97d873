"""CCNNModel: its training step, targets, saving, and MirroredStrategy."""

import doctest
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from keras_regseg.methods.ccnn_constraints import TagConstraintConfig, tag_constraints
from keras_regseg.methods import ccnn_model
from keras_regseg.methods.ccnn_dual import solve_dual
from keras_regseg.methods.ccnn_model import CCNNModel, LatentCrossEntropy

CLASSES = 3


def tiny_network(seed=0, size=8):
    return helpers.tiny_network(seed, size)


def tiny_data(batch=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((batch, size, size, 1)).astype(np.float32)
    tags = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1]] * (batch // 4), np.float32)
    return images, tags


def manual_loss(coarse_logits, constraints, sample_weight=None):
    """Mean over pixels (and images) of -sum_k P log softmax, P from the solver."""
    latent = solve_dual(coarse_logits, constraints, jit_compile=False).latent
    per_pixel = -tf.reduce_sum(latent * tf.nn.log_softmax(coarse_logits), axis=-1)
    if sample_weight is not None:
        per_pixel *= np.asarray(sample_weight, np.float32)[:, None, None]
    return tf.reduce_mean(per_pixel)


def test_train_step_is_one_sgd_step_on_the_cross_entropy_to_fixed_latent():
    images, tags = tiny_data()
    model = CCNNModel(tiny_network(), downscale=2, solver_jit_compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    reference = tiny_network()
    reference.set_weights(model.network.get_weights())

    with tf.GradientTape() as tape:
        coarse = tf.nn.avg_pool2d(reference(images), 2, 2, "SAME")
        loss = manual_loss(coarse, tag_constraints(tags))
    gradients = tape.gradient(loss, reference.trainable_variables)
    expected = [w - 0.5 * g for w, g in zip(reference.trainable_variables, gradients)]

    logs = model.train_on_batch(images, tags, return_dict=True)
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-5)
    for got, want in zip(model.network.trainable_variables, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in gradients) > 1e-3   # a real step
    assert set(logs) == {"loss", "ccnn_violation", "ccnn_iterations"}


def test_fit_suppresses_absent_classes_and_meets_the_bounds():
    images, _ = tiny_data(batch=8)
    tags = np.tile(np.array([[1, 1, 0]], np.float32), (8, 1))   # class 2 never present
    model = CCNNModel(tiny_network(seed=3), downscale=2)   # XLA solver, as by default
    model.compile(optimizer=keras.optimizers.Adam(0.05), jit_compile=False)

    def class_mass():
        return tf.nn.softmax(model.predict(images, verbose=0)).numpy().mean(axis=(0, 1, 2))

    before = class_mass()
    history = model.fit(images, tags, batch_size=4, epochs=15, verbose=0)
    after = class_mass()
    assert before[2] > 0.2 and after[2] < 0.05
    assert 0.3 - 0.02 <= after[0] <= 0.7 + 0.02 and after[1] >= 0.05 - 0.02
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.1
    assert np.isfinite(history.history["ccnn_violation"]).all()


def test_targets_as_tensor_or_dict_with_size_bits():
    images, tags = tiny_data()
    model = CCNNModel(tiny_network(), downscale=2, solver_jit_compile=False)
    logits = model(images)
    coarse = tf.nn.avg_pool2d(logits, 2, 2, "SAME")
    plain = model.compute_loss(images, tags, logits)
    np.testing.assert_allclose(plain, manual_loss(coarse, tag_constraints(tags)), rtol=1e-5)
    np.testing.assert_allclose(model.compute_loss(images, {"tags": tags}, logits), plain, rtol=1e-6)
    size_bits = np.array([[0, 1, 0], [0, 0, 0], [0, 1, 1], [0, 0, 1]], np.float32)
    sized = model.compute_loss(images, {"tags": tags, "size_bits": size_bits}, logits)
    np.testing.assert_allclose(sized, manual_loss(coarse, tag_constraints(tags, size_bits)),
                               rtol=1e-5)
    assert abs(float(sized) - float(plain)) > 1e-4
    weighted = model.compute_loss(images, tags, logits, sample_weight=np.array([1, 0, 2, 0.5]))
    np.testing.assert_allclose(
        weighted, manual_loss(coarse, tag_constraints(tags), [1, 0, 2, 0.5]), rtol=1e-5)
    # Half-precision logits (mixed precision) give the float32 loss.
    half = model.compute_loss(images, tags, tf.cast(logits, tf.float16))
    assert half.dtype == tf.float32 and float(half) == pytest.approx(float(plain), rel=1e-2)


def test_bad_targets_and_arguments_raise_clear_errors():
    images, tags = tiny_data()
    model = CCNNModel(tiny_network(), downscale=2, solver_jit_compile=False)
    logits = model(images)
    with pytest.raises(ValueError, match=r"tags must have shape \[B, 3\]"):
        model.compute_loss(images, np.ones((4, 4), np.float32), logits)
    with pytest.raises(ValueError, match="got keys \\['size_bit', 'tags'\\]"):
        model.compute_loss(images, {"tags": tags, "size_bit": tags}, logits)
    with pytest.raises(ValueError, match="needs targets y"):
        model.compute_loss(images, None, logits)
    with pytest.raises(ValueError, match="downscale must be an integer >= 1"):
        CCNNModel(tiny_network(), downscale=0)
    with pytest.raises(TypeError, match="network must be a keras.Model"):
        CCNNModel(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="constraints must be a TagConstraintConfig"):
        CCNNModel(tiny_network(), constraints=[0.05])


def test_coarse_logits_average_the_pixels_of_each_cell():
    model = CCNNModel(tiny_network(size=5), downscale=2)
    logits = np.random.default_rng(0).normal(size=(2, 5, 5, CLASSES)).astype(np.float32)
    got = model.coarse_logits(logits).numpy()
    want = np.zeros((2, 3, 3, CLASSES), np.float32)
    for i in range(3):
        for j in range(3):   # border cells average only the pixels inside the image
            want[:, i, j] = logits[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(1, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_predict_save_and_load_round_trip(tmp_path):
    images, tags = tiny_data()
    config = TagConstraintConfig(foreground_lower=0.1, background_class=2)
    model = CCNNModel(tiny_network(), constraints=config, downscale=2, max_iterations=50,
                      tolerance=1e-4, initial_step=5.0, solver_jit_compile=False, name="ccnn")
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    model.fit(images, tags, batch_size=4, epochs=1, verbose=0)
    predictions = model.predict(images, verbose=0)
    np.testing.assert_allclose(predictions, model.network(images).numpy(), atol=1e-6)

    path = os.path.join(tmp_path, "ccnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CCNNModel) and loaded.name == "ccnn"
    assert loaded.constraint_config == config
    assert (loaded.downscale, loaded.max_iterations, loaded.tolerance, loaded.initial_step,
            loaded.solver_jit_compile) == (2, 50, 1e-4, 5.0, False)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), predictions, atol=1e-6)
    clone = CCNNModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    loss = LatentCrossEntropy.from_config(LatentCrossEntropy().get_config())
    assert loss.name == "latent_cross_entropy"


def test_build_constraints_hook_adds_boxes():
    class BoxCCNN(CCNNModel):
        def build_constraints(self, y, grid_shape):
            base = super().build_constraints({"tags": y["tags"]}, grid_shape)
            return base.with_boxes(y["boxes"], y["box_classes"], grid_shape)

    images, tags = tiny_data()
    y = {"tags": tags,
         "boxes": np.tile(np.array([[[0.0, 0.0, 0.5, 0.5]]], np.float32), (4, 1, 1)),
         "box_classes": np.array([[1], [2], [1], [2]], np.int32)}
    model = BoxCCNN(tiny_network(), downscale=2, solver_jit_compile=False)
    latent, _, solution = model.latent_targets(y, model(images))
    latent = latent.numpy()
    for image, label in enumerate(y["box_classes"][:, 0]):
        outside = np.ones((4, 4), bool)
        outside[:2, :2] = False
        assert latent[image][outside][:, label].max() == 0.0
        assert latent[image][~outside][:, label].mean() > 0.2   # pulled up inside the box
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    logs = model.fit(images, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"]).all()


def test_docstring_examples():
    result = doctest.testmod(ccnn_model)
    assert result.attempted >= 8 and result.failed == 0


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_ccnn_model import tiny_data, tiny_network
    from keras_regseg.methods.ccnn_model import CCNNModel

    images, tags = tiny_data(batch=8)
    weights = tiny_network().get_weights()

    def train(strategy):
        with strategy.scope():
            network = tiny_network()
            network.set_weights(weights)
            # Plain-graph solver: XLA compilation would double this test's time.
            model = CCNNModel(network, downscale=2, solver_jit_compile=False)
            model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
        history = model.fit(images, tags, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.network.get_weights(), history.history["loss"]

    single, single_loss = train(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, mirrored_loss = train(strategy)
    print(json.dumps({{
        "replicas": strategy.num_replicas_in_sync,
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)),
        "weight_change": max(float(np.abs(a - b).max()) for a, b in zip(single, weights)),
        "single_loss": single_loss, "mirrored_loss": mirrored_loss}}))
""")


def test_mirrored_strategy_matches_a_single_device():
    # Logical devices must be set before TensorFlow starts: run in a fresh process.
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT.format(tests=tests)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["weight_change"] > 1e-3                 # training moved the weights
    assert report["weight_difference"] < 1e-5             # ... identically on 2 replicas
    np.testing.assert_allclose(report["mirrored_loss"], report["single_loss"], rtol=1e-5)
