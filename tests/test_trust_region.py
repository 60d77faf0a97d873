"""Trust region: robust loss d_B, stage B step, stage A rounds and schedule, the stage-B
pipeline (proposals augmented with the images), the trainer, MirroredStrategy."""

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

from helpers import CLASSES, tiny_network
from keras_regseg.data.augment import Augmentation
from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.losses import robust_ce
from keras_regseg.losses.robust_ce import (RobustCrossEntropy, default_epsilon,
                                           pack_proposal_targets, robust_cross_entropy)
from keras_regseg.methods import trust_region_model as trust_region, trust_region_stage_a
from keras_regseg.methods.trust_region_model import TrustRegionModel
from keras_regseg.methods.proposal_store import ProposalStore
from keras_regseg.methods.trust_region_stage_a import StageA
from keras_regseg.solvers import SolverPool, solve_alpha_expansion



def tiny_source(count=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((count, size, size, 1)).astype(np.float32)
    images[:, 4:12, 4:12] += 0.8
    dense = np.zeros((count, size, size), np.int32)
    dense[:, 4:12, 4:12] = 1
    seeds = np.full((count, size, size), 255, np.int32)
    seeds[:, 1, 1:6] = 0
    seeds[:, 8, 6:10] = 1
    seeds[0, 14, 10:14] = 2
    seeds[1] = 255                                          # an image without any seed
    return InMemorySource(images, seeds, CLASSES, dense_labels=dense)


def tiny_trust_region_config(tmp_path, num_val, num_grid_images, **trust_region):
    """A 2-epoch trust-region run on 8 synthetic 16 x 16 images, stage A every epoch."""
    from keras_regseg.training.config import TrainConfig

    return TrainConfig.from_dict({
        "method": "trust_region", "output": str(tmp_path / "run"),
        "data": {"size": 16, "num_train": 8, "num_val": num_val},
        "model": {"options": {"filters": [4, 8], "dropout": 0.0}},
        "training": {"iterations": 4, "steps_per_epoch": 2, "batch_size": 4,
                     "num_grid_images": num_grid_images},
        "trust_region": {"every": 1, "overlap": False, **trust_region}})


@pytest.fixture(scope="module")
def pool():
    with SolverPool(processes=0) as in_process:
        yield in_process


# --- robust cross-entropy ----------------------------------------------------------------


def brute_force_d_b(seeds, proposals, logits, epsilon, normalization="seeds"):
    """Eq. 24 pixel by pixel, divided by #seeds (or #proposal pixels without seeds), by
    #seeds + #proposals (``"labeled"``), or each term by its own pixels (``"per_term"``)."""
    f = tf.nn.softmax(logits).numpy().astype(np.float64)
    k = f.shape[-1]
    a = epsilon / (k - 1)
    b = 1 - k * a
    seed_total, proposal_total, num_seeds, num_proposals = 0.0, 0.0, 0, 0
    for index in np.ndindex(seeds.shape):
        if seeds[index] < k:
            seed_total -= np.log(f[index][seeds[index]])
            num_seeds += 1
        elif proposals[index] < k:
            proposal_total -= np.log(a + b * f[index][proposals[index]])
            num_proposals += 1
    if normalization == "per_term":
        return seed_total / max(num_seeds, 1) + proposal_total / max(num_proposals, 1)
    total = seed_total + proposal_total
    if normalization == "labeled":
        return total / max(num_seeds + num_proposals, 1)
    return total / (num_seeds if num_seeds else max(num_proposals, 1))


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("with_seeds", [True, False])
@pytest.mark.parametrize("normalization", robust_ce.NORMALIZATIONS)
def test_robust_cross_entropy_matches_eq_24(epsilon, with_seeds, normalization):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 4, CLASSES)).astype(np.float32) * 3
    proposals = rng.integers(0, CLASSES, (2, 5, 4))
    proposals[0, 0, :] = 255                                  # no proposal there
    proposals[1, 4, :] = 254                                  # padding
    seeds = np.full((2, 5, 4), 255)
    if with_seeds:
        seeds[0, 2, 1:3] = 1
        seeds[1, 0, 0] = 2
    per_pixel = robust_cross_entropy(seeds, proposals, logits, epsilon, normalization)
    assert per_pixel.shape == (2, 5, 4)
    want = brute_force_d_b(seeds, proposals, logits, epsilon, normalization)
    assert float(tf.reduce_mean(per_pixel)) == pytest.approx(want, rel=1e-5)


