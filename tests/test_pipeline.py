"""Augmentation and tf.data pipeline: alignment, padding, shapes, determinism, errors.

Alignment tests build images whose channels hold each pixel's own (row, col)
coordinates and a label map that is a function of (row, col). After any
geometric transform, every label must still be the function of the
coordinates the image carries at that pixel; a one-pixel misalignment breaks it.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.data.augment import Augmentation, augment_sample
from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import make_eval_dataset, make_training_dataset
from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.ops.padding import pad_to_multiple

COORD_SCALE = 64.0  # image channel value = coordinate / COORD_SCALE, so values stay in [0, 1)


def label_of(rows, cols):
    """Label as a function of integer coordinates: neighbours always differ."""
    return (rows * 31 + cols * 7) % 250


def coordinate_sample(height, width, ignore_fraction=0.5, seed=0):
    """Image (row, col, 0.5) / scale, dense label = label_of, weak label = dense with holes."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows / COORD_SCALE, cols / COORD_SCALE, np.full(rows.shape, 0.5)], -1)
    dense = label_of(rows, cols)
    weak = dense.copy()
    weak[np.random.default_rng(seed).random(weak.shape) < ignore_fraction] = IGNORE_INDEX
    return {"image": image.astype(np.float32), "weak_label": weak.astype(np.int32),
            "dense_label": dense.astype(np.int32)}


def run(sample, augmentation, crop_size=None, seed=(0, 0)):
    out = augment_sample(sample, augmentation, crop_size, seed)
    return {k: np.asarray(v) for k, v in out.items()}


def assert_aligned(out, check):
    """Labels at ``check`` pixels equal ``label_of`` the coordinates the image carries there.

    Resampled coordinates are fractional: nearest neighbour takes the closest
    source pixel, so the label must be ``label_of(round(coords))``; within
    1e-3 of a rounding tie either neighbour is accepted.
    """
    coords = out["image"][..., :2] * COORD_SCALE
    dense = out["dense_label"]
    per_axis = []
    for c in (coords[..., 0], coords[..., 1]):
        near_tie = np.abs(c - np.floor(c) - 0.5) < 1e-3
        nearest = np.floor(c + 0.5)
        per_axis.append([np.where(near_tie, np.floor(c), nearest),
                         np.where(near_tie, np.ceil(c), nearest)])
    ok = np.zeros(dense.shape, bool)
    for rows in per_axis[0]:
        for cols in per_axis[1]:
            ok |= dense == label_of(rows.astype(np.int64), cols.astype(np.int64))
    assert check.sum() > 0
    bad = check & ~ok
    assert not bad.any(), f"{bad.sum()} misaligned pixels, e.g. at {np.argwhere(bad)[0]}"
    # The weak label is the dense one with holes: transformed alike.
    weak = out["weak_label"]
    labeled = (weak != IGNORE_INDEX) & (weak != PAD_INDEX)
    np.testing.assert_array_equal(weak[labeled], dense[labeled])
    np.testing.assert_array_equal(weak == PAD_INDEX, dense == PAD_INDEX)


def decoded_rows_cols(out):
    coords = np.rint(out["image"][..., :2] * COORD_SCALE).astype(int)
    return coords[..., 0], coords[..., 1]


# --- exact transforms: flips, rot90, crop ---------------------------------------------------

def test_flips_are_exact_and_both_outcomes_occur():
    sample = coordinate_sample(12, 9)
    rows, cols = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    for augmentation, flipped_rows, flipped_cols in (
            (Augmentation(hflip=True), rows, cols[:, ::-1]),
            (Augmentation(vflip=True), rows[::-1], cols)):
        outcomes = set()
        for seed in range(16):
            out = run(sample, augmentation, seed=(seed, 1))
            r, c = decoded_rows_cols(out)
            if np.array_equal(r, rows) and np.array_equal(c, cols):
                outcomes.add("identity")
            else:
                np.testing.assert_array_equal(r, flipped_rows)
                np.testing.assert_array_equal(c, flipped_cols)
                outcomes.add("flipped")
            np.testing.assert_array_equal(out["dense_label"], label_of(r, c))
            assert_aligned(out, np.ones(r.shape, bool))
        assert outcomes == {"identity", "flipped"}


