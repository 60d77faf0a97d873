"""``data.name: volumes``: NIfTI and h5 volumes of your own, your split, scored in millimetres."""

import json
import os

import h5py
import nibabel
import numpy as np
import pytest

from helpers import tiny_run_config
from keras_regseg.cli import evaluate as evaluate_cli
from keras_regseg.cli import predict as predict_cli
from keras_regseg.data.volume_files import list_subjects, normalize_intensities
from keras_regseg.data.volumes import Volumes, VolumeSlices
from keras_regseg.evaluation.evaluate import evaluate_volumes
from keras_regseg.training.config import ConfigError, TrainConfig
from keras_regseg.training.data_setup import build_evaluation_data, build_training_data
from keras_regseg.training.trainer import train

SPACING = (1.5, 1.5, 6.0)            # X, Y, Z in mm: thick slices, as in cardiac MRI
AFFINE = np.diag([*SPACING, 1.0])
UNLABELED = 9
SPLITS = {"train": ["s0", "s1", "s2"], "val": ["s3"], "test": ["s4"]}


def subject_arrays(rng, shape=(28, 24, 4)):
    """A bright disk (class 1) around a darker ring (class 2) in every slice, with noise."""
    xx, yy = np.mgrid[:shape[0], :shape[1]]
    cx, cy = rng.integers(10, 14, 2)
    radius = (xx - cx) ** 2 + (yy - cy) ** 2
    mask = np.zeros(shape, np.uint8)
    mask[radius < 49] = 2
    mask[radius < 16] = 1
    image = 200.0 * (mask == 1) + 100.0 * (mask == 2) + rng.normal(0, 5, shape)
    image[0, 0, 0] = 5000.0                                   # one hot voxel: percentile clips it
    scribble = np.full(shape, UNLABELED, np.uint8)
    scribble[cx, cy - 1:cy + 2] = 1
    scribble[cx - 5, cy - 1:cy + 2] = 2
    scribble[1, 2:20] = 0
    return image.astype(np.float32), scribble, mask


def save(path, array, affine=AFFINE):
    nibabel.save(nibabel.Nifti1Image(array, affine), path)


