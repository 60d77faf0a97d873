"""ACDC readers on tiny synthetic h5 files (plus one optional check on the real data)."""

import os

import h5py
import numpy as np
import pytest
import scipy.ndimage

from keras_regseg.data.acdc import (ACDCSlices, ACDCVolumes, fold_patients, list_volume_files,
                                    read_volume)
from keras_regseg.data.zoom import zoom_nearest
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.data.weak_labels import shorten_scribbles

REAL_ACDC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "acdc",
                         "ACDC_training_volumes")


def write_volume(folder, patient, frame, shape, seed, **overrides):
    """A random WSL4MIS-style volume; ``overrides`` replace (or with None drop) datasets."""
    rng = np.random.default_rng(seed)
    datasets = {
        "image": rng.random(shape, dtype=np.float32),
        "label": rng.integers(0, 4, shape).astype(np.uint8),
        "scribble": rng.choice([0, 1, 2, 3, 4, 4, 4], shape).astype(np.uint16),
    }
    datasets.update(overrides)
    path = os.path.join(folder, f"patient{patient:03d}_frame{frame:02d}.h5")
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            if data is not None:
                f.create_dataset(name, data=data, compression="gzip")
    return path, datasets


@pytest.fixture
def acdc_folder(tmp_path):
    """Patients 1, 2 (fold 1 test), 21, 100 (fold 1 train); two frames each, varied sizes."""
    volumes = {}
    for seed, (patient, frame, shape) in enumerate([
            (1, 1, (2, 12, 10)), (1, 12, (2, 12, 10)), (2, 1, (3, 9, 14)),
            (21, 1, (2, 16, 16)), (21, 7, (2, 16, 16)), (100, 1, (3, 10, 8))]):
        path, data = write_volume(tmp_path, patient, frame, shape, seed)
        volumes[os.path.basename(path)[:-3]] = data
    return tmp_path, volumes


def test_folds_partition_the_hundred_patients():
    all_test = []
    for fold in range(1, 6):
        train, test = fold_patients(fold)
        assert test == list(range(20 * (fold - 1) + 1, 20 * fold + 1))
        assert len(train) == 80 and not set(train) & set(test)
        assert sorted(train + test) == list(range(1, 101))
        all_test += test
    assert sorted(all_test) == list(range(1, 101))
    for bad in (0, 6, "1"):
        with pytest.raises(ValueError, match="fold must be in 1..5"):
            fold_patients(bad)


def test_split_picks_the_fold_patients(acdc_folder):
    folder, _ = acdc_folder
    names = lambda paths: [os.path.basename(p) for p in paths]  # noqa: E731
    assert names(list_volume_files(folder, 1, "test")) == [
        "patient001_frame01.h5", "patient001_frame12.h5", "patient002_frame01.h5"]
    assert names(list_volume_files(folder, 1, "train")) == [
        "patient021_frame01.h5", "patient021_frame07.h5", "patient100_frame01.h5"]
    assert names(list_volume_files(folder, 2, "test")) == [
        "patient021_frame01.h5", "patient021_frame07.h5"]


def test_slices_match_per_slice_nearest_zoom(acdc_folder):
    folder, volumes = acdc_folder
    slices = ACDCSlices(folder, fold=1, split="train", size=(20, 24), progress=False)
    expected_ids = [f"{v}_s{z:02d}" for v in ("patient021_frame01", "patient021_frame07",
                                               "patient100_frame01")
                    for z in range(volumes[v]["image"].shape[0])]
    assert slices.ids() == expected_ids and len(slices) == 7
    assert slices.images.shape == (7, 20, 24, 1)
    for index, slice_id in enumerate(expected_ids):
        volume, z = volumes[slice_id[:-4]], int(slice_id[-2:])
        height, width = volume["image"].shape[1:]

        def zoom(a):  # WSL4MIS resizes each 2D slice with order-0 zoom
            return scipy.ndimage.zoom(a[z], (20 / height, 24 / width), order=0)

        sample = slices.load(index)
        np.testing.assert_array_equal(sample["image"][..., 0], zoom(volume["image"]))
        np.testing.assert_array_equal(sample["dense_label"], zoom(volume["label"]))
        scribble = zoom(volume["scribble"]).astype(np.int32)
        np.testing.assert_array_equal(sample["weak_label"],
                                      np.where(scribble == 4, IGNORE_INDEX, scribble))
        assert sample["weak_label"].dtype == np.int32 and sample["image"].dtype == np.float32
        np.testing.assert_array_equal(sample["tags"], [float((sample["dense_label"] == k).any())
                                                       for k in range(4)])
        assert sample["id"] == slice_id


