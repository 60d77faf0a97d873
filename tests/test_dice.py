"""DiceLoss: hand-computed values, ignored pixels, gradient, and full supervision's default loss."""

import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.losses import CrossEntropy, DiceLoss, cross_entropy_plus_dice, soft_dice_loss


def hand_dice_loss(labels, probabilities, smooth=1e-5):
    """The WSL4MIS formula written with numpy loops over classes."""
    labels = np.asarray(labels).ravel()
    probabilities = np.asarray(probabilities, np.float64).reshape(labels.size, -1)
    keep = labels < probabilities.shape[1]
    labels, probabilities = labels[keep], probabilities[keep]
    dices = []
    for k in range(probabilities.shape[1]):
        s, t = probabilities[:, k], (labels == k).astype(np.float64)
        dices.append((2 * (s * t).sum() + smooth) / ((s * s).sum() + (t * t).sum() + smooth))
    return 1.0 - float(np.mean(dices))


def random_case(seed, shape=(2, 5, 6), classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, shape)
    labels[rng.random(shape) < 0.2] = 255        # unlabeled
    labels[0, 0, :] = 254                        # crop padding
    logits = rng.normal(size=shape + (classes,)).astype(np.float32)
    return labels, logits


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_loss_matches_the_hand_computed_formula(seed):
    labels, logits = random_case(seed)
    value = float(DiceLoss()(labels.astype(np.float32), logits))
    assert value == pytest.approx(hand_dice_loss(labels, softmax(logits)), rel=1e-5)


def test_unlabeled_and_padding_pixels_change_nothing():
    labels, logits = random_case(3)
    other_logits = logits.copy()
    unlabeled = labels >= 254
    other_logits[unlabeled] = 50.0 * np.random.default_rng(9).normal(size=other_logits[unlabeled].shape)
    loss = DiceLoss()
    assert float(loss(labels.astype(np.float32), logits)) == pytest.approx(
        float(loss(labels.astype(np.float32), other_logits)), rel=1e-6)


def test_per_pixel_values_are_the_loss_broadcast():
    labels, logits = random_case(4)
    values = DiceLoss().call(tf.constant(labels, tf.float32), logits).numpy()
    assert values.shape == labels.shape
    assert np.allclose(values, values.flat[0])


def test_gradient_matches_finite_differences():
    labels, logits = random_case(5, shape=(1, 3, 4), classes=3)
    logits64 = logits.astype(np.float64)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = soft_dice_loss(labels, tf.nn.softmax(x))
    gradient = tape.gradient(value, x).numpy()
    step = 1e-3
    numeric = np.zeros_like(logits64)
    for index in np.ndindex(logits.shape):
        up, down = logits64.copy(), logits64.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (hand_dice_loss(labels, softmax(up))
                          - hand_dice_loss(labels, softmax(down))) / (2 * step)
    assert np.abs(gradient - numeric).max() < 2e-4
    assert np.abs(numeric).max() > 1e-3            # the check is not vacuous
    assert np.all(gradient[labels >= 254] == 0)     # unlabeled pixels get no gradient


def test_absent_class_costs_nothing_and_perfect_prediction_is_zero():
    labels = np.array([[[0, 0], [1, 1]]])
    probabilities = np.zeros((1, 2, 2, 3), np.float32)
    probabilities[0, 0, :, 0] = 1
    probabilities[0, 1, :, 1] = 1                  # class 2 absent and never predicted
    assert float(soft_dice_loss(labels, probabilities)) == pytest.approx(0.0, abs=1e-6)


def test_full_supervision_default_is_half_ce_plus_half_dice():
    from keras_regseg.methods.registry import prepare_method
    from keras_regseg.models import UNet
    from keras_regseg.training.config import TrainConfig

    network = UNet(num_classes=3, filters=(4, 8), dropout=0.0)
    labels, logits = random_case(6)
    y = labels.astype(np.float32)
    setup = prepare_method(TrainConfig.from_dict({"method": "full"}), network)
    assert setup.targets.keys == ("dense",)
    default = setup.model.loss_fn
    expected = 0.5 * (float(CrossEntropy()(y, logits)) + float(DiceLoss()(y, logits)))
    assert float(default(y, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(cross_entropy_plus_dice()(y, logits)) == pytest.approx(expected, rel=1e-5)
    ce_only = prepare_method(TrainConfig.from_dict({"method": "full", "full": {"loss": "ce"}}),
                             network).model.loss_fn
    assert float(ce_only(y, logits)) == pytest.approx(float(CrossEntropy()(y, logits)), rel=1e-6)


def test_dice_loss_round_trips_through_its_config():
    loss = DiceLoss(ignore_index=4, smooth=1e-3)
    again = DiceLoss.from_config(loss.get_config())
    assert (again.ignore_index, again.smooth) == (4, 1e-3)