def test_normalizations_differ_by_labeled_over_seed_pixels_and_unknown_ones_are_refused():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 6, 6, CLASSES)).astype(np.float32)
    proposals = rng.integers(0, CLASSES, (1, 6, 6))
    seeds = np.full((1, 6, 6), 255)
    seeds[0, 0, :3] = 1                                       # 3 seeds among 36 labeled pixels
    by_seed, by_labeled = (float(tf.reduce_mean(robust_cross_entropy(
        seeds, proposals, logits, 0.3, n))) for n in ("seeds", "labeled"))
    assert by_seed == pytest.approx(by_labeled * 36 / 3, rel=1e-5)
    # The authors' normalization is per_term with the proposal term weighted #proposals / #seeds.
    weighted = float(tf.reduce_mean(robust_cross_entropy(seeds, proposals, logits, 0.3,
                                                         "per_term", proposal_weight=33 / 3)))
    assert weighted == pytest.approx(by_seed, rel=1e-5)
    with pytest.raises(ValueError, match="normalization is 'pixels'"):
        robust_cross_entropy(seeds, proposals, logits, 0.3, "pixels")
    with pytest.raises(ValueError, match="normalization is 'pixels'"):
        TrustRegionModel(tiny_network(), normalization="pixels")


def test_the_config_knows_the_loss_normalizations_and_solver_energies():
    from keras_regseg.methods import trust_region as method
    from keras_regseg.solvers import alpha_expansion

    assert method.NORMALIZATIONS == robust_ce.NORMALIZATIONS
    assert method.ENERGIES == alpha_expansion.ENERGIES


def test_zero_epsilon_is_plain_cross_entropy_and_large_epsilon_flattens_mistakes():
    logits = np.array([[[[-20.0, 20.0]]]], np.float32)       # confidently class 1
    seeds, wrong = np.array([[[255]]]), np.array([[[0]]])    # proposal says class 0
    plain = float(tf.reduce_mean(robust_cross_entropy(seeds, wrong, logits, 0.0)))
    robust = float(tf.reduce_mean(robust_cross_entropy(seeds, wrong, logits, 0.4)))
    assert plain == pytest.approx(40.0, rel=1e-4)             # -log softmax = 40
    assert robust == pytest.approx(-np.log(0.4), rel=1e-4)    # a + b * 0 = eps / (K - 1)


def test_default_epsilon_keeps_the_authors_likelihood_ratio():
    assert default_epsilon(21) == pytest.approx(0.944)
    for k in (2, 4, 21):
        eps = default_epsilon(k)
        a, b = robust_ce.error_model_coefficients(eps, k)
        assert b > 0
        assert (1 - eps) / a == pytest.approx((1 - 0.944) / (0.944 / 20))
    with pytest.raises(ValueError, match=r"epsilon is 0\.8.*K = 4"):
        robust_ce.check_epsilon(0.8, 4)                       # b < 0 for 4 classes


def test_robust_loss_object_unpacks_targets_and_round_trips():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 4, 4, CLASSES)).astype(np.float32)
    seeds = np.full((1, 4, 4), 255)
    seeds[0, 0, 0] = 2
    proposals = rng.integers(0, CLASSES, (1, 4, 4))
    y = pack_proposal_targets(seeds, proposals, np.zeros((1, 4, 4, 1)))
    loss = RobustCrossEntropy.from_config(RobustCrossEntropy(epsilon=0.5).get_config())
    assert float(loss(y, logits)) == pytest.approx(brute_force_d_b(seeds, proposals, logits, 0.5),
                                                   rel=1e-5)


# --- stage B ---------------------------------------------------------------------------------