def test_scribble_ratio_shortens_native_scribbles_before_zoom(acdc_folder):
    folder, volumes = acdc_folder
    # Thin vertical strokes, one per class, in every slice of patient 21 frame 1.
    stroke = np.full((2, 16, 16), 4, np.uint16)
    for k in range(4):
        stroke[:, 2:14, 3 * k + 2] = k
    write_volume(folder, 21, 1, (2, 16, 16), 0, scribble=stroke)
    full = ACDCSlices(folder, fold=1, split="train", size=32, progress=False)
    half = ACDCSlices(folder, fold=1, split="train", size=32, progress=False,
                      scribble_ratio=0.5)
    np.testing.assert_array_equal(half.images, full.images)
    native = shorten_scribbles(np.where(stroke == 4, IGNORE_INDEX, stroke).astype(np.int32), 0.5)
    for z in range(2):
        expected = scipy.ndimage.zoom(native[z], 2, order=0)
        np.testing.assert_array_equal(half.load(z)["weak_label"], expected)
    kept = half.weak_labels != IGNORE_INDEX
    np.testing.assert_array_equal(half.weak_labels[kept], full.weak_labels[kept])
    assert 0.3 < kept[:2].sum() / (full.weak_labels[:2] != IGNORE_INDEX).sum() < 0.7
    with pytest.raises(ValueError, match="scribble_ratio"):
        ACDCSlices(folder, fold=1, split="train", scribble_ratio=1.5)


@pytest.mark.parametrize("shape, size", [
    ((9, 14), (20, 24)), ((16, 16), (8, 8)), ((31, 17), (32, 32)),
    ((256, 248), (224, 192)),  # float rounding puts scipy's last column out of bounds (zero)
])
def test_zoom_nearest_equals_scipy_zoom(shape, size):
    volume = np.random.default_rng(0).integers(1, 100, (2, *shape))
    expected = scipy.ndimage.zoom(volume, (1, size[0] / shape[0], size[1] / shape[1]), order=0)
    np.testing.assert_array_equal(zoom_nearest(volume, size), expected)


def test_slices_tf_dataset_equals_load(acdc_folder):
    folder, _ = acdc_folder
    slices = ACDCSlices(folder, fold=1, split="test", size=8, progress=False)
    samples = list(slices.to_tf_dataset())
    assert len(samples) == len(slices) == 7
    for index, sample in enumerate(samples):
        expected = slices.load(index)
        for key in ("image", "weak_label", "dense_label", "tags"):
            np.testing.assert_array_equal(sample[key].numpy(), expected[key])
            assert sample[key].dtype.as_numpy_dtype == expected[key].dtype
        assert sample["id"].numpy().decode() == expected["id"]


def test_slices_feed_the_training_pipeline(acdc_folder):
    folder, _ = acdc_folder
    slices = ACDCSlices(folder, fold=1, split="train", size=16, progress=False)
    images, y_true = next(iter(make_training_dataset(slices, batch_size=4, seed=0)))
    assert images.shape == (4, 16, 16, 1) and y_true.shape == (4, 16, 16, 2)
    assert set(np.unique(y_true[..., 0]).astype(int)) <= {0, 1, 2, 3, IGNORE_INDEX, PAD_INDEX}


