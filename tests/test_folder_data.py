"""``data.name: folder``: a plain layout of your own images, scribbles, masks and split lists."""

import os

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_run_config
from keras_regseg.training.config import ConfigError, TrainConfig
from keras_regseg.training.data_setup import build_training_data
from keras_regseg.training.trainer import train

UNLABELED = 100   # not VOC's 255: the config says which value means "no label"


def make_folder(root, masks_for=("train", "val"), size=(40, 52)):
    """Grey disks (class 1), squares (class 2) on a dark background; one scribble each."""
    rng = np.random.default_rng(0)
    for name in ("images", "scribbles", "masks", "splits"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    splits = {"train": [f"t{i}" for i in range(6)], "val": ["v0", "v1"]}
    yy, xx = np.mgrid[:size[0], :size[1]]
    for split, ids in splits.items():
        with open(os.path.join(root, "splits", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        for image_id in ids:
            cy, cx = rng.integers(12, 28, 2)
            mask = np.zeros(size, np.uint8)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] = 1
            mask[2:8, 40:48] = 2
            image = (60 + 120 * (mask > 0) + rng.integers(0, 20, size)).astype(np.uint8)
            scribble = np.full(size, UNLABELED, np.uint8)
            scribble[cy, cx - 3:cx + 3] = 1
            scribble[5, 42:46] = 2
            scribble[size[0] - 3, 5:30] = 0
            Image.fromarray(image, "L").save(os.path.join(root, "images", f"{image_id}.png"))
            Image.fromarray(scribble, "L").save(os.path.join(root, "scribbles", f"{image_id}.png"))
            if split in masks_for:
                Image.fromarray(mask, "L").save(os.path.join(root, "masks", f"{image_id}.png"))
    return root


def folder_config(root, tmp_path, **data):
    return tiny_run_config({"name": "folder", "path": str(root), "num_classes": 3,
                            "channels": 1, "unlabeled_value": UNLABELED, **data},
                           tmp_path / "run")


def test_a_plain_folder_reads_its_splits_labels_and_unlabeled_value(tmp_path):
    root = make_folder(str(tmp_path / "data"))
    data = build_training_data(folder_config(root, tmp_path).data)
    assert (len(data.train), len(data.validation), data.num_classes, data.channels) == (6, 2, 3, 1)
    sample = data.train.load(0)
    assert sample["image"].shape == (40, 52, 1)
    assert set(np.unique(sample["weak_label"]).tolist()) == {0, 1, 2, 255}   # 100 -> IGNORE
    assert set(np.unique(sample["dense_label"]).tolist()) == {0, 1, 2}


def test_a_plain_folder_trains_end_to_end_at_a_size_off_the_stride(tmp_path):
    root = make_folder(str(tmp_path / "data"), size=(42, 54))   # not multiples of 4
    result = train(folder_config(root, tmp_path), verbose=0)
    assert np.isfinite(result.metrics["miou"])
    assert os.path.exists(tmp_path / "run" / "model.keras")


def test_training_masks_are_optional(tmp_path):
    root = make_folder(str(tmp_path / "data"), masks_for=())
    os.rmdir(os.path.join(root, "masks"))
    data = build_training_data(folder_config(root, tmp_path).data)
    assert (data.train.load(0)["dense_label"] == 255).all()


def test_a_folder_needs_its_number_of_classes(tmp_path):
    with pytest.raises(ConfigError, match="data.num_classes is required"):
        TrainConfig.from_dict({"data": {"name": "folder", "path": str(tmp_path)}})


def test_a_missing_scribble_names_the_file(tmp_path):
    root = make_folder(str(tmp_path / "data"))
    os.remove(os.path.join(root, "scribbles", "t3.png"))
    with pytest.raises(FileNotFoundError, match="t3"):
        build_training_data(folder_config(root, tmp_path).data)