def stage_b_batch(size=16):
    source = tiny_source(count=4, size=size)
    proposals = np.where(source.dense_labels == 1, 1, 0)
    proposals[2, :2] = 2                                      # some wrong proposals
    y = pack_proposal_targets(source.weak_labels, proposals, source.images)
    return source.images, y


def test_train_step_is_one_sgd_step_on_d_b():
    images, y = stage_b_batch()
    model = TrustRegionModel(tiny_network(), epsilon=0.4, normalization="seeds")
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    reference = tiny_network()
    reference.set_weights(model.network.get_weights())
    seeds, proposals, _ = robust_ce.unpack_proposal_targets(y)
    with tf.GradientTape() as tape:
        logits = reference(images)
        loss = tf.reduce_mean(robust_cross_entropy(seeds, proposals, logits, 0.4))
    gradients = tape.gradient(loss, reference.trainable_variables)
    want = brute_force_d_b(seeds.numpy(), proposals.numpy(), reference(images), 0.4)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    logs = model.train_on_batch(images, y, return_dict=True)
    # Logged: d_B per labeled pixel (seeds and proposals); the step: d_B per seed pixel.
    num_seeds = int(((seeds.numpy() >= 0) & (seeds.numpy() < CLASSES)).sum())
    labeled = int(((proposals.numpy() >= 0) & (proposals.numpy() < CLASSES)).sum())
    assert num_seeds < labeled
    assert logs["loss"] == pytest.approx(want * num_seeds / labeled, rel=1e-5)
    assert logs["epsilon"] == pytest.approx(0.4, rel=1e-5)    # constant error model
    for got, w, g in zip(model.network.trainable_variables, reference.trainable_variables,
                         gradients):
        np.testing.assert_allclose(got.numpy(), (w - 0.5 * g).numpy(), atol=1e-6)


def test_learned_epsilon_falls_when_the_network_agrees_and_rises_when_it_does_not():
    images, y = stage_b_batch()
    seeds, proposals, _ = robust_ce.unpack_proposal_targets(y)
    one_hot = tf.one_hot(proposals, CLASSES) * 10.0          # logits agreeing with proposals

    def moved(logits):
        inputs = keras.Input((16, 16, 1))
        fixed = keras.Model(inputs, keras.layers.Lambda(lambda _: logits)(inputs))
        model = TrustRegionModel(fixed, epsilon=0.3, learn_epsilon=True)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        model.train_on_batch(images, y)
        return float(model.epsilon) - 0.3

    assert moved(one_hot) < -1e-4
    assert moved(-one_hot) > 1e-4
    assert [v.name for v in TrustRegionModel(tiny_network(), learn_epsilon=True)
            .trainable_variables if "epsilon" in v.name] == ["epsilon_logit"]
    assert not any("epsilon" in v.name for v in TrustRegionModel(tiny_network())
                   .trainable_variables)