def make_volumes(root, masks_for=("val", "test")):
    rng = np.random.default_rng(0)
    for name in ("images", "scribbles", "masks", "splits"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for split, subjects in SPLITS.items():
        with open(os.path.join(root, "splits", f"{split}.txt"), "w") as f:
            f.write("\n".join(subjects) + "\n")
        for subject in subjects:
            image, scribble, mask = subject_arrays(rng)
            save(os.path.join(root, "images", f"{subject}.nii.gz"), image)
            if split != "test":                                # test subjects: no scribbles
                save(os.path.join(root, "scribbles", f"{subject}.nii.gz"), scribble)
            if split in masks_for:
                save(os.path.join(root, "masks", f"{subject}.nii.gz"), mask)
    return root


def volume_config(root, tmp_path, **data):
    return tiny_run_config({"name": "volumes", "path": None if root is None else str(root),
                            "num_classes": 3, "size": 32, "unlabeled_value": UNLABELED, **data},
                           tmp_path / "run", batch_size=4)


def test_a_volume_folder_gives_slices_of_its_split_with_the_unlabeled_value(tmp_path):
    root = make_volumes(str(tmp_path / "data"))
    data = build_training_data(volume_config(root, tmp_path).data)
    assert isinstance(data.train, VolumeSlices) and isinstance(data.volumes, Volumes)
    assert (len(data.train), len(data.validation), data.num_classes, data.channels) == (12, 4, 3, 1)
    assert data.train.ids()[:2] == ["s0_s00", "s0_s01"] and data.train.groups()[0] == "s0"
    sample = data.train.load(0)
    assert sample["image"].shape == (32, 32, 1)
    assert set(np.unique(sample["weak_label"]).tolist()) == {0, 1, 2, 255}    # 9 -> IGNORE
    assert (sample["dense_label"] == 255).all()           # training subjects without masks
    assert set(np.unique(data.validation.load(0)["dense_label"]).tolist()) == {0, 1, 2}
    volume = data.volumes[0]
    assert volume["image"].shape == (4, 28, 24)           # slices first (NIfTI: the last axis)
    assert volume["spacing"] == (6.0, 1.5, 1.5)


@pytest.mark.parametrize("method, low, high", [("percentile", 0.0, 1.0), ("minmax", 0.0, 1.0)])
def test_percentile_normalization_resists_a_hot_voxel_that_minmax_does_not(method, low, high):
    image, _, mask = subject_arrays(np.random.default_rng(1))
    normalized = normalize_intensities(image, method)
    assert normalized.min() == low and normalized.max() == high
    disk = normalized[mask == 1].mean()
    # min-max squeezes the tissue into the bottom 5 % (the hot voxel is 5000); percentile does not
    assert (disk > 0.8) if method == "percentile" else (disk < 0.05)


def test_zscore_and_none():
    image = np.array([[[1.0, 3.0]]])
    assert normalize_intensities(image, "zscore").tolist() == [[[-1.0, 1.0]]]
    assert normalize_intensities(image, "none").tolist() == [[[1.0, 3.0]]]
    with pytest.raises(ValueError, match="normalization is 'unit'"):
        normalize_intensities(image, "unit")


def test_hd95_is_in_millimetres_along_the_slice_axis(tmp_path):
    """A one-slice-thick mask predicted one slice off: every surface voxel is one slice
    (6 mm) from the other surface; in voxels that would read 1.0, with x's spacing 1.5."""
    root = str(tmp_path)
    mask = np.zeros((12, 10, 5), np.uint8)
    mask[3:8, 2:7, 2] = 1
    image = np.roll(mask, 1, axis=2).astype(np.float32)      # the "prediction" is in slice 3
    save(os.path.join(root, "image.nii.gz"), image)
    save(os.path.join(root, "mask.nii.gz"), mask)
    with open(os.path.join(root, "list.csv"), "w") as f:
        f.write("subject,split,image,scribble,mask\ncase,test,image.nii.gz,,mask.nii.gz\n")
    subjects = list_subjects(None, "test", manifest=os.path.join(root, "list.csv"),
                             num_classes=2, normalization="none")

    def threshold(batch):                                     # class 1 where the image is bright
        return np.concatenate([1.0 - batch, batch], axis=-1)

    result = evaluate_volumes(threshold, Volumes(subjects), input_size=16, num_classes=2,
                              progress=False)
    assert result["dice_per_class"][1] == 0.0
    assert result["hd95_per_class"][1] == pytest.approx(6.0)


def test_an_h5_subject_holds_its_scribble_and_mask_with_a_spacing_attribute(tmp_path):
    for name in ("images", "splits"):
        os.makedirs(tmp_path / name)
    image, scribble, mask = (np.ascontiguousarray(np.moveaxis(a, 2, 0))
                             for a in subject_arrays(np.random.default_rng(2), (20, 20, 3)))
    with h5py.File(tmp_path / "images" / "p1.h5", "w") as f:          # WSL4MIS: (Z, H, W)
        f.create_dataset("image", data=image).attrs["spacing"] = [10.0, 1.25, 1.25]
        f.create_dataset("scribble", data=scribble)
        f.create_dataset("label", data=mask)
    (tmp_path / "splits" / "train.txt").write_text("p1\n")
    subject, = list_subjects(str(tmp_path), "train", require="scribble", num_classes=3,
                             unlabeled_value=UNLABELED)
    volume = subject.read()
    assert volume["image"].shape == (3, 20, 20) and volume["spacing"] == (10.0, 1.25, 1.25)
    np.testing.assert_array_equal(volume["label"], mask)
    assert (volume["scribble"] == 255).sum() == (scribble == UNLABELED).sum()


def test_train_evaluate_on_the_test_split_alone_and_predict_nifti(tmp_path, capsys):
    root = make_volumes(str(tmp_path / "data"))
    config = volume_config(root, tmp_path)
    result = train(config, verbose=0)
    assert np.isfinite(result.metrics["mean_dice"])
    written = (tmp_path / "run" / "config.yaml").read_text()
    assert "normalization: percentile" in written and "name: volumes" in written

    # The test split alone: training subjects gone, the test subject has no scribble.
    for subject in SPLITS["train"] + SPLITS["val"]:
        os.remove(os.path.join(root, "images", f"{subject}.nii.gz"))
    scores = tmp_path / "scores.json"
    assert evaluate_cli.main(["--model", str(tmp_path / "run" / "model.keras"), "--config",
                              str(tmp_path / "run" / "config.yaml"), "--split", "test",
                              "--json", str(scores)]) == 0
    metrics = json.loads(scores.read_text())
    assert 0.0 <= metrics["mean_dice"] <= 1.0 and "hd95" in metrics

    out = tmp_path / "predictions"
    assert predict_cli.main(["--model", str(tmp_path / "run" / "model.keras"), "--config",
                             str(tmp_path / "run" / "config.yaml"), "--input",
                             os.path.join(root, "images", "s4.nii.gz"), "--output", str(out),
                             "--quiet"]) == 0
    labels = nibabel.load(out / "labels" / "s4.nii.gz")
    assert labels.shape == (28, 24, 4) and np.allclose(labels.affine, AFFINE)
    assert set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2}
    assert "predicted 1 volume(s)" in capsys.readouterr().out

    # An output folder inside the input folder: a second run does not take the label
    # volumes of the first for scans.
    images = os.path.join(root, "images")
    scans = len(os.listdir(images))
    for _ in range(2):
        assert predict_cli.main(["--model", str(tmp_path / "run" / "model.keras"), "--config",
                                 str(tmp_path / "run" / "config.yaml"), "--input", images,
                                 "--output", os.path.join(images, "predicted"), "--quiet"]) == 0
        assert f"predicted {scans} volume(s)" in capsys.readouterr().out


# --- bad input: one clear error naming the subject and the file -----------------------------

