"""ADM: the latent step, the loss, bad input, solver failures, saving, MirroredStrategy."""

import doctest
import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import CLASSES, tiny_network
from keras_regseg.losses.targets import pack_targets
from keras_regseg.methods import adm_model as adm, latent_solve
from keras_regseg.methods.adm_model import ADMModel
from keras_regseg.solvers import SolverPool, solve_alpha_expansion



def tiny_batch(batch=4, size=16, seed=0):
    """Images with a bright square; seeds: a stroke in each class (class 2 only in image 0)."""
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((batch, size, size, 1)).astype(np.float32)
    images[:, 4:12, 4:12] += 0.8
    seeds = np.full((batch, size, size), 255, np.int32)
    seeds[:, 1, 1:6] = 0
    seeds[:, 8, 6:10] = 1
    seeds[0, 14, 10:14] = 2
    seeds[1, -1, :] = 254          # a padded row
    return images, seeds


@pytest.fixture(scope="module")
def pool():
    with SolverPool(processes=0) as in_process:
        yield in_process


def brute_force_latent(logits, images, seeds, potts_weight):
    probabilities = tf.nn.softmax(logits).numpy()
    return np.stack([solve_alpha_expansion(p, im, s, potts_weight=potts_weight)[0]
                     for p, im, s in zip(probabilities, images, seeds)])


def manual_adm_loss(logits, seeds, latent, gamma):
    """pCE (mean over seeds) + gamma * CE to latent (mean over unlabeled pixels inside)."""
    log_p = tf.nn.log_softmax(logits)
    seeded = (seeds >= 0) & (seeds < CLASSES)
    unlabeled = seeds == 255
    picked_seed = tf.gather(log_p, np.where(seeded, seeds, 0), axis=-1, batch_dims=3)
    picked_latent = tf.gather(log_p, np.where(unlabeled, latent, 0), axis=-1, batch_dims=3)
    pce = -tf.reduce_sum(picked_seed * seeded) / seeded.sum()
    latent_ce = -tf.reduce_sum(picked_latent * unlabeled) / unlabeled.sum()
    return pce + gamma * latent_ce


def test_train_step_is_one_sgd_step_on_pce_plus_latent_cross_entropy(pool):
    images, seeds = tiny_batch()
    model = ADMModel(tiny_network(), gamma=1.5, potts_weight=0.5, pool=pool)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    reference = tiny_network()
    reference.set_weights(model.network.get_weights())
    logits = reference(images)
    latent = brute_force_latent(logits, images, seeds, potts_weight=0.5)
    assert len(np.unique(latent[seeds == 255])) >= 2          # a non-trivial latent labeling
    with tf.GradientTape() as tape:
        loss = manual_adm_loss(reference(images), seeds, latent, 1.5)
    gradients = tape.gradient(loss, reference.trainable_variables)
    expected = [w - 0.5 * g for w, g in zip(reference.trainable_variables, gradients)]

    logs = model.train_on_batch(images, pack_targets(seeds, images), return_dict=True)
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-5)
    for got, want in zip(model.network.trainable_variables, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    assert set(logs) == {"loss", "partial_cross_entropy", "latent_cross_entropy"}


def test_latent_step_keeps_seeds_and_follows_the_solver(pool):
    images, seeds = tiny_batch()
    model = ADMModel(tiny_network(seed=2), potts_weight=2.0, pool=pool)
    logits = model(images)
    latent = model.latent_labels(logits, tf.constant(seeds), tf.constant(images)).numpy()
    np.testing.assert_array_equal(latent, brute_force_latent(logits, images, seeds, 2.0))
    seeded = seeds < CLASSES
    np.testing.assert_array_equal(latent[seeded], seeds[seeded])
    assert (latent[seeds == 254] == 254).all()
    assert set(np.unique(latent[1][seeds[1] == 255])) <= {0, 1}   # only the seeded classes


def test_latent_cross_entropy_is_a_mean_over_unlabeled_pixels():
    rng = np.random.default_rng(1)
    log_p = tf.nn.log_softmax(rng.normal(size=(2, 4, 5, 3)).astype(np.float32))
    latent = rng.integers(0, 3, (2, 4, 5)).astype(np.int32)
    latent[0, 0, 0] = 255                                   # no labeling there: left out
    mask = (rng.random((2, 4, 5)) < 0.5).astype(np.float32)
    got = float(tf.reduce_mean(adm.latent_cross_entropy(latent, log_p, mask)))
    used = (mask > 0) & (latent < 3)
    values = -np.take_along_axis(log_p.numpy(), np.where(used, latent, 0)[..., None], -1)[..., 0]
    assert got == pytest.approx(values[used].mean(), rel=1e-5)


def test_jit_compile_is_refused_and_default_is_off(pool):
    model = ADMModel(tiny_network(), pool=pool)
    with pytest.raises(ValueError, match="ADMModel cannot be XLA-compiled"):
        model.compile(optimizer="sgd", jit_compile=True)
    model.compile(optimizer="sgd")
    assert model.jit_compile is False


def test_targets_without_image_raise(pool):
    images, seeds = tiny_batch()
    model = ADMModel(tiny_network(), pool=pool)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="ADMModel needs the image"):
        model.train_on_batch(images, seeds.astype(np.float32))