def test_rot90_gives_each_quarter_turn_exactly():
    sample = coordinate_sample(10, 10)
    turns_seen = set()
    for seed in range(24):
        out = run(sample, Augmentation(rot90=True), seed=(seed, 2))
        r, c = decoded_rows_cols(out)
        matches = [k for k in range(4) if np.array_equal(
            r, np.rot90(sample["image"][..., 0] * COORD_SCALE, k).round())
            and np.array_equal(c, np.rot90(sample["image"][..., 1] * COORD_SCALE, k).round())]
        assert len(matches) == 1
        turns_seen.add(matches[0])
        np.testing.assert_array_equal(out["dense_label"], label_of(r, c))
    assert turns_seen == {0, 1, 2, 3}


def test_rot90_of_non_square_image_swaps_its_sides():
    out = run(coordinate_sample(6, 10), Augmentation(rot90=True), seed=(3, 3))
    assert out["image"].shape[:2] in ((6, 10), (10, 6))
    assert out["dense_label"].shape == out["image"].shape[:2]


def test_crop_of_larger_image_is_a_translated_window():
    sample = coordinate_sample(30, 26)
    offsets = set()
    for seed in range(8):
        out = run(sample, None, crop_size=(16, 12), seed=(seed, 4))
        r, c = decoded_rows_cols(out)
        assert out["image"].shape == (16, 12, 3)
        top, left = r[0, 0], c[0, 0]
        np.testing.assert_array_equal(r, top + np.arange(16)[:, None] + 0 * c)
        np.testing.assert_array_equal(c, left + np.arange(12)[None, :] + 0 * r)
        assert 0 <= top <= 30 - 16 and 0 <= left <= 26 - 12
        np.testing.assert_array_equal(out["dense_label"], label_of(r, c))
        offsets.add((top, left))
    assert len(offsets) > 1


def test_padding_uses_pad_index_and_pad_value():
    sample = coordinate_sample(20, 24)
    for seed in range(6):
        out = run(sample, Augmentation(image_pad_value=(-1.0, -2.0, -3.0)), crop_size=32,
                  seed=(seed, 5))
        pad = out["dense_label"] == PAD_INDEX
        assert pad.sum() == 32 * 32 - 20 * 24
        np.testing.assert_array_equal(out["weak_label"] == PAD_INDEX, pad)
        np.testing.assert_array_equal(out["image"][pad], np.tile([-1.0, -2.0, -3.0],
                                                                (pad.sum(), 1)))
        # The unpadded part is the whole image, translated.
        r, c = decoded_rows_cols(out)
        assert sorted(set(r[~pad].tolist())) == list(range(20))
        assert sorted(set(c[~pad].tolist())) == list(range(24))
        np.testing.assert_array_equal(out["dense_label"][~pad], label_of(r, c)[~pad])


def test_mean_pad_value_is_the_image_mean_colour():
    sample = coordinate_sample(8, 8)
    out = run(sample, Augmentation(image_pad_value="mean"), crop_size=12, seed=(0, 6))
    pad = out["dense_label"] == PAD_INDEX
    np.testing.assert_allclose(out["image"][pad],
                               np.tile(sample["image"].mean(axis=(0, 1)), (pad.sum(), 1)),
                               rtol=1e-6)


# --- resampling transforms: scale, rotation ---------------------------------------------------

def test_random_scale_keeps_labels_aligned_and_changes_size():
    sample = coordinate_sample(20, 16)
    sizes = set()
    for seed in range(6):
        out = run(sample, Augmentation(scale_range=(0.5, 2.0)), seed=(seed, 7))
        sizes.add(out["image"].shape[:2])
        assert not (out["dense_label"] == PAD_INDEX).any()
        assert_aligned(out, np.ones(out["dense_label"].shape, bool))
    assert len(sizes) > 1 and any(s[0] < 20 for s in sizes) and any(s[0] > 20 for s in sizes)


def test_rotation_keeps_labels_aligned_and_pads_corners():
    sample = coordinate_sample(24, 24)
    padded = 0
    for seed in range(6):
        out = run(sample, Augmentation(rotation_degrees=40), seed=(seed, 8))
        pad = out["dense_label"] == PAD_INDEX
        padded += pad.any()
        assert_aligned(out, ~pad)
        # Pixels from outside the image show the pad value (0), and only those.
        np.testing.assert_array_equal(out["image"][pad], 0.0)
    assert padded >= 3  # most angles uncover corners
    moved = [not np.allclose(run(sample, Augmentation(rotation_degrees=40), seed=(s, 8))["image"],
                             sample["image"]) for s in range(3)]
    assert all(moved)


