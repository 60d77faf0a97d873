"""Grid CRF loss and contrast edge weights: brute force, invariants, gradients, bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.losses.contrast import grid_edge_weights, grid_edge_weights_np
from keras_regseg.losses.grid_crf import GridCRFLoss, grid_crf_energy
from keras_regseg.losses.potts import potts_energy_np
from keras_regseg.losses.targets import pack_targets

RNG = np.random.RandomState(0)


def reference_edges(image, valid):
    """All undirected 8-neighbour edges (p, q, w_pq) of one image, by explicit loops."""
    height, width = image.shape[:2]
    pairs = []
    for y in range(height):
        for x in range(width):
            for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                yq, xq = y + dy, x + dx
                if 0 <= yq < height and 0 <= xq < width and valid[y, x] and valid[yq, xq]:
                    pairs.append(((y, x), (yq, xq), float(np.sum((image[y, x] - image[yq, xq]) ** 2)),
                                  math.hypot(dy, dx)))
    sigma2 = np.mean([p[2] for p in pairs]) if pairs else 0.0
    return [(p, q, (math.exp(-d2 / (2 * sigma2)) if sigma2 > 0 else 1.0) / dist) for p, q, d2, dist in pairs]


def dense_affinity(edges, height, width):
    w = np.zeros((height * width, height * width))
    for (py, px), (qy, qx), weight in edges:
        w[py * width + px, qy * width + qx] = w[qy * width + qx, py * width + px] = weight
    return w


def finite_differences(function, x, eps=1e-6):
    """Central differences of a scalar function of an array."""
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (float(function(tf.constant(plus))) - float(function(tf.constant(minus)))) / (2 * eps)
    return numeric


def random_case(batch=2, height=6, width=7, channels=3, classes=4, pad=True):
    image = RNG.rand(batch, height, width, channels)
    labels = np.full((batch, height, width), 255)
    if pad:
        labels[0, :, -2:] = PAD_INDEX  # image 0 was padded on the right
    logits = RNG.randn(batch, height, width, classes) * 2
    return image, labels, logits


@pytest.mark.parametrize("channels", [1, 3])
def test_edge_weights_match_loop_reference_and_numpy_twin(channels):
    image, labels, _ = random_case(channels=channels)
    valid = labels != PAD_INDEX
    tf_maps = grid_edge_weights(tf.constant(image), tf.constant(valid)).numpy()
    np_maps = grid_edge_weights_np(image, valid)
    np.testing.assert_allclose(tf_maps, np_maps, rtol=1e-12)
    directions = {(0, 1): 0, (1, 0): 1, (1, 1): 2, (1, -1): 3}
    for b in range(image.shape[0]):
        expected = np.zeros_like(np_maps[b])
        for (py, px), (qy, qx), weight in reference_edges(image[b], valid[b]):
            expected[directions[(qy - py, qx - px)], py, px] = weight
        np.testing.assert_allclose(np_maps[b], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("height, width", [(1, 5), (5, 1), (1, 1), (2, 2)])
def test_thin_images_have_no_wrap_around_edges(height, width):
    image = RNG.rand(2, height, width, 3)
    maps = grid_edge_weights(tf.constant(image)).numpy()
    np.testing.assert_allclose(maps, grid_edge_weights_np(image), rtol=1e-12)
    expected_edges = height * (width - 1) + (height - 1) * width + 2 * (height - 1) * (width - 1)
    assert np.count_nonzero(maps[0]) == expected_edges


def test_each_image_gets_its_own_sigma():
    image, _, _ = random_case(pad=False)
    scaled = image.copy()
    scaled[1] *= 0.1  # lower contrast in image 1 only: its sigma shrinks by the same factor
    together = grid_edge_weights(tf.constant(scaled)).numpy()
    np.testing.assert_allclose(together, grid_edge_weights(tf.constant(image)).numpy(), rtol=1e-10)
    alone = grid_edge_weights(tf.constant(scaled[1:])).numpy()
    np.testing.assert_allclose(together[1:], alone, rtol=1e-12)


def test_constant_image_gets_uniform_weights_not_nan():
    image = np.full((1, 4, 5, 3), 0.7)
    maps = grid_edge_weights(tf.constant(image)).numpy()[0]
    assert np.all(np.isfinite(maps))
    np.testing.assert_allclose(maps[0, :, :-1], 1.0)
    np.testing.assert_allclose(maps[2, :-1, :-1], 1 / math.sqrt(2))
    assert np.all(maps[0, :, -1] == 0) and np.all(maps[3, :, 0] == 0)  # q outside the array
    np.testing.assert_array_equal(grid_edge_weights_np(image[0]), maps)
    fully_padded = grid_edge_weights(tf.constant(image), tf.zeros([1, 4, 5], tf.bool)).numpy()
    assert np.all(fully_padded == 0)


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
def test_energy_matches_brute_force_matrix_form(relaxation):
    image, labels, logits = random_case()
    valid = labels != PAD_INDEX
    probs = tf.nn.softmax(logits).numpy()
    energy = grid_crf_energy(tf.constant(probs), tf.constant(image), tf.constant(valid), relaxation).numpy()
    for b in range(image.shape[0]):
        edges = reference_edges(image[b], valid[b])
        s = probs[b].reshape(-1, probs.shape[-1])
        if relaxation == "bilinear":
            w = dense_affinity(edges, *image.shape[1:3])
            expected = 0.5 * sum(s[:, k] @ w @ (1 - s[:, k]) for k in range(s.shape[1]))
        else:
            width = image.shape[2]
            expected = sum(wt * 0.5 * np.sum((s[py * width + px] - s[qy * width + qx]) ** 2)
                           for (py, px), (qy, qx), wt in edges)
        np.testing.assert_allclose(energy[b], expected, rtol=1e-10)


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
def test_zero_on_constant_labeling_and_potts_on_one_hot(relaxation):
    image, labels, _ = random_case()
    y_true = pack_targets(labels, image)
    constant = np.zeros((2, 6, 7, 4)); constant[..., 2] = 50.0
    loss = GridCRFLoss(weight=1.0, relaxation=relaxation, dtype="float64")
    assert float(loss(y_true, constant)) == pytest.approx(0.0, abs=1e-12)
    hard = RNG.randint(0, 4, (2, 6, 7))
    one_hot = tf.one_hot(hard, 4, dtype=tf.float64).numpy()
    valid = labels != PAD_INDEX
    energy = grid_crf_energy(tf.constant(one_hot), tf.constant(image), tf.constant(valid), relaxation).numpy()
    potts = [potts_energy_np(np.where(valid[b], hard[b], PAD_INDEX), image[b]) for b in range(2)]
    np.testing.assert_allclose(energy, potts, rtol=1e-12)


def test_loss_value_is_weight_times_energy_per_valid_pixel():
    image, labels, logits = random_case()
    valid = labels != PAD_INDEX
    loss = GridCRFLoss(weight=3.0, dtype="float64")
    per_pixel = loss.call(tf.cast(pack_targets(labels, image), tf.float64), tf.constant(logits))
    assert per_pixel.shape == (2, 6, 7)
    energy = grid_crf_energy(tf.nn.softmax(logits), tf.constant(image), tf.constant(valid)).numpy()
    expected = np.mean(3.0 * energy / valid.sum(axis=(1, 2)))
    assert float(loss(pack_targets(labels, image), logits)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
def test_gradient_matches_finite_differences(relaxation):
    image, labels, logits = random_case(channels=1, classes=3)
    y_true = tf.cast(pack_targets(labels, image), tf.float64)
    loss = GridCRFLoss(weight=2.0, relaxation=relaxation, dtype="float64")
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(y_true, x)
    analytic = tape.gradient(value, x).numpy()
    numeric = finite_differences(tf.function(lambda z: loss(y_true, z)), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)
    assert np.all(analytic[0][labels[0] == PAD_INDEX] == 0)  # padding takes no part


def test_padding_content_is_ignored():
    image, labels, logits = random_case()
    other_image, other_logits = image.copy(), logits.copy()
    pad = labels == PAD_INDEX
    other_image[pad] = RNG.rand(int(pad.sum()), 3)
    other_logits[pad] = RNG.randn(int(pad.sum()), 4) * 5
    loss = GridCRFLoss(dtype="float64")
    assert float(loss(pack_targets(labels, image), logits)) == pytest.approx(
        float(loss(pack_targets(labels, other_image), other_logits)), rel=1e-12)


def test_bad_input_raises_clear_errors():
    image, labels, logits = random_case()
    loss = GridCRFLoss()
    with pytest.raises(ValueError, match="differ in size"):
        loss(pack_targets(labels, image), logits[:, :5])
    with pytest.raises(ValueError, match="needs the image"):
        loss(labels.astype("float32"), logits)
    bad = image.copy(); bad[0, 1, 1, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf"):
        loss(pack_targets(labels, bad), logits)
    bad_logits = np.array(logits, copy=True); bad_logits[0, 2, 3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"logits \(y_pred\) have NaN"):
        loss(pack_targets(labels, image), bad_logits)
    with pytest.raises(ValueError, match="relaxation"):
        GridCRFLoss(relaxation="linear")
    with pytest.raises(ValueError, match="weight"):
        GridCRFLoss(weight=-1.0)


def test_config_round_trip_and_serialization():
    loss = GridCRFLoss(weight=0.25, relaxation="quadratic")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, GridCRFLoss)
    assert (restored.weight, restored.relaxation) == (0.25, "quadratic")
    assert GridCRFLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_model_fit_lowers_the_regularizer():
    image, labels, _ = random_case(batch=4, height=12, width=12, channels=1, pad=False)
    y_true = pack_targets(labels, image).numpy()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=GridCRFLoss(), jit_compile=False)
    before = model.evaluate(image, y_true, verbose=0)
    model.fit(image, y_true, epochs=10, batch_size=4, verbose=0)
    assert model.evaluate(image, y_true, verbose=0) < 0.75 * before