def test_save_and_load_round_trip(tmp_path, pool):
    model = ADMModel(tiny_network(), gamma=0.7, potts_weight=3.0, max_iterations=2, pool=pool)
    images, _ = tiny_batch()
    model(images)                                      # build the wrapper
    path = str(tmp_path / "adm.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded, ADMModel)
    assert (loaded.gamma, loaded.potts_weight, loaded.max_iterations) == (0.7, 3.0, 2)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


# --- bad input: none of these stops training ------------------------------------------------


def _probabilities(batch=2, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return tf.nn.softmax(rng.normal(size=(batch, size, size, CLASSES))).numpy()


def test_non_finite_probabilities_warn_with_the_image_id(pool):
    probs = _probabilities()
    probs[1, 2, 3, 0] = np.nan
    seeds = np.full((2, 8, 8), 255)
    seeds[:, 0, 0] = 1
    with pytest.warns(RuntimeWarning, match="'case-b'.*non-finite"):
        labels, energies = latent_solve.solve_labelings(probs, np.zeros((2, 8, 8, 1)), seeds,
                                                        ids=[b"case-a", b"case-b"], pool=pool)
    expected = np.full((8, 8), 255)
    expected[0, 0] = 1
    np.testing.assert_array_equal(labels[1], expected)      # seeds only: no latent target
    assert np.isnan(energies[1]) and np.isfinite(energies[0])
    assert (labels[0] < CLASSES).all()                       # the good image was solved


def test_probability_map_of_another_size_is_resized_to_the_image(pool):
    probs = np.zeros((1, 4, 4, 2))
    probs[..., :2, 0] = 1.0                                  # left half class 0
    probs[..., 2:, 1] = 1.0
    seeds = np.full((1, 8, 8), 255)
    with pytest.warns(RuntimeWarning, match="'img'.*4x4 but the image is 8x8"):
        labels, _ = latent_solve.solve_labelings(probs, np.zeros((1, 8, 8, 1)), seeds, ids=["img"],
                                                 pool=pool, potts_weight=0.01)
    assert labels.shape == (1, 8, 8)
    assert (labels[0, :, :4] == 0).all() and (labels[0, :, 4:] == 1).all()


def test_image_without_seeds_uses_the_prediction_and_single_label_images_keep_all_classes(pool):
    probs = _probabilities(batch=2)
    seeds = np.full((2, 8, 8), 255)
    seeds[1, 0, :] = 2                                        # one seeded class only
    labels, _ = latent_solve.solve_labelings(probs, np.zeros((2, 8, 8, 1)), seeds, pool=pool,
                                             potts_weight=0.0)
    # No Potts term: the argmax of the prediction (every class allowed), seeds imposed.
    np.testing.assert_array_equal(labels[0], probs[0].argmax(-1))
    expected = probs[1].argmax(-1)
    expected[0, :] = 2
    np.testing.assert_array_equal(labels[1], expected)


def test_solver_failure_falls_back_to_the_starting_labeling():
    closed = SolverPool(processes=0)
    closed.close()
    probs = _probabilities(batch=1)
    seeds = np.full((1, 8, 8), 255)
    seeds[0, 0, 0] = 1
    with pytest.warns(RuntimeWarning, match="alpha-expansion failed"):
        labels, _ = latent_solve.solve_labelings(probs, np.zeros((1, 8, 8, 1)), seeds, pool=closed)
    expected = probs[0].argmax(-1)
    expected[0, 0] = 1
    np.testing.assert_array_equal(labels[0], expected)


def test_a_crashing_worker_does_not_stop_training():
    images, seeds = tiny_batch()
    with SolverPool(processes=1) as crashing:
        crashing._exit_for_test = {"0": 2}                    # image 0's worker dies twice
        model = ADMModel(tiny_network(), pool=crashing)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logs = model.train_on_batch(images, pack_targets(seeds, images), return_dict=True)
        assert crashing.restarts == 2 and crashing.failed_ids == ["0"]
    assert np.isfinite(logs["loss"])
    assert any("failed 2 times on image '0'" in str(w.message) for w in caught)


def test_shared_pool_is_one_per_process_and_closed_by_the_callback():
    first = latent_solve.shared_pool(processes=0)
    assert latent_solve.shared_pool() is first
    latent_solve.CloseSolverPool().on_train_end()
    with pytest.raises(RuntimeError, match="closed"):
        first.solve_batch(np.full((1, 2, 2, 2), 0.5), np.zeros((1, 2, 2)), np.full((1, 2, 2), 255))
    second = latent_solve.shared_pool(processes=0)
    assert second is not first
    latent_solve.close_shared_pool()


def test_docstring_examples():
    for module in (adm, latent_solve):
        result = doctest.testmod(module)
        assert result.attempted >= 3 and result.failed == 0


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
    from test_adm import tiny_batch, tiny_network
    from keras_regseg.losses.targets import pack_targets
    from keras_regseg.methods.adm_model import ADMModel
    from keras_regseg.solvers import SolverPool

    # Both replicas get the same four images: their per-replica means (over seeds and
    # unlabeled pixels) then equal the global batch's, so the runs must agree exactly.
    images, seeds = tiny_batch(batch=4)
    images, seeds = np.concatenate([images, images]), np.concatenate([seeds, seeds])
    y = pack_targets(seeds, images).numpy()
    weights = tiny_network().get_weights()
    pool = SolverPool(processes=2, potts_weight=0.5)    # real workers, shared by both replicas

    def train(strategy):
        with strategy.scope():
            network = tiny_network()
            network.set_weights(weights)
            model = ADMModel(network, potts_weight=0.5, pool=pool)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        history = model.fit(images, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.network.get_weights(), history.history["loss"]

    single, single_loss = train(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, mirrored_loss = train(strategy)
    pool.close()
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
    assert report["weight_change"] > 1e-3
    assert report["weight_difference"] < 1e-5
    np.testing.assert_allclose(report["mirrored_loss"], report["single_loss"], rtol=1e-5)
