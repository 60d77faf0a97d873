"""Dense CRF loss and the TensorFlow permutohedral lattice: brute force, gradients, invariances, bad input."""

import keras
import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.losses.dense_crf import DenseCRFLoss, bilinear_resize, dense_crf_energy, dense_crf_features
from keras_regseg.losses.permutohedral import (CALIBRATION_POINTS, PermutohedralLattice,
                                               _embedding_matrix, _exact_rows, _index_pairs,
                                               _sort_columns_descending, gaussian_filter_bruteforce)
from keras_regseg.losses.targets import pack_targets

RNG = np.random.RandomState(0)


def natural_images(batch, side, channels, rng=RNG):
    """Smooth shading plus a blob-shaped object and a little noise, in [0, 1]."""
    images = []
    for _ in range(batch):
        shade = ndi.gaussian_filter(rng.rand(side, side, channels), (side / 8, side / 8, 0))
        shade = (shade - shade.min()) / (np.ptp(shade) + 1e-9)
        blob = ndi.gaussian_filter(rng.rand(side, side), side / 6) > 0.5
        image = 0.5 * shade + 0.4 * blob[..., None] * rng.rand(channels) + 0.03 * rng.rand(side, side, channels)
        images.append(np.clip(image, 0, 1))
    return np.stack(images)


def relative_error(approx, exact):
    return np.linalg.norm(approx - exact) / np.linalg.norm(exact)


def finite_differences(function, x, eps=1e-6):
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (float(function(tf.constant(plus))) - float(function(tf.constant(minus)))) / (2 * eps)
    return numeric


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_lattice_reproduces_gaussian_mass_on_dense_clouds(dim):
    # Uncalibrated lattice: checks the mass constant and the untruncated blur.
    points = RNG.uniform(-3.0, 3.0, (1, 3000, dim))
    centre = np.where(np.all(np.abs(points[0]) < 0.7, axis=1))[0]
    ones = np.ones((1, 3000, 1))
    approx = PermutohedralLattice(points).filter(ones).numpy()[0, centre, 0]
    exact = gaussian_filter_bruteforce(points, ones).numpy()[0, centre, 0]
    assert abs(np.mean(approx / exact) - 1) < 0.04
    assert relative_error(approx, exact) < 0.06


def adams_simplices(points):
    """Each point's enclosing simplex as a frozenset of integer lattice vertices, the way
    Adams et al. find it (rank by pairwise comparison, then fix the remainder sum)."""
    d = points.shape[-1]
    dp1 = d + 1
    elevated = points @ _embedding_matrix(d)
    simplices = []
    for e in elevated:
        rem0 = np.round(e / dp1) * dp1
        residual = e - rem0
        rank = np.array([np.sum(residual > residual[i]) for i in range(dp1)])
        total = int(round(rem0.sum() / dp1))
        if total > 0:    # too high: lower the coordinates ranked last
            lowered = rank >= dp1 - total
            rem0[lowered] -= dp1
            rank = np.where(lowered, rank + total - dp1, rank + total)
        elif total < 0:  # too low: raise the coordinates ranked first
            raised = rank < -total
            rem0[raised] += dp1
            rank = np.where(raised, rank + total + dp1, rank + total)
        simplices.append(frozenset(
            tuple(int(x) for x in rem0 + np.where(rank <= d - k, k, k - dp1)) for k in range(dp1)))
    return simplices


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_lattice_vertices_are_those_of_each_point_simplex(dim):
    # The lattice hashes points by simplex, then the simplices' vertices: points get the
    # same vertices exactly when their simplices (found point by point) are the same, and
    # the occupied vertices are those of the simplices.
    points = np.random.RandomState(dim).uniform(-2.0, 2.0, (1, 400, dim))
    lattice = PermutohedralLattice(points)
    expected = adams_simplices(points[0])
    found = [frozenset(row) for row in lattice.vertex_index.numpy()]
    assert all(len(vertices) == dim + 1 for vertices in found)
    same_expected = np.array([[a == b for b in expected] for a in expected])
    same_found = np.array([[a == b for b in found] for a in found])
    np.testing.assert_array_equal(same_found, same_expected)
    assert int(lattice.occupied) == len(set().union(*expected)) == len(set().union(*found))