def test_rotation_probability_zero_is_identity():
    sample = coordinate_sample(10, 10)
    out = run(sample, Augmentation(rotation_degrees=30, rotation_probability=0.0), seed=(1, 1))
    np.testing.assert_array_equal(out["image"], sample["image"])
    np.testing.assert_array_equal(out["dense_label"], sample["dense_label"])


@pytest.mark.parametrize("preset", [Augmentation.natural(), Augmentation.medical(), Augmentation(
    scale_range=(0.6, 1.7), hflip=True, vflip=True, rot90=True, rotation_degrees=30)])
def test_every_combination_stays_aligned(preset):
    sample = coordinate_sample(22, 18)
    for seed in range(5):
        out = run(sample, preset, crop_size=20, seed=(seed, 9))
        assert out["image"].shape == (20, 20, 3)
        pad = out["dense_label"] == PAD_INDEX
        assert_aligned(out, ~pad)
        pad_color = (sample["image"].mean(axis=(0, 1)) if preset.image_pad_value == "mean"
                     else np.zeros(3))
        np.testing.assert_allclose(out["image"][pad], np.tile(pad_color, (pad.sum(), 1)),
                                   rtol=1e-6)


def test_same_seed_same_result_and_other_seed_differs():
    sample = coordinate_sample(16, 16)
    preset = Augmentation(scale_range=(0.7, 1.4), hflip=True, rot90=True, rotation_degrees=20)
    first = run(sample, preset, crop_size=16, seed=(4, 2))
    again = run(sample, preset, crop_size=16, seed=(4, 2))
    other = run(sample, preset, crop_size=16, seed=(5, 2))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])


def test_augmentation_config_round_trip_and_validation():
    preset = Augmentation(scale_range=(0.5, 1.5), vflip=True, image_pad_value=(0.1, 0.2, 0.3))
    assert Augmentation.from_config(preset.get_config()) == preset
    assert Augmentation.from_config(preset.get_config()) != Augmentation()
    with pytest.raises(ValueError, match="scale_range"):
        Augmentation(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="rotation_degrees"):
        Augmentation(rotation_degrees=-5)
    with pytest.raises(ValueError, match="image_pad_value"):
        Augmentation(image_pad_value="median")


# --- the tf.data pipelines ---------------------------------------------------------------------

def indexed_source(n=6, size=12):
    """Images whose pixels all hold the sample index / 100; labels = index too."""
    images = np.repeat(np.arange(n, dtype=np.float32)[:, None, None, None] / 100, size * size,
                       1).reshape(n, size, size, 1)
    dense = np.repeat(np.arange(n)[:, None, None], size * size, 1).reshape(n, size, size)
    weak = np.full_like(dense, IGNORE_INDEX)
    weak[:, 0, :] = dense[:, 0, :]
    return InMemorySource(images, weak, num_classes=n, dense_labels=dense)


def sample_indices(images):
    return np.rint(np.asarray(images)[:, 0, 0, 0] * 100).astype(int).tolist()


def test_training_batches_pack_labels_and_images():
    source = indexed_source()
    for target in ("weak", "dense"):
        dataset = make_training_dataset(source, batch_size=4, crop_size=16, seed=1,
                                        augmentation=Augmentation(hflip=True), target=target)
        images, y_true = next(iter(dataset))
        assert images.shape == (4, 16, 16, 1) and y_true.shape == (4, 16, 16, 2)
        assert images.dtype == tf.float32 and y_true.dtype == tf.float32
        np.testing.assert_array_equal(y_true[..., 1:], images)
        labels = np.asarray(y_true[..., 0]).astype(int)
        inside = np.asarray(y_true[..., 0]) != PAD_INDEX
        for b in range(4):
            index = int(np.rint(np.asarray(images)[b][inside[b]][0, 0] * 100))
            values = set(np.unique(labels[b]).tolist())
            expected = {index, PAD_INDEX} | ({IGNORE_INDEX} if target == "weak" else set())
            assert values == expected, (target, values, expected)


def test_each_epoch_is_a_new_permutation_and_seed_reproduces_it():
    source = indexed_source(n=6)

    def epochs(seed):
        dataset = make_training_dataset(source, batch_size=6, seed=seed)
        return [sample_indices(images) for images, _ in dataset.take(3)]

    first = epochs(seed=3)
    assert all(sorted(epoch) == list(range(6)) for epoch in first)
    assert len({tuple(e) for e in first}) > 1
    assert epochs(seed=3) == first
    assert epochs(seed=4) != first


