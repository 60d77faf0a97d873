import numpy as np
import pytest
import tensorflow as tf

from helpers import seed_problem
from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.losses import CrossEntropy, PartialCrossEntropy, WeightedSumLoss, pack_targets


def reference_pce(labels, logits):
    """Mean of -log softmax over labeled pixels, by an explicit loop."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    values = [-np.log(probs[b, i, j, labels[b, i, j]])
              for b, i, j in np.ndindex(labels.shape) if 0 <= labels[b, i, j] < logits.shape[-1]]
    return np.mean(values)


@pytest.fixture
def problem():
    labels, logits = seed_problem()
    image = np.random.default_rng(0).random((2, 5, 6, 1)).astype("float32")
    return labels, logits, image


def test_pce_is_the_mean_over_labeled_pixels(problem):
    labels, logits, image = problem
    loss = PartialCrossEntropy()
    expected = reference_pce(labels, logits)
    assert float(loss(labels.astype("float32"), logits)) == pytest.approx(expected, rel=1e-5)
    # Packed targets (labels + image) give the same value.
    assert float(loss(pack_targets(labels, image), logits)) == pytest.approx(expected, rel=1e-5)


def test_pce_returns_per_pixel_values(problem):
    labels, logits, _ = problem
    values = PartialCrossEntropy().call(tf.constant(labels, tf.float32), logits)
    assert values.shape == labels.shape
    unlabeled = (labels == IGNORE_INDEX) | (labels == PAD_INDEX)
    assert np.all(values.numpy()[unlabeled] == 0.0)


def test_pce_without_any_seed_is_zero_and_finite():
    labels = np.full((1, 4, 4), IGNORE_INDEX, "float32")
    logits = np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype("float32")
    value = PartialCrossEntropy()(labels, logits)
    assert float(value) == 0.0


def test_custom_ignore_value_is_honoured():
    labels = np.array([[[4, 1], [4, 0]]], "float32")   # ACDC-style 4 = unannotated, K = 4... here K = 2
    logits = np.zeros((1, 2, 2, 5), "float32")
    # With K = 5 classes, 4 would be a class; ignore_index=4 must drop it.
    assert float(CrossEntropy(ignore_index=4)(labels, logits)) == pytest.approx(np.log(5), rel=1e-5)
    with_four = float(CrossEntropy()(labels, logits))
    assert with_four == pytest.approx(np.log(5), rel=1e-5)   # uniform logits: same value either way
    logits[..., 4] = 10.0
    assert float(CrossEntropy(ignore_index=4)(labels, logits)) > 9.0
    assert float(CrossEntropy()(labels, logits)) < float(CrossEntropy(ignore_index=4)(labels, logits))


def test_gradient_matches_finite_differences(problem):
    labels, logits, _ = problem
    logits = tf.Variable(logits.astype("float64"))
    loss = PartialCrossEntropy()
    y = tf.constant(labels, tf.float64)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss.call(y, logits))
    grad = tape.gradient(value, logits).numpy()
    base = logits.numpy()
    eps = 1e-6
    for index in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 4, 1, 2)]:
        shifted = base.copy(); shifted[index] += eps
        plus = float(tf.reduce_mean(loss.call(y, tf.constant(shifted))))
        shifted[index] -= 2 * eps
        minus = float(tf.reduce_mean(loss.call(y, tf.constant(shifted))))
        assert grad[index] == pytest.approx((plus - minus) / (2 * eps), abs=1e-7)


def test_probabilities_input(problem):
    labels, logits, _ = problem
    probs = tf.nn.softmax(logits).numpy()
    from_probs = PartialCrossEntropy(from_logits=False)(labels.astype("float32"), probs)
    assert float(from_probs) == pytest.approx(reference_pce(labels, logits), rel=1e-4)


def test_losses_serialize():
    import keras

    loss = WeightedSumLoss([PartialCrossEntropy(ignore_index=4), CrossEntropy()], [1.0, 0.25])
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, WeightedSumLoss)
    assert restored.weights == [1.0, 0.25]
    assert restored.losses[0].ignore_index == 4
    y = np.array([[[0, 1], [4, 4]]], "float32"); logits = np.random.default_rng(2).normal(size=(1, 2, 2, 5)).astype("float32")
    assert float(restored(y, logits)) == pytest.approx(float(loss(y, logits)))


def test_weighted_sum_rejects_mismatched_weights():
    with pytest.raises(ValueError, match="one weight per loss"):
        WeightedSumLoss([PartialCrossEntropy()], [1.0, 2.0])