@pytest.mark.parametrize("channels", [1, 3])
def test_calibration_on_a_subsample_of_large_images_matches_the_full_sums(channels):
    side = 192   # 36864 points: every fourth point is summed exactly
    assert side * side > 2 * CALIBRATION_POINTS - 1
    images = natural_images(2, side, channels, rng=np.random.RandomState(channels))
    features = dense_crf_features(tf.constant(images), 15.0, 75.0)
    lattice = PermutohedralLattice(features)
    ones = tf.ones([2, side * side, 1], tf.float64)
    filtered = lattice.filter(ones)
    scale = lattice.calibration_scale(filtered, ones, samples=32).numpy()
    index = np.round(np.linspace(0, side * side - 1, 32)).astype(int)
    exact = _exact_rows(tf.gather(features, index, axis=1), features, ones).numpy()
    full = (exact - 1).sum(axis=(1, 2)) / (filtered.numpy()[:, index] - 1).sum(axis=(1, 2))
    assert np.all(np.abs(full - 1.0) > 0.01)   # a calibration that matters
    np.testing.assert_allclose(scale, full, rtol=5e-3)


@pytest.mark.parametrize("columns", [2, 4, 6, 10])
def test_the_sorting_network_sorts_as_top_k_ties_included(columns):
    values = np.random.RandomState(columns).randn(300, columns).astype(np.float32)
    values[:50, 1] = values[:50, 0]   # ties between two columns
    values[50:80] = 0.0               # a row of equal values
    expected_values, expected_order = tf.math.top_k(values, k=columns)
    sorted_values, order = _sort_columns_descending(tf.unstack(tf.constant(values), axis=-1))
    np.testing.assert_array_equal(tf.stack(sorted_values, -1).numpy(), expected_values.numpy())
    np.testing.assert_array_equal(tf.stack(order, -1).numpy(), expected_order.numpy())


def test_index_pairs_are_the_rows_and_entries_of_a_matrix_r_major():
    columns = np.array([[5, 0, 7], [2**31 - 1, 3, 1]], np.int32)
    pairs = _index_pairs(tf.constant(columns)).numpy()
    assert pairs.dtype == np.int32
    np.testing.assert_array_equal(pairs, [[0, 5], [1, 2**31 - 1], [0, 0], [1, 3], [0, 7], [1, 1]])


def test_lattice_rejects_more_features_than_its_keys_hold():
    with pytest.raises(ValueError, match="1 to 9 feature dimensions.*d = 10"):
        PermutohedralLattice(np.zeros((1, 4, 10), np.float32))


def test_lattice_operator_is_exactly_symmetric_and_batched():
    features = dense_crf_features(tf.constant(natural_images(2, 10, 3)), sigma_rgb=15.0, sigma_xy=4.0)
    lattice = PermutohedralLattice(tf.cast(features, tf.float64))
    u, v = RNG.rand(2, 100, 1), RNG.rand(2, 100, 1)
    u_wv = np.sum(u * lattice.filter(v).numpy(), axis=(1, 2))
    v_wu = np.sum(v * lattice.filter(u).numpy(), axis=(1, 2))
    np.testing.assert_allclose(u_wv, v_wu, rtol=1e-12)
    # One lattice for the batch gives each image the filter it gets alone.
    alone = PermutohedralLattice(tf.cast(features[1:], tf.float64)).filter(v[1:]).numpy()
    np.testing.assert_allclose(lattice.filter(v).numpy()[1:], alone, rtol=1e-10)


@pytest.mark.parametrize("channels, tolerance", [(1, 0.05), (3, 0.08)])
def test_ws_energy_and_gradient_match_brute_force(channels, tolerance):
    side, sigma_xy, sigma_rgb = 20, 8.0, 15.0
    images = natural_images(2, side, channels)
    probs = tf.nn.softmax(RNG.randn(2, side, side, 4) * 2).numpy()
    features = dense_crf_features(tf.constant(images), sigma_rgb, sigma_xy)
    s = probs.reshape(2, -1, 4)
    ws_exact = gaussian_filter_bruteforce(features, s).numpy()
    energy_exact = gaussian_filter_bruteforce(features, np.ones((2, side * side, 1))).numpy().sum(axis=(1, 2)) \
        - np.sum(s * ws_exact, axis=(1, 2))
    x = tf.Variable(probs)
    with tf.GradientTape() as tape:
        energy = dense_crf_energy(x, tf.constant(images), None, sigma_rgb, sigma_xy)
        total = tf.reduce_sum(energy)
    gradient = tape.gradient(total, x).numpy().reshape(2, -1, 4)
    np.testing.assert_allclose(energy.numpy(), energy_exact, rtol=0.02)
    assert relative_error(-gradient / 2, ws_exact) < tolerance  # gradient = -2 W S