def test_a_scribble_of_another_shape_or_grid_is_refused(tmp_path):
    root = make_volumes(str(tmp_path / "data"))
    save(os.path.join(root, "scribbles", "s1.nii.gz"), np.zeros((28, 24, 5), np.uint8))
    with pytest.raises(ValueError, match=r"subject 's1'.*s1.nii.gz: scribble shape"):
        build_training_data(volume_config(root, tmp_path).data)
    save(os.path.join(root, "scribbles", "s1.nii.gz"), np.zeros((28, 24, 4), np.uint8),
         affine=np.diag([1.5, 1.5, 3.0, 1.0]))
    with pytest.raises(ValueError, match=r"subject 's1'.*affine differs"):
        build_training_data(volume_config(root, tmp_path).data)


def test_a_subject_in_two_splits_is_refused(tmp_path):
    root = make_volumes(str(tmp_path / "data"))
    with open(os.path.join(root, "splits", "val.txt"), "a") as f:
        f.write("s0\n")
    with pytest.raises(ValueError, match=r"subject 's0' is listed in .*train.txt and in .*val"):
        build_training_data(volume_config(root, tmp_path).data)


def test_missing_files_name_the_subject(tmp_path):
    root = make_volumes(str(tmp_path / "data"))
    os.remove(os.path.join(root, "images", "s2.nii.gz"))
    with pytest.raises(FileNotFoundError, match=r"subject 's2' listed in .*train.txt: no image"):
        build_training_data(volume_config(root, tmp_path).data)
    root = make_volumes(str(tmp_path / "data2"))
    os.remove(os.path.join(root, "scribbles", "s1.nii.gz"))
    with pytest.raises(FileNotFoundError, match=r"subject 's1' of split 'train' has no scribble"):
        build_training_data(volume_config(root, tmp_path).data)


def test_four_d_non_integral_and_out_of_range_labels_are_refused(tmp_path):
    root = make_volumes(str(tmp_path / "data"))
    config = volume_config(root, tmp_path).data
    path = os.path.join(root, "images", "s0.nii.gz")
    save(path, np.zeros((28, 24, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"s0.nii.gz: image volume has shape \(28, 24, 4, 2\)"):
        build_training_data(config)
    root = make_volumes(str(tmp_path / "data2"))
    config = volume_config(root, tmp_path).data
    save(os.path.join(root, "masks", "s3.nii.gz"), np.full((28, 24, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"s3.nii.gz: mask values must be integers.*0.5"):
        build_training_data(config)
    save(os.path.join(root, "masks", "s3.nii.gz"), np.full((28, 24, 4), 7, np.uint8))
    with pytest.raises(ValueError, match=r"s3.nii.gz: mask value 7 outside \[0, 3\)"):
        build_training_data(config)


def test_a_manifest_lists_each_subject_once_and_evaluation_needs_masks(tmp_path):
    root = make_volumes(str(tmp_path / "data"), masks_for=("val",))
    manifest = os.path.join(root, "list.csv")
    with open(manifest, "w") as f:
        f.write("subject,split,image,scribble,mask\n"
                "s0,train,images/s0.nii.gz,scribbles/s0.nii.gz,\n"
                "s0,val,images/s0.nii.gz,,\n")
    with pytest.raises(ValueError, match=r"list.csv:3: subject 's0' already on line 2"):
        build_training_data(volume_config(None, tmp_path, manifest=manifest).data)
    with pytest.raises(FileNotFoundError, match=r"subject 's4' of split 'test' has no mask"):
        build_evaluation_data(volume_config(root, tmp_path).data, "test")


def test_config_checks_of_volumes():
    from keras_regseg.data import volume_files
    from keras_regseg.training import config

    # repeated so that validating a config imports no data code: the two must agree
    assert config.INTENSITY_NORMALIZATIONS == volume_files.INTENSITY_NORMALIZATIONS
    with pytest.raises(ConfigError, match="data.num_classes is required"):
        TrainConfig.from_dict({"data": {"name": "volumes", "path": "x"}})
    with pytest.raises(ConfigError, match="data.normalization = 'unit'"):
        TrainConfig.from_dict({"data": {"name": "volumes", "path": "x", "num_classes": 2,
                                        "normalization": "unit"}})
    with pytest.raises(ConfigError, match="data.spacing"):
        TrainConfig.from_dict({"data": {"name": "volumes", "path": "x", "num_classes": 2,
                                        "spacing": [1.0, 0.0, 2.0]}})


def test_the_readme_walkthrough_data_and_config_fit_together(tmp_path, monkeypatch):
    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    monkeypatch.syspath_prepend(examples)
    import make_demo_volumes

    make_demo_volumes.main(str(tmp_path / "demo"))
    config = TrainConfig.from_yaml(os.path.join(examples, "..", "configs", "pce_volumes.yaml"))
    config = config.override(**{"data.path": str(tmp_path / "demo")})
    data = build_training_data(config.data)
    assert (len(data.train), len(data.volumes)) == (5 * 10, 1)
    assert data.volumes[0]["spacing"] == (5.0, 1.25, 1.25)
    assert (data.train.weak_labels != 255).mean() > 0.005     # every slice has its scribbles
    assert len(build_evaluation_data(config.data).volumes) == 2            # the test split
