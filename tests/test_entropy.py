"""Entropy minimization: the loss's value, gradient and pixels, and ``--method entropy``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import seed_problem
from keras_regseg.constants import IGNORE_INDEX
from keras_regseg.losses import PartialCrossEntropy, pack_targets
from keras_regseg.losses.entropy import EntropyLoss
from keras_regseg.methods.registry import get


def reference_entropy(labels, logits):
    """Mean of -sum p log p / log K over the unlabeled pixels, by an explicit loop."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    values = [-(probs[index] * np.log(probs[index])).sum() / np.log(logits.shape[-1])
              for index in np.ndindex(labels.shape) if labels[index] == IGNORE_INDEX]
    return np.mean(values)


@pytest.fixture
def problem():
    labels, logits = seed_problem()
    return labels, 2.0 * logits


def test_value_is_the_mean_normalized_entropy_of_unlabeled_pixels(problem):
    labels, logits = problem
    expected = reference_entropy(labels, logits)
    assert float(EntropyLoss()(labels.astype("float32"), logits)) == pytest.approx(expected, rel=1e-5)
    assert float(EntropyLoss(weight=0.1)(labels.astype("float32"), logits)) == pytest.approx(
        0.1 * expected, rel=1e-5)
    image = np.random.default_rng(1).random(labels.shape + (1,)).astype("float32")
    assert float(EntropyLoss()(pack_targets(labels, image), logits)) == pytest.approx(
        expected, rel=1e-5)


def test_seeds_and_padding_carry_no_entropy(problem):
    labels, logits = problem
    values = EntropyLoss().call(tf.constant(labels, tf.float32), logits).numpy()
    assert values.shape == labels.shape
    assert np.all(values[labels != IGNORE_INDEX] == 0.0)
    assert np.all(values[labels == IGNORE_INDEX] > 0.0)


def test_gradient_matches_finite_differences(problem):
    labels, logits = problem
    y = tf.constant(labels, tf.float32)
    loss = EntropyLoss()
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss.call(y, variable))
    gradient = tape.gradient(value, variable).numpy()
    eps = 1e-2
    for index in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 4, 1, 2)]:
        if labels[index[:3]] != IGNORE_INDEX:
            assert gradient[index] == 0.0
            continue
        shifted = logits.copy(); shifted[index] += eps
        plus = float(tf.reduce_mean(loss.call(y, shifted)))
        shifted[index] -= 2 * eps
        minus = float(tf.reduce_mean(loss.call(y, shifted)))
        assert gradient[index] == pytest.approx((plus - minus) / (2 * eps), rel=2e-2, abs=1e-5)


def test_bad_weight_is_named():
    with pytest.raises(ValueError, match="weight = -1.0; expected a finite number >= 0"):
        EntropyLoss(weight=-1.0)


def test_method_is_pce_plus_weighted_entropy(problem):
    from keras_regseg.training.config import TrainConfig

    labels, logits = problem
    config = TrainConfig.from_dict({"method": "entropy", "entropy": {"weight": 0.3}})
    network = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 1)])
    setup = get("entropy").setup(config, network=network)
    y = {"seeds": labels}
    expected = float(PartialCrossEntropy()(y, logits)) + 0.3 * reference_entropy(labels, logits)
    assert float(setup.model.loss_fn(y, logits)) == pytest.approx(expected, rel=1e-5)
    assert setup.targets.keys == ("seeds",) and get("entropy").finetunes
    with pytest.raises(ValueError, match="entropy.weight"):
        TrainConfig.from_dict({"method": "entropy", "entropy": {"weight": -2}})


def test_training_lowers_the_entropy_of_unlabeled_pixels(tmp_path):
    """The same fine-tuning with the entropy term leaves less entropy than pCE alone."""
    from keras_regseg.data.pipeline import make_training_dataset
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import build_training_data
    from keras_regseg.training.trainer import train

    tiny = {"data": {"name": "synthetic", "size": 32, "num_train": 16, "num_val": 4},
            "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
            "training": {"iterations": 12, "steps_per_epoch": 6, "batch_size": 4, "seed": 0},
            "optimizer": {"learning_rate": 0.05}}
    data = build_training_data(TrainConfig.from_dict(tiny).data)
    images, y_true = next(iter(make_training_dataset(data.train, batch_size=8, seed=1)))
    entropies = {}
    for method, weight in (("pce", None), ("entropy", 3.0)):
        values = dict(tiny, method=method, output=str(tmp_path / method))
        if weight is not None:
            values["entropy"] = {"weight": weight}
        network = train(TrainConfig.from_dict(values), data=data, verbose=0).network
        entropies[method] = float(EntropyLoss()(y_true, network(images)))
    assert entropies["entropy"] < 0.8 * entropies["pce"], entropies