def test_energy_gradient_matches_finite_differences():
    images = natural_images(2, 7, 3)[:, :6]
    probs = tf.nn.softmax(RNG.randn(2, 6, 7, 3)).numpy()
    valid = np.ones((2, 6, 7), bool)
    valid[1, :, -2:] = False

    def energy_sum(p):
        return tf.reduce_sum(dense_crf_energy(p, tf.constant(images), tf.constant(valid), 15.0, 3.0))

    x = tf.Variable(probs)
    with tf.GradientTape() as tape:
        value = energy_sum(x)
    analytic = tape.gradient(value, x).numpy()
    numeric = finite_differences(tf.function(energy_sum), probs)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert np.all(analytic[1][~valid[1]] == 0)


def test_loss_gradient_through_softmax_and_downscaling_matches_finite_differences():
    images = natural_images(1, 10, 1)[:, :8]
    labels = np.full((1, 8, 10), 255)
    labels[0, :, -2:] = PAD_INDEX
    y_true = tf.cast(pack_targets(labels, images), tf.float64)
    logits = RNG.randn(1, 8, 10, 3)
    loss = DenseCRFLoss(weight=1.0, sigma_xy=6.0, scale_factor=0.5, dtype="float64")
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(y_true, x)
    analytic = tape.gradient(value, x).numpy()
    numeric = finite_differences(tf.function(lambda z: loss(y_true, z)), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("size", [(4, 5), (3, 7), (16, 20)])
def test_bilinear_resize_equals_tf_image_resize_in_float64(size):
    x = RNG.rand(2, 8, 10, 3)
    resized = bilinear_resize(tf.constant(x), size)
    assert resized.dtype == tf.float64
    np.testing.assert_allclose(resized.numpy(), tf.image.resize(x, size).numpy(), atol=1e-6)


def test_zero_for_constant_labeling():
    images = natural_images(2, 16, 3)
    y_true = pack_targets(np.full((2, 16, 16), 255), images)
    constant = np.zeros((2, 16, 16, 4), "float32")
    constant[..., 1] = 30.0
    assert float(DenseCRFLoss(weight=1.0)(y_true, constant)) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("channels, tolerance", [(1, 0.02), (3, 0.04)])
def test_unchanged_by_translation_and_flip_with_the_softmax(channels, tolerance):
    side, margin = 20, 8
    images = natural_images(1, side, channels)
    logits = RNG.randn(1, side, side, 4) * 2
    loss = DenseCRFLoss(weight=1.0, sigma_xy=8.0, scale_factor=1.0, dtype="float64")
    values = []
    for dy, dx, flip in [(0, 0, False), (3, 5, False), (7, 2, False), (0, 0, True), (4, 1, True)]:
        image, logit = (images[:, :, ::-1], logits[:, :, ::-1]) if flip else (images, logits)
        canvas = np.zeros((1, side + margin, side + margin, channels))
        canvas_logits = RNG.randn(1, side + margin, side + margin, 4)  # padding content must not matter
        labels = np.full((1, side + margin, side + margin), PAD_INDEX)
        canvas[:, dy:dy + side, dx:dx + side] = image
        canvas_logits[:, dy:dy + side, dx:dx + side] = logit
        labels[:, dy:dy + side, dx:dx + side] = 255
        values.append(float(loss(tf.cast(pack_targets(labels, canvas), tf.float64), canvas_logits)))
    exact_reference = values[0]
    assert np.ptp(values) / exact_reference < tolerance


def test_loss_is_weight_times_energy_per_valid_pixel_broadcast():
    images = natural_images(2, 12, 1).astype("float32").astype("float64")  # as packed in y_true
    labels = np.full((2, 12, 12), 255)
    labels[0, :3] = PAD_INDEX
    logits = RNG.randn(2, 12, 12, 3)
    loss = DenseCRFLoss(weight=0.5, scale_factor=1.0, dtype="float64")
    per_pixel = loss.call(tf.cast(pack_targets(labels, images), tf.float64), tf.constant(logits)).numpy()
    energy = dense_crf_energy(tf.nn.softmax(logits), tf.constant(images), tf.constant(labels != PAD_INDEX),
                              15.0, 100.0 / 513 * 12).numpy()   # sigma_xy follows the image size
    expected = 0.5 * energy / (labels != PAD_INDEX).sum(axis=(1, 2))
    np.testing.assert_allclose(per_pixel, np.broadcast_to(expected[:, None, None], (2, 12, 12)), rtol=1e-10)


def test_default_bandwidths_are_rloss_on_voc_crops_and_follow_the_image_size():
    from keras_regseg.losses.dense_crf import default_scale_factor, default_sigma_xy

    loss = DenseCRFLoss()
    sigma_xy, scale = loss.bandwidths(513, 513)
    assert sigma_xy == pytest.approx(100.0) and scale == pytest.approx(0.5, abs=0.002)
    assert loss.bandwidths(128, 128) == (pytest.approx(100 / 513 * 128), 1.0)
    assert DenseCRFLoss(sigma_xy=100.0, scale_factor=0.5).bandwidths(128, 128) == (100.0, 0.5)
    assert default_sigma_xy(64, 200) == default_sigma_xy(200, 10)   # the longer side counts
    assert default_scale_factor(1024, 300) == pytest.approx(0.25)
    # Sizes known only at run time give the same value as static ones.
    images = natural_images(1, 20, 1).astype("float32")
    y_true = pack_targets(np.full((1, 20, 20), 255), images)
    logits = tf.constant(RNG.randn(1, 20, 20, 3).astype("float32"))
    dynamic = tf.function(lambda y, x: loss(y, x), input_signature=[
        tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([None, None, None, 3])])
    assert float(dynamic(y_true, logits)) == pytest.approx(float(loss(y_true, logits)), rel=1e-5)


def test_bad_input_raises_clear_errors():
    images = natural_images(1, 8, 3)
    labels = np.full((1, 8, 8), 255)
    logits = RNG.randn(1, 8, 8, 2).astype("float32")
    loss = DenseCRFLoss()
    with pytest.raises(ValueError, match="differ in size"):
        loss(pack_targets(labels, images), logits[:, 1:])
    nan_logits = logits.copy(); nan_logits[0, 0, 0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"logits \(y_pred\) have NaN"):
        loss(pack_targets(labels, images), nan_logits)
    with pytest.raises(ValueError, match="needs the image"):
        loss(labels[..., None].astype("float32"), logits)
    for kwargs in ({"sigma_rgb": 0.0}, {"sigma_xy": -1.0}, {"scale_factor": 0.0}, {"scale_factor": 1.5},
                   {"weight": -2.0}, {"calibration_samples": -1}):
        with pytest.raises(ValueError):
            DenseCRFLoss(**kwargs)


def test_config_round_trip_and_model_fit():
    loss = DenseCRFLoss(weight=1e-3, sigma_rgb=10.0, sigma_xy=30.0, scale_factor=1.0, calibration_samples=16)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    images = natural_images(4, 12, 1).astype("float32")
    y_true = pack_targets(np.full((4, 12, 12), 255), images).numpy()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=restored, jit_compile=False)
    before = model.evaluate(images, y_true, verbose=0)
    model.fit(images, y_true, epochs=10, batch_size=4, verbose=0)
    assert model.evaluate(images, y_true, verbose=0) < 0.75 * before


def test_default_weight_keeps_the_balance_with_cross_entropy_at_any_image_size():
    """Same scene at two sizes, the bandwidth a fixed fraction of the image: the default
    weight gives the same loss per pixel (as the cross-entropy is); a fixed weight does not."""
    from keras_regseg.losses.dense_crf import DEFAULT_WEIGHT
    from keras_regseg.losses.targets import pack_targets

    def scene(side):
        image = np.zeros((1, side, side, 1), np.float32)
        image[:, :, side // 2:] = 1.0
        labels = (image[..., 0] > 0.5).astype(np.float32)
        logits = np.stack([-10 * labels, 10 * labels], -1)   # a perfect, confident labeling
        logits[:, side // 4:side // 2, :side // 4] = [-10.0, 10.0]   # plus a wrong square
        return pack_targets(np.full((1, side, side), 255), image), logits

    small, large = scene(32), scene(64)
    default = DenseCRFLoss()
    ratio = float(default(*large)) / float(default(*small))
    assert ratio == pytest.approx(1.0, abs=0.1)
    fixed = DenseCRFLoss(weight=DEFAULT_WEIGHT)
    assert float(fixed(*large)) / float(fixed(*small)) == pytest.approx(4.0, rel=0.1)
