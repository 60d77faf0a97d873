"""SyntheticShapes: determinism, sample contract, scribble quality and the image
properties the task relies on (strong edges at boundaries, ambiguous pixels)."""

import numpy as np
import pytest
from scipy import ndimage

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.data.synthetic import SyntheticShapes

EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def shapes():
    return SyntheticShapes(num_samples=40, seed=7)


def test_same_seed_gives_identical_arrays_and_others_differ():
    first = SyntheticShapes(num_samples=6, size=32, seed=3)
    again = SyntheticShapes(num_samples=6, size=32, seed=3)
    for name in ("images", "weak_labels", "dense_labels", "tags"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other_seed = SyntheticShapes(num_samples=6, size=32, seed=4)
    other_split = SyntheticShapes(num_samples=6, size=32, seed=3, split="val")
    for other in (other_seed, other_split):
        # Every single image differs, not just the set.
        assert all(not np.array_equal(a, b) for a, b in zip(first.images, other.images))


def test_a_sample_does_not_depend_on_the_dataset_size():
    small = SyntheticShapes(num_samples=3, size=32, seed=5)
    large = SyntheticShapes(num_samples=7, size=32, seed=5)
    np.testing.assert_array_equal(small.images, large.images[:3])
    np.testing.assert_array_equal(small.weak_labels, large.weak_labels[:3])


@pytest.mark.parametrize("channels, num_classes, size", [(1, 4, 32), (3, 6, 48), (1, 2, 16)])
def test_shapes_dtypes_and_ranges(channels, num_classes, size):
    ds = SyntheticShapes(num_samples=5, size=size, channels=channels, num_classes=num_classes)
    assert ds.images.shape == (5, size, size, channels) and ds.images.dtype == np.float32
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    assert ds.weak_labels.shape == ds.dense_labels.shape == (5, size, size)
    assert ds.weak_labels.dtype == ds.dense_labels.dtype == np.int32
    assert ds.tags.shape == (5, num_classes) and ds.tags.dtype == np.float32
    assert set(np.unique(ds.dense_labels)) <= set(range(num_classes))
    assert len(set(ds.class_names)) == num_classes and ds.class_names[0] == "background"
    assert (ds.num_classes, ds.channels) == (num_classes, channels)
    sample = ds.load(4)
    assert sample["id"] == "train_00004" and sample["image"].shape == (size, size, channels)


def test_scribbles_agree_with_the_mask_and_cover_a_few_percent(shapes):
    weak, dense = shapes.weak_labels, shapes.dense_labels
    labeled = weak != IGNORE_INDEX
    np.testing.assert_array_equal(weak[labeled], dense[labeled])
    assert 0.01 <= shapes.scribble_coverage <= 0.05
    assert shapes.scribble_coverage == pytest.approx(labeled.mean())
    # Every image has background and object scribbles; every region of 9+ pixels one.
    for w, d in zip(weak, dense):
        assert (w == 0).any() and ((w > 0) & (w != IGNORE_INDEX)).any()
        for k in range(shapes.num_classes):
            regions, n = ndimage.label(d == k, structure=EIGHT)
            sizes = np.bincount(regions.ravel(), minlength=n + 1)
            scribbled = np.unique(regions[w == k])
            assert set(scribbled.tolist()) == {i for i in range(1, n + 1) if sizes[i] >= 9}


def test_tags_list_exactly_the_classes_in_the_mask(shapes):
    for tags, mask in zip(shapes.tags, shapes.dense_labels):
        present = np.zeros(shapes.num_classes)
        present[np.unique(mask)] = 1.0
        np.testing.assert_array_equal(tags, present)
    assert shapes.tags[:, 1:].sum(axis=0).min() > 0          # every object class occurs
    assert np.all(shapes.tags[:, 0] == 1.0)


def test_shortened_scribbles_are_subsets_down_to_one_click():
    full = SyntheticShapes(num_samples=6, size=48, seed=2)
    previous = full.weak_labels != IGNORE_INDEX
    for ratio in (0.5, 0.0):
        short = SyntheticShapes(num_samples=6, size=48, seed=2, scribble_ratio=ratio)
        np.testing.assert_array_equal(short.images, full.images)
        labeled = short.weak_labels != IGNORE_INDEX
        assert np.all(previous[labeled]) and labeled.sum() < previous.sum()
        previous = labeled
    # Ratio 0: as many labeled pixels per image as it has scribbles.
    clicks = previous.sum(axis=(1, 2))
    expected = [sum(ndimage.label(w == k, structure=EIGHT)[1] for k in range(full.num_classes))
                for w in full.weak_labels]
    np.testing.assert_array_equal(clicks, expected)


def test_object_boundaries_are_strong_edges_but_pixels_are_ambiguous(shapes):
    image, mask = shapes.images[..., 0], shapes.dense_labels
    # Intensity jumps across horizontal neighbours: on boundaries vs inside regions.
    jump = np.abs(np.diff(image, axis=2))
    boundary = np.diff(mask, axis=2) != 0
    assert jump[boundary].mean() > 3 * jump[~boundary].mean()
    # The best classifier of single object pixels by intensity alone (histogram MAP)
    # is far from perfect: classes need context (texture, shape of the region).
    objects = mask > 0
    bins = np.minimum((image[objects] * 32).astype(int), 31)
    counts = np.zeros((32, shapes.num_classes))
    np.add.at(counts, (bins, mask[objects]), 1)
    assert counts.max(axis=1).sum() / counts.sum() < 0.8


def test_to_tf_dataset_yields_the_samples(shapes):
    element = next(iter(shapes.to_tf_dataset()))
    np.testing.assert_array_equal(element["image"].numpy(), shapes.images[0])
    np.testing.assert_array_equal(element["weak_label"].numpy(), shapes.weak_labels[0])
    assert element["id"].numpy().decode() == "train_00000"


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_samples=0), "num_samples"),
    (dict(size=8), "size"),
    (dict(channels=2), "channels"),
    (dict(num_classes=1), "num_classes"),
    (dict(split="validation"), "split"),
    (dict(seed=-1), "seed"),
    (dict(scribble_ratio=2.0), "ratio"),
    (dict(noise=-0.1), "noise"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticShapes(**{"num_samples": 2, "size": 16, **kwargs})