def test_augmentation_is_reproducible_in_the_pipeline():
    source = indexed_source(n=4, size=16)
    preset = Augmentation(rotation_degrees=30, rot90=True, hflip=True)

    def batches(seed):
        dataset = make_training_dataset(source, batch_size=2, seed=seed, augmentation=preset)
        return [np.asarray(y) for _, y in dataset.take(4)]

    first, again = batches(7), batches(7)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any((a[..., 0] == PAD_INDEX).any() for a in first)  # rotations happened


def test_images_of_different_sizes_need_crop_size():
    def generate():
        for side in (8, 8, 10):
            yield {"image": np.zeros((side, side, 1), np.float32),
                   "weak_label": np.zeros((side, side), np.int32),
                   "id": f"s{side}"}

    dataset = tf.data.Dataset.from_generator(generate, output_signature={
        "image": tf.TensorSpec([None, None, 1], tf.float32),
        "weak_label": tf.TensorSpec([None, None], tf.int32),
        "id": tf.TensorSpec([], tf.string)})
    batches = make_training_dataset(dataset, batch_size=3, shuffle=False, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="s10.*crop_size"):
        list(batches)
    cropped = make_training_dataset(dataset, batch_size=3, crop_size=9, shuffle=False,
                                    repeat=False)
    images, y_true = next(iter(cropped))
    assert images.shape == (3, 9, 9, 1)
    assert (np.asarray(y_true[..., 0]) == PAD_INDEX).sum() == 2 * (81 - 64)


def test_size_changing_augmentation_without_crop_fails_early():
    with pytest.raises(ValueError, match="crop_size"):
        make_training_dataset(indexed_source(), 2, augmentation=Augmentation.natural())
    wide = InMemorySource(np.zeros((2, 4, 6, 1), np.float32), np.zeros((2, 4, 6)), 2)
    with pytest.raises(ValueError, match="rot90"):
        make_training_dataset(wide, 2, augmentation=Augmentation(rot90=True))
    with pytest.raises(ValueError, match="target"):
        make_training_dataset(wide, 2, target="masks")
    with pytest.raises(ValueError, match="fewer than batch_size"):
        make_training_dataset(wide, 3, repeat=False)


def test_eval_dataset_keeps_order_ids_and_pads():
    source = indexed_source(n=5, size=12)
    batches = list(make_eval_dataset(source, batch_size=2, pad_to_multiple=8))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    ids = [i.decode() for b in batches for i in b[2].numpy()]
    assert ids == source.ids()
    images = np.concatenate([b[0] for b in batches])
    assert images.shape == (5, 16, 16, 1)
    np.testing.assert_array_equal(images[:, :12, :12], source.images)
    # Padded as prediction pads (reflected), so scores match what predict returns.
    np.testing.assert_array_equal(images, pad_to_multiple(source.images, 8).numpy())
    labels = np.concatenate([b[1][..., 0] for b in batches]).astype(int)
    np.testing.assert_array_equal(labels[:, :12, :12], source.dense_labels)
    assert (labels[:, 12:] == PAD_INDEX).all() and (labels[:, :, 12:] == PAD_INDEX).all()
    images, y_true = next(iter(make_eval_dataset(source, target="weak", keep_ids=False)))
    np.testing.assert_array_equal(y_true[0, ..., 0], source.weak_labels[0])


def test_image_level_targets_for_ccnn():
    from keras_regseg.data.pipeline import size_bits
    from keras_regseg.data.synthetic import SyntheticShapes
    from keras_regseg.data.weak_labels import size_bits_from_mask

    source = SyntheticShapes(num_samples=6, size=32, seed=4)
    for i in range(len(source)):
        dense = source.load(i)["dense_label"]
        np.testing.assert_array_equal(size_bits(dense, source.num_classes).numpy(),
                                      size_bits_from_mask(dense, source.num_classes))
    # Void pixels (255) are part of the image: class 1 covers 8 of 90 pixels, not 8 of 13.
    mask = np.full((10, 10), 255)
    mask[0, :8], mask[1, :5] = 1, 0
    mask[9, :] = PAD_INDEX                       # padding is not
    assert size_bits(mask, 3).numpy().tolist() == [0.0, 0.0, 0.0]
    mask[2, :4] = 1                              # 12 of 90 pixels
    assert size_bits(mask, 3).numpy().tolist() == [0.0, 1.0, 0.0]
    np.testing.assert_array_equal(size_bits(mask, 3).numpy(), size_bits_from_mask(mask, 3))
    dataset = make_training_dataset(source, batch_size=6, shuffle=False, seed=0,
                                    target="tags_and_sizes")
    images, targets = next(iter(dataset))
    assert sorted(targets) == ["size_bits", "tags"]
    np.testing.assert_array_equal(targets["tags"].numpy(), source.tags)
    tags_only = next(iter(make_training_dataset(source, batch_size=6, shuffle=False, seed=0,
                                                target="tags")))[1]
    assert sorted(tags_only) == ["tags"]