def test_save_and_load_round_trip(tmp_path):
    model = TrustRegionModel(tiny_network(), epsilon=0.25, learn_epsilon=True)
    images, _ = stage_b_batch()
    model(images)
    path = str(tmp_path / "tr.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded, TrustRegionModel) and loaded.learn_epsilon
    assert float(loaded.epsilon) == pytest.approx(0.25, rel=1e-5)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


# --- stage A -------------------------------------------------------------------------------


def test_stage_a_round_stores_the_solver_labeling_of_each_image(pool):
    source = tiny_source()
    network = tiny_network(seed=4)
    store = ProposalStore()
    stage_a = StageA(source, network, store, batch_size=4, unary_weight=1.0, potts_weight=0.5,
                     progress=False, pool=pool)
    for round_number in (1, 2):
        if round_number == 2:
            # The round's pipeline is built once; the next round must still see new weights.
            before = store.maps(1)
            for variable in network.trainable_variables:
                variable.assign(tf.random.normal(variable.shape, seed=7) * 2.0)
        summary = stage_a.run_round()
        probabilities = tf.nn.softmax(network(source.images)).numpy()
        energies = []
        for i, image_id in enumerate(source.ids()):
            want, energy = solve_alpha_expansion(probabilities[i], source.images[i],
                                                 source.weak_labels[i], unary_weight=1.0,
                                                 potts_weight=0.5)
            np.testing.assert_array_equal(store.get(image_id), want)
            energies.append(energy / want.size)
        assert summary["stage_a_energy"] == pytest.approx(np.mean(energies), rel=1e-5)
        agree = np.mean([store.get(i) == d for i, d in zip(source.ids(), source.dense_labels)])
        assert summary["proposal_accuracy"] == pytest.approx(agree)
        assert store.rounds == round_number and len(store) == len(source)
    assert any((before[i] != store.get(i)).any() for i in source.ids())
    assert stage_a._dataset.options().autotune.enabled is False   # no wait at each round's end


def test_stage_a_runs_before_training_then_every_m_epochs(pool):
    source = tiny_source(count=4)
    for overlap in (False, True):
        network = tiny_network()
        store = ProposalStore()
        stage_a = StageA(source, network, store, every=2, batch_size=4, overlap=overlap,
                         progress=False, pool=pool)
        rounds = []

        class Spy(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                stage_a.wait()
                rounds.append(store.rounds)

        model = TrustRegionModel(network, epsilon=0.3)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        dataset = make_training_dataset(source, batch_size=2, seed=0, proposals=store.lookup)
        history = model.fit(dataset, epochs=5, steps_per_epoch=1, callbacks=[stage_a, Spy()],
                            verbose=0)
        if overlap:   # round 3 would serve epoch 5, after the last: not run
            assert rounds == [1, 1, 2, 2, 2]                 # epochs 0 (train begin), 2
        else:         # round 3 serves epoch 4 itself
            assert rounds == [1, 1, 2, 2, 3]                 # epochs 0 (train begin), 2, 4
        for key in ("stage_a_energy", "proposal_accuracy", "proposal_miou", "network_accuracy",
                    "network_miou", "proposal_changed_fraction"):
            assert key in history.history


def test_stage_b_pipeline_warps_proposals_with_the_image_and_seeds():
    source = tiny_source(count=4, size=16)
    rng = np.random.default_rng(0)
    source.weak_labels[:] = rng.integers(0, CLASSES, source.weak_labels.shape)   # dense "seeds"
    store = ProposalStore()
    # Proposal = seeds shifted by one class: after augmentation the relation must hold per pixel.
    store.update({i: (s + 1) % CLASSES for i, s in zip(source.ids(), source.weak_labels)})
    dataset = make_training_dataset(source, batch_size=4, augmentation=Augmentation.medical(),
                                    seed=1, proposals=store.lookup)
    changed = 0
    for images, y in dataset.take(3):
        y = y.numpy()
        seeds, proposals = y[..., 0].astype(int), y[..., 1].astype(int)
        inside = seeds != 254
        np.testing.assert_array_equal(proposals[inside], (seeds[inside] + 1) % CLASSES)
        assert (proposals[~inside] == 254).all()
        np.testing.assert_array_equal(y[..., 2:], images.numpy())
        changed += int((seeds != source.weak_labels[:4]).any())
    assert changed > 0                                         # augmentation did move pixels


def test_samples_without_a_proposal_train_on_their_seeds_only():
    source = tiny_source(count=2)
    store = ProposalStore()
    dataset = make_training_dataset(source, batch_size=2, shuffle=False, seed=0,
                                    proposals=store.lookup)
    _, y = next(iter(dataset))
    seeds, proposals = y[..., 0].numpy(), y[..., 1].numpy()
    np.testing.assert_array_equal(proposals, seeds)           # only seed pixels carry a label


def test_stage_a_survives_nan_predictions_with_seed_only_proposals(pool):
    source = tiny_source(count=2)
    inputs = keras.Input((16, 16, 1))
    nan_network = keras.Model(inputs, keras.layers.Lambda(
        lambda x: tf.fill(tf.concat([tf.shape(x)[:3], [CLASSES]], 0), np.nan))(inputs))
    store = ProposalStore()
    stage_a = StageA(source, nan_network, store, batch_size=2, progress=False, pool=pool)
    with pytest.warns(RuntimeWarning, match="image '0'.*non-finite"):
        summary = stage_a.run_round()
    proposal = store.get("0")
    assert ((proposal == 255) | (proposal == source.weak_labels[0])).all()
    assert np.isnan(summary["stage_a_energy"])


def test_docstring_examples():
    for module in (robust_ce, trust_region, trust_region_stage_a):
        result = doctest.testmod(module)
        assert result.attempted >= 3 and result.failed == 0


# --- the trainer --------------------------------------------------------------------------------


def test_train_py_trust_region_logs_energies_and_draws_proposals(tmp_path):
    from keras_regseg.training.trainer import train

    config = tiny_trust_region_config(tmp_path, num_val=4, num_grid_images=2, processes=1)
    result = train(config, verbose=0)
    history = json.load(open(tmp_path / "run" / "metrics.json"))["history"]
    for key in ("stage_a_energy", "proposal_accuracy", "potts_energy", "val_potts_energy",
                "epsilon", "loss"):
        assert len(history[key]) == 2, key
    assert all(0 <= v <= 1 for v in history["proposal_accuracy"])
    assert os.path.exists(tmp_path / "run" / "validation_grid.png")
    assert "miou" in result.metrics


@pytest.mark.parametrize("num_train, steps_per_epoch, shards, want", [
    (8, 2, 1, 5),       # an epoch is one pass: every 5 epochs
    (8, 8, 1, 1),       # four passes an epoch: every epoch
    (40, 1, 1, 50),     # a tenth of a pass an epoch: every 50 epochs
    (40, 1, 2, 50),     # a worker's shard: still passes over the whole set
])
def test_stage_a_every_counts_passes_over_the_training_set(num_train, steps_per_epoch, shards,
                                                           want):
    import dataclasses

    from keras_regseg.methods.latent_solve import close_shared_pool
    from keras_regseg.methods.registry import prepare_method
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import build_training_data
    from keras_regseg.data.shard import ShardSource

    config = TrainConfig.from_dict({
        "method": "trust_region", "data": {"size": 16, "num_train": num_train, "num_val": 2},
        "training": {"iterations": steps_per_epoch, "steps_per_epoch": steps_per_epoch,
                     "batch_size": 4},
        "trust_region": {"every": 5, "processes": 0}})
    data = build_training_data(config.data)
    if shards > 1:
        data = dataclasses.replace(data, train=ShardSource(data.train, shards, 0))
    try:
        setup = prepare_method(config, tiny_network(), data)
    finally:
        close_shared_pool()   # the setup started the process-wide pool (in-process here)
    stage_a = next(c for c in setup.callbacks if isinstance(c, StageA))
    assert stage_a.every == want


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
    from test_trust_region import tiny_network, tiny_source
    from keras_regseg.data.pipeline import make_training_dataset
    from keras_regseg.methods.trust_region_model import TrustRegionModel
    from keras_regseg.methods.proposal_store import ProposalStore
    from keras_regseg.methods.trust_region_stage_a import StageA
    from keras_regseg.solvers import SolverPool

    # Both replicas see the same 4 images (per-replica means then equal the global one).
    one = tiny_source(count=4)
    source = tiny_source(count=8)
    for array in (source.images, source.weak_labels, source.dense_labels):
        array[4:] = array[:4]
    weights = tiny_network().get_weights()
    pool = SolverPool(processes=2)

    def train(strategy):
        with strategy.scope():
            network = tiny_network()
            network.set_weights(weights)
            model = TrustRegionModel(network, epsilon=0.3, learn_epsilon=True)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        store = ProposalStore()
        stage_a = StageA(source, network, store, every=1, batch_size=4, overlap=False,
                         potts_weight=0.5, unary_weight=1.0, progress=False, pool=pool)
        data = make_training_dataset(source, batch_size=8, shuffle=False, seed=0,
                                     proposals=store.lookup)
        history = model.fit(data, epochs=2, steps_per_epoch=1, callbacks=[stage_a], verbose=0)
        return (model.network.get_weights(), history.history["loss"],
                history.history["epsilon"], store.get("0").tolist())

    single = train(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored = train(strategy)
    pool.close()
    print(json.dumps({{
        "replicas": strategy.num_replicas_in_sync,
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(single[0], mirrored[0])),
        "weight_change": max(float(np.abs(a - b).max()) for a, b in zip(single[0], weights)),
        "losses": [single[1], mirrored[1]], "epsilons": [single[2], mirrored[2]],
        "same_proposals": single[3] == mirrored[3]}}))
""")


def test_mirrored_strategy_matches_a_single_device():
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
    assert report["same_proposals"]
    np.testing.assert_allclose(*report["losses"], rtol=1e-5)
    np.testing.assert_allclose(*report["epsilons"], rtol=1e-5)
    assert report["epsilons"][0][0] != pytest.approx(0.3)      # the error model learned


def test_configs_load_and_bad_values_name_the_key(tmp_path):
    from keras_regseg.training.config import ConfigError, TrainConfig

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
    for name in ("trust_region_synthetic", "trust_region_acdc", "trust_region_voc",
                 "adm_synthetic", "adm_acdc", "adm_voc"):
        config = TrainConfig.from_yaml(os.path.join(root, f"{name}.yaml"))
        assert config.method == name.rsplit("_", 1)[0]
    assert TrainConfig.from_yaml(os.path.join(root, "trust_region_voc.yaml")).trust_region.epsilon \
        == 0.944
    for key, value in (("trust_region.epsilon", 1.5), ("trust_region.every", 0),
                       ("trust_region.potts_weight", -1.0), ("adm.gamma", -0.5),
                       ("adm.processes", -2)):
        section, name = key.split(".")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            TrainConfig.from_dict({section: {name: value}}, source="x.yaml")


def test_warm_start_gives_each_solve_the_previous_round_of_its_image(pool):
    source = tiny_source(count=4)
    store = ProposalStore()
    calls = []

    class RecordingPool:
        def solve_batch(self, probabilities, images, seeds, ids=None, initial_labels=None,
                        **settings):
            calls.append((list(ids), initial_labels, settings))
            return pool.solve_batch(probabilities, images, seeds, ids, initial_labels, **settings)

    stage_a = StageA(source, tiny_network(), store, batch_size=4, warm_start=True,
                     energy="authors", unary_weight=0.05, potts_weight=100.0, progress=False,
                     pool=RecordingPool())
    stage_a.run_round()
    first = {i: store.get(i).copy() for i in source.ids()}
    stage_a.run_round()
    (ids1, initial1, settings1), (ids2, initial2, _) = calls
    assert initial1 == [None] * 4                               # nothing to start from yet
    for image_id, initial in zip(ids2, initial2):
        np.testing.assert_array_equal(initial, first[image_id])
    assert settings1["energy"] == "authors" and settings1["unary_weight"] == 0.05


def test_authors_energy_trains_end_to_end_from_the_config(tmp_path):
    from keras_regseg.training.config import ConfigError, TrainConfig
    from keras_regseg.training.trainer import train

    config = tiny_trust_region_config(tmp_path, num_val=2, num_grid_images=1, processes=0,
                                      energy="authors", lambda_weight=0.05, warm_start=True)
    train(config, verbose=0)
    history = json.load(open(tmp_path / "run" / "metrics.json"))["history"]
    assert all(0 <= v <= 1 for v in history["proposal_miou"])
    assert all(np.isfinite(v) and v < 5 for v in history["loss"])   # per labeled pixel
    with pytest.raises(ConfigError, match=r"trust_region\.energy"):
        TrainConfig.from_dict({"trust_region": {"energy": "exact"}}, source="x.yaml")


def test_the_model_and_the_config_share_stage_b_defaults():
    import inspect

    from keras_regseg.methods.trust_region import TrustRegionConfig

    parameters = inspect.signature(TrustRegionModel).parameters
    config = TrustRegionConfig()
    assert (config.normalization, config.proposal_weight) == ("per_term", 30.0)
    assert parameters["normalization"].default == config.normalization
    assert parameters["proposal_weight"].default == config.proposal_weight