def test_volumes_are_native_size_with_mapped_scribbles(acdc_folder):
    folder, volumes = acdc_folder
    test = ACDCVolumes(folder, fold=1)
    assert test.ids() == ["patient001_frame01", "patient001_frame12", "patient002_frame01"]
    assert len(test) == 3 and [v["id"] for v in test] == test.ids()
    volume = test[2]
    raw = volumes["patient002_frame01"]
    assert volume["image"].shape == (3, 9, 14) and volume["image"].dtype == np.float32
    np.testing.assert_array_equal(volume["image"], raw["image"])
    np.testing.assert_array_equal(volume["label"], raw["label"])
    assert volume["label"].dtype == np.int32 and volume["scribble"].dtype == np.int32
    np.testing.assert_array_equal(volume["scribble"],
                                  np.where(raw["scribble"] == 4, IGNORE_INDEX, raw["scribble"]))
    with pytest.raises(IndexError):
        test[3]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ACDCVolumes(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no .h5 files"):
        ACDCVolumes(str(tmp_path))
    write_volume(tmp_path, 30, 1, (1, 4, 4), 0)
    with pytest.raises(FileNotFoundError, match="no volume of the test patients of fold 1"):
        ACDCVolumes(str(tmp_path), fold=1, split="test")
    with pytest.raises(ValueError, match="split must be"):
        ACDCVolumes(str(tmp_path), split="validation")
    with pytest.raises(ValueError, match="split 'val' of fold 1 is empty"):
        ACDCVolumes(str(tmp_path), split="val")       # no patients held out
    with pytest.raises(ValueError, match="fold must be in 1..5"):
        ACDCSlices(str(tmp_path), fold=6)
    (tmp_path / "notes.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="notes.h5: file name does not match"):
        ACDCVolumes(str(tmp_path), fold=2)


@pytest.mark.parametrize("overrides, message", [
    ({"scribble": None}, "no dataset 'scribble'"),
    ({"label": np.zeros((2, 4, 5), np.uint8)}, r"share one \(Z, H, W\) shape.*label \(2, 4, 5\)"),
    ({"label": np.full((2, 4, 4), 7, np.uint8)}, "label values must be in 0..3; got 7..7"),
    ({"scribble": np.full((2, 4, 4), 9, np.uint16)}, "scribble values must be in 0..4"),
    ({"image": np.full((2, 4, 4), np.nan, np.float32)}, "image values must be finite; 32 are"),
    ({"image": np.full((2, 4, 4), 2.0, np.float32)}, r"image values must be in \[0, 1\]"),
])
def test_bad_files_name_the_file(tmp_path, overrides, message):
    path, _ = write_volume(tmp_path, 1, 1, (2, 4, 4), 0, **overrides)
    with pytest.raises(ValueError, match=message) as error:
        read_volume(path)
    assert path in str(error.value)
    with pytest.raises(ValueError, match=message):
        ACDCSlices(str(tmp_path), fold=1, split="test", size=4, progress=False)


@pytest.mark.skipif(not os.path.isdir(REAL_ACDC), reason="real ACDC data not beside the checkout")
def test_real_acdc_fold_one_test_volumes():
    volumes = ACDCVolumes(REAL_ACDC, fold=1, split="test")
    assert len(volumes) == 40 and volumes.ids()[0] == "patient001_frame01"
    for volume in (volumes[0], volumes[-1]):
        assert volume["image"].shape == volume["label"].shape == volume["scribble"].shape
        assert 0 <= volume["image"].min() and volume["image"].max() <= 1
        assert set(np.unique(volume["label"])) == {0, 1, 2, 3}
        assert set(np.unique(volume["scribble"])) <= {0, 1, 2, 3, IGNORE_INDEX}
        labeled = volume["scribble"] != IGNORE_INDEX
        assert 0.001 < labeled.mean() < 0.05  # scribbles cover about 1% of pixels


def test_holdout_splits_partition_the_training_patients_and_never_touch_the_test_ones():
    from keras_regseg.data.acdc import split_patients

    for fold in range(1, 6):
        train, test = fold_patients(fold)
        kept = split_patients(fold, "train", holdout=16)
        val = split_patients(fold, "val", holdout=16)
        assert len(val) == 16 and sorted(kept + val) == train
        assert not set(val) & set(test) and split_patients(fold, "test", holdout=16) == test
        assert max(val) - min(val) > 50                    # spread over the patients
    assert split_patients(1, "train") == fold_patients(1)[0]
    with pytest.raises(ValueError, match="holdout must be"):
        split_patients(1, "val", holdout=80)


def test_holdout_config_validates_on_held_out_patients(tmp_path):
    from keras_regseg.training.config import ConfigError, DataConfig, TrainConfig
    from keras_regseg.training.data_setup import build_training_data

    for patient in (3, 21, 25, 30):               # 3: test fold 1; 25, 30: held out of 16
        write_volume(tmp_path, patient, 1, (2, 8, 8), patient)
    data = build_training_data(DataConfig(name="acdc", path=str(tmp_path), size=8,
                                          holdout_patients=16))
    assert {i[:10] for i in data.train.ids()} == {"patient021"}
    assert {i[:10] for i in data.validation.ids()} == {"patient025", "patient030"}
    assert data.volumes.ids() == ["patient025_frame01", "patient030_frame01"]
    with pytest.raises(ConfigError, match="holdout_patients"):
        TrainConfig.from_dict({"data": {"holdout_patients": 80}})


def test_shortened_scribbles_keep_one_click_per_scribble_through_the_resize(tmp_path):
    from keras_regseg.data.zoom import zoom_nearest, zoom_seeds
    from keras_regseg.data.weak_labels import shorten_scribbles

    rng = np.random.default_rng(0)
    seeds = np.full((3, 40, 36), IGNORE_INDEX)
    for z in range(3):                            # three one-pixel-wide strokes per slice
        for k, row in enumerate(rng.choice(np.arange(2, 38), 3, replace=False)):
            seeds[z, row, 3 + 5 * k: 20 + 5 * k] = k
    clicks = shorten_scribbles(seeds, 0.0)
    assert ((clicks != IGNORE_INDEX).sum(axis=(1, 2)) == 3).all()
    lost = zoom_nearest(clicks, (16, 16))
    kept = zoom_seeds(clicks, (16, 16))
    assert (lost != IGNORE_INDEX).sum() < 9       # order-0 zoom loses clicks here
    assert ((kept != IGNORE_INDEX).sum(axis=(1, 2)) == 3).all()
    for z in range(3):                            # each click keeps its class
        assert sorted(kept[z][kept[z] != IGNORE_INDEX].tolist()) == [0, 1, 2]
    # Strokes keep what order-0 zoom keeps of them; one on a row it skips gets one pixel.
    plain, rescued = zoom_nearest(seeds, (16, 16)), zoom_seeds(seeds, (16, 16))
    survived = plain != IGNORE_INDEX
    np.testing.assert_array_equal(rescued[survived], plain[survived])
    for z in range(3):
        assert sorted(np.unique(rescued[z][rescued[z] != IGNORE_INDEX]).tolist()) == [0, 1, 2]
        missing = 3 - len(np.unique(plain[z][survived[z]]))
        assert (rescued[z] != plain[z]).sum() == missing


def test_shortened_benchmark_slices_are_deterministic(acdc_folder):
    folder, _ = acdc_folder
    first = ACDCSlices(folder, fold=1, split="train", size=16, progress=False, scribble_ratio=0.3)
    again = ACDCSlices(folder, fold=1, split="train", size=16, progress=False, scribble_ratio=0.3)
    np.testing.assert_array_equal(first.weak_labels, again.weak_labels)
    clicks = ACDCSlices(folder, fold=1, split="train", size=16, progress=False, scribble_ratio=0.0)
    assert ((clicks.weak_labels != IGNORE_INDEX).sum() <= (first.weak_labels != IGNORE_INDEX).sum())