def test_training_and_eval_datasets_end_without_waiting_for_the_autotune_model():
    # With tf.data's autotuning model on, deleting an iterator waits up to ~10 s for its
    # optimization thread: the end of every fit and every validation pass paid it.
    source = InMemorySource(np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 8, 8)), num_classes=2)
    for dataset in (make_training_dataset(source, batch_size=2, seed=0),
                    make_eval_dataset(source, batch_size=2)):
        assert dataset.options().autotune.enabled is False
        assert len(list(dataset.take(2))) == 2


def test_wsl4mis_augmentation_draws_a_flip_or_a_rotation_or_nothing():
    import tensorflow as tf

    from keras_regseg.data.augment import Augmentation, random_transform

    augmentation = Augmentation.wsl4mis()
    counts = {"reflection": 0, "rotation": 0, "identity": 0}
    for i in range(400):
        matrix, _ = random_transform(16, 16, augmentation, None, tf.constant([i, 7]))
        linear = matrix.numpy()[:2, :2]
        det = np.linalg.det(linear)
        if det < 0:
            counts["reflection"] += 1          # rot90 then a flip: never a pure rotation
        elif np.allclose(linear, np.eye(2), atol=1e-6):
            counts["identity"] += 1
        else:
            counts["rotation"] += 1
            angle = abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))
            assert angle <= 20.0 + 1e-3        # the small rotation, no quarter turns
    assert 160 < counts["reflection"] < 240    # half
    assert 60 < counts["rotation"] < 140       # a quarter
    assert 60 < counts["identity"] < 140       # a quarter
    # The medical preset (the default) keeps its draws: every sample gets a dihedral part.
    medical = [random_transform(16, 16, Augmentation.medical(), None, tf.constant([i, 7]))[0]
               for i in range(40)]
    assert sum(np.allclose(m.numpy()[:2, :2], np.eye(2), atol=1e-6) for m in medical) < 20


# --- training images of any size: padded to the network's stride -----------------------------

def test_training_samples_are_padded_to_the_stride_with_unlabeled_pixels():
    rng = np.random.default_rng(0)
    images = rng.random((4, 37, 45, 1)).astype(np.float32)
    weak = rng.integers(0, 3, (4, 37, 45)).astype(np.int32)
    source = InMemorySource(images, weak, num_classes=3)
    dataset = make_training_dataset(source, batch_size=2, shuffle=False, repeat=False,
                                    pad_to_multiple=16)
    batch_images, y_true = next(iter(dataset))
    assert batch_images.shape == (2, 48, 48, 1)
    labels = y_true[..., 0].numpy()
    np.testing.assert_array_equal(labels[:, :37, :45], weak[:2])
    assert (labels[:, 37:] == PAD_INDEX).all() and (labels[:, :, 45:] == PAD_INDEX).all()
    np.testing.assert_allclose(batch_images[:, :37, :45].numpy(), images[:2])
    # The image is reflected as prediction pads it: row 37 mirrors row 35.
    np.testing.assert_allclose(batch_images[:, 37, :45].numpy(), images[:2, 35])


def test_crops_of_height_and_width_are_padded_to_the_stride_with_a_static_shape():
    images = np.zeros((2, 60, 70, 3), np.float32)
    source = InMemorySource(images, np.zeros((2, 60, 70), np.int32), num_classes=2)
    dataset = make_training_dataset(source, batch_size=2, crop_size=(20, 40), repeat=False,
                                    pad_to_multiple=16)
    assert dataset.element_spec[0].shape.as_list() == [2, 32, 48, 3]
    labels = next(iter(dataset))[1][..., 0].numpy()
    assert (labels[:, 20:] == PAD_INDEX).all() and (labels[:, :20, :40] == 0).all()
