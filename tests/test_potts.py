"""Potts energy of hard labelings: loop reference, numpy/TF twins, metric."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.losses.potts import PottsEnergy, potts_energy, potts_energy_np
from keras_regseg.losses.targets import pack_targets

RNG = np.random.RandomState(1)


def loop_potts(labels, image):
    """Reference: sum over undirected 8-neighbour pairs inside the image, explicit loops."""
    height, width = labels.shape
    inside = labels != PAD_INDEX
    pairs = []
    for y in range(height):
        for x in range(width):
            for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                yq, xq = y + dy, x + dx
                if 0 <= yq < height and 0 <= xq < width and inside[y, x] and inside[yq, xq]:
                    d2 = float(np.sum((image[y, x] - image[yq, xq]) ** 2))
                    pairs.append((d2, math.hypot(dy, dx), labels[y, x] != labels[yq, xq]))
    sigma2 = np.mean([p[0] for p in pairs])
    return sum(math.exp(-d2 / (2 * sigma2)) / dist for d2, dist, cut in pairs if cut)


def case(batch=3, height=7, width=6, channels=3, classes=3):
    labels = RNG.randint(0, classes, (batch, height, width))
    labels[1, :2] = PAD_INDEX
    labels[2, :, :1] = PAD_INDEX
    return labels, RNG.rand(batch, height, width, channels)


@pytest.mark.parametrize("channels", [1, 3])
def test_tf_and_numpy_match_the_loop_reference(channels):
    labels, image = case(channels=channels)
    expected = [loop_potts(labels[b], image[b]) for b in range(len(labels))]
    np.testing.assert_allclose(potts_energy(tf.constant(labels), tf.constant(image)).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(potts_energy_np(labels, image), expected, rtol=1e-10)
    assert potts_energy_np(labels[0], image[0]) == pytest.approx(expected[0], rel=1e-10)


def test_known_answer_constant_labeling_and_weight():
    image = np.zeros((1, 2, 2, 1))
    labels = np.array([[[0, 1], [0, 1]]])
    # Constant image: w = 1 / dist; cut edges: 2 horizontal + 2 diagonal.
    assert float(potts_energy(labels, image)[0]) == pytest.approx(2 + 2 / math.sqrt(2))
    assert float(potts_energy(labels, image, weight=80.0)[0]) == pytest.approx(80 * (2 + 2 / math.sqrt(2)))
    noisy_image = RNG.rand(1, 5, 5, 3)
    assert float(potts_energy(np.full((1, 5, 5), 2), noisy_image)[0]) == 0.0


def test_valid_argument_equals_pad_labels():
    labels, image = case()
    padded = labels == PAD_INDEX
    relabelled = np.where(padded, 0, labels)
    np.testing.assert_allclose(
        potts_energy(relabelled, image, valid=~padded).numpy(), potts_energy(labels, image).numpy(), rtol=1e-12)
    np.testing.assert_allclose(potts_energy_np(relabelled, image, valid=~padded), potts_energy_np(labels, image))


def test_metric_is_mean_energy_per_valid_pixel_of_the_argmax():
    labels, image = case()
    weak = np.where(labels == PAD_INDEX, PAD_INDEX, 255)
    logits = RNG.randn(*labels.shape, 3).astype("float32")
    hard = np.where(labels == PAD_INDEX, PAD_INDEX, logits.argmax(-1))
    energies = potts_energy_np(hard, image.astype("float32"))
    per_pixel = energies / (labels != PAD_INDEX).sum(axis=(1, 2))
    metric = PottsEnergy()
    metric.update_state(pack_targets(weak, image), logits)
    assert float(metric.result()) == pytest.approx(per_pixel.mean(), rel=1e-5)
    metric.update_state(pack_targets(weak[:1], image[:1]), logits[:1], sample_weight=np.array([2.0]))
    assert float(metric.result()) == pytest.approx((per_pixel.sum() + 2 * per_pixel[0]) / 5, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    raw = PottsEnergy(per_pixel=False)
    raw.update_state(pack_targets(weak, image), logits)
    assert float(raw.result()) == pytest.approx(energies.mean(), rel=1e-5)


def test_metric_config_round_trip_and_bad_input():
    metric = PottsEnergy(weight=2.0, per_pixel=False)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert (restored.weight, restored.per_pixel) == (2.0, False)
    labels, image = case()
    with pytest.raises(ValueError, match="differ in size"):
        metric.update_state(pack_targets(labels, image), np.zeros((3, 5, 6, 3), "float32"))
    with pytest.raises(ValueError, match="weight"):
        PottsEnergy(weight=float("nan"))
    bad = image.copy(); bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        potts_energy_np(labels, bad)
