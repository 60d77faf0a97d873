"""VOC folder reader and the PNG/image helpers behind it (PIL and in-graph decoding)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_regseg.data.augment import Augmentation
from keras_regseg.data.io import (read_image, read_label_png, tf_decode_image, tf_decode_label_png,
                                  voc_palette, write_label_png)
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.data.voc import VOC_CLASS_NAMES, VOCFolder
from keras_regseg.data.weak_labels import shorten_scribbles

SIZES = {"2007_000001": (10, 14), "2007_000002": (12, 9), "2008_000003": (8, 8)}


def random_labels(shape, rng, num_classes=21, unlabeled=255, unlabeled_share=0.6):
    labels = rng.integers(0, num_classes, shape)
    labels[rng.random(shape) < unlabeled_share] = unlabeled
    return labels


def make_voc(root, sizes=SIZES, masks="SegmentationClassAug", seed=0, image_format="png"):
    """A tiny VOC folder; returns the arrays written, by id."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "pascal_2012_scribble", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    if masks:
        os.makedirs(os.path.join(root, masks), exist_ok=True)
    written = {}
    for image_id, shape in sizes.items():
        image = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "JPEGImages", f"{image_id}.{image_format}"))
        scribble = random_labels(shape, rng)
        write_label_png(os.path.join(root, "pascal_2012_scribble", f"{image_id}.png"), scribble)
        mask = random_labels(shape, rng, unlabeled_share=0.1)
        if masks == "SegmentationClassAug":  # greyscale PNGs, as in the augmented set
            Image.fromarray(mask.astype(np.uint8), "L").save(
                os.path.join(root, masks, f"{image_id}.png"))
        elif masks:  # palette PNGs, as VOC's own SegmentationClass
            write_label_png(os.path.join(root, masks, f"{image_id}.png"), mask)
        written[image_id] = {"image": image, "scribble": scribble, "mask": mask}
    with open(os.path.join(root, "ImageSets/Segmentation/train.txt"), "w") as f:
        f.write("\n".join(sizes) + "\n\n")
    return written


def expected_labels(values):
    return np.where(values == 255, IGNORE_INDEX, values)


@pytest.mark.parametrize("masks", ["SegmentationClassAug", "SegmentationClass", None])
def test_load_reads_images_scribbles_masks_and_tags(tmp_path, masks):
    written = make_voc(str(tmp_path), masks=masks)
    voc = VOCFolder(str(tmp_path))
    assert voc.ids() == list(SIZES) and len(voc) == 3
    assert voc.num_classes == 21 and voc.class_names == VOC_CLASS_NAMES and voc.channels == 3
    for index, image_id in enumerate(SIZES):
        sample, truth = voc.load(index), written[image_id]
        assert sample["id"] == image_id
        np.testing.assert_array_equal(sample["image"], truth["image"] / np.float32(255))
        assert sample["image"].dtype == np.float32
        np.testing.assert_array_equal(sample["weak_label"], expected_labels(truth["scribble"]))
        dense = (expected_labels(truth["mask"]) if masks
                 else np.full(SIZES[image_id], IGNORE_INDEX))
        np.testing.assert_array_equal(sample["dense_label"], dense)
        source = truth["mask"] if masks else truth["scribble"]
        present = np.unique(source[source < 21])
        np.testing.assert_array_equal(np.flatnonzero(sample["tags"]), present)


@pytest.mark.parametrize("masks", ["SegmentationClassAug", "SegmentationClass"])
def test_tf_dataset_decodes_like_load(tmp_path, masks):
    make_voc(str(tmp_path), masks=masks)
    voc = VOCFolder(str(tmp_path))
    samples = list(voc.to_tf_dataset())
    assert len(samples) == len(voc)
    for index, sample in enumerate(samples):
        expected = voc.load(index)
        for key in ("image", "weak_label", "dense_label", "tags"):
            np.testing.assert_array_equal(sample[key].numpy(), expected[key])
        assert sample["id"].numpy().decode() == expected["id"]


def test_scribble_ratio_shortens_in_both_paths(tmp_path):
    root = str(tmp_path)
    make_voc(root, sizes={"a": (12, 16)}, masks=None)
    scribble = np.full((12, 16), 255)
    scribble[2, 1:15], scribble[6:11, 8] = 4, 9  # a 14-pixel and a 5-pixel stroke
    write_label_png(os.path.join(root, "pascal_2012_scribble", "a.png"), scribble)
    (tmp_path / "ImageSets/Segmentation/train.txt").write_text("a\n")
    voc = VOCFolder(root, scribble_ratio=0.5)
    expected = shorten_scribbles(np.where(scribble == 255, IGNORE_INDEX, scribble), 0.5)
    np.testing.assert_array_equal(voc.load(0)["weak_label"], expected)
    np.testing.assert_array_equal(next(iter(voc.to_tf_dataset()))["weak_label"], expected)
    assert 0 < (expected != IGNORE_INDEX).sum() < (scribble != 255).sum()


def test_jpeg_and_greyscale_images_become_rgb(tmp_path):
    make_voc(str(tmp_path), masks=None, image_format="jpg")
    gray = np.random.default_rng(1).integers(0, 256, SIZES["2007_000002"]).astype(np.uint8)
    path = os.path.join(tmp_path, "JPEGImages", "2007_000002.jpg")
    Image.fromarray(gray, "L").save(path, quality=95)
    voc = VOCFolder(str(tmp_path))
    from_pil = voc.load(1)["image"]
    from_tf = next(iter(voc.to_tf_dataset().skip(1)))["image"].numpy()
    assert from_pil.shape == from_tf.shape == (*SIZES["2007_000002"], 3)
    for image in (from_pil, from_tf):
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
        assert np.abs(image[..., 0] - gray / 255).mean() < 0.02  # JPEG is lossy
    # Both decoders use libjpeg's accurate integer IDCT: at most one grey level apart.
    assert np.abs(from_pil - from_tf).max() <= 1 / 255 + 1e-7


def test_tags_file_overrides_derived_tags(tmp_path):
    make_voc(str(tmp_path))
    (tmp_path / "tags.txt").write_text("2007_000001 15\n2007_000002 0 3 20\n2008_000003\n")
    voc = VOCFolder(str(tmp_path), tags_file="tags.txt")
    assert [np.flatnonzero(voc.load(i)["tags"]).tolist() for i in range(3)] == [
        [15], [0, 3, 20], []]
    assert [np.flatnonzero(s["tags"]).tolist() for s in voc.to_tf_dataset()] == [
        [15], [0, 3, 20], []]
    (tmp_path / "bad.txt").write_text("2007_000001 15\n2007_000002 21\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: class index 21 outside \[0, 21\)"):
        VOCFolder(str(tmp_path), tags_file="bad.txt")
    (tmp_path / "short.txt").write_text("2007_000001 15\n")
    with pytest.raises(ValueError, match="no line for id '2007_000002'"):
        VOCFolder(str(tmp_path), tags_file="short.txt")


def test_configurable_folders_split_file_and_unlabeled_value(tmp_path):
    root = str(tmp_path)
    rng = np.random.default_rng(3)
    os.makedirs(os.path.join(root, "img"))
    os.makedirs(os.path.join(root, "scr"))
    image = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
    Image.fromarray(image).save(os.path.join(root, "img", "a.png"))
    scribble = rng.choice([0, 1, 2, 250], (6, 5))
    Image.fromarray(scribble.astype(np.uint8), "L").save(os.path.join(root, "scr", "a.png"))
    # DeepLab list format: paths instead of bare ids.
    (tmp_path / "list_val.txt").write_text("/img/a.png /SegmentationClassAug/a.png\n")
    voc = VOCFolder(root, split="val", image_dir="img", scribble_dir="scr", mask_dir=None,
                    split_file="list_{split}.txt", unlabeled_value=250, num_classes=3)
    sample = voc.load(0)
    np.testing.assert_array_equal(sample["weak_label"],
                                  np.where(scribble == 250, IGNORE_INDEX, scribble))
    assert voc.class_names == ("class_0", "class_1", "class_2")
    with pytest.raises(ValueError, match="unlabeled_value = 2 is a class index"):
        VOCFolder(root, split="val", image_dir="img", scribble_dir="scr", mask_dir=None,
                  split_file="list_{split}.txt", unlabeled_value=2, num_classes=3)


def test_construction_errors_name_the_file(tmp_path):
    root = str(tmp_path)
    make_voc(root)
    with pytest.raises(FileNotFoundError, match="VOC folder .* not found"):
        VOCFolder(os.path.join(root, "nope"))
    with pytest.raises(FileNotFoundError, match="split file .*val.txt not found"):
        VOCFolder(root, split="val")
    (tmp_path / "ImageSets/Segmentation/empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt lists no ids"):
        VOCFolder(root, split="empty")
    (tmp_path / "ImageSets/Segmentation/dup.txt").write_text("2007_000001\n2007_000001\n")
    with pytest.raises(ValueError, match="lists '2007_000001' more than once"):
        VOCFolder(root, split="dup")
    with pytest.raises(FileNotFoundError, match="mask folder .*Other not found"):
        VOCFolder(root, mask_dir="Other")
    os.remove(os.path.join(root, "pascal_2012_scribble", "2007_000002.png"))
    with pytest.raises(FileNotFoundError,
                       match=r"scribble file .*2007_000002.png not found for id '2007_000002'"):
        VOCFolder(root)
    os.remove(os.path.join(root, "JPEGImages", "2007_000001.png"))
    with pytest.raises(FileNotFoundError,
                       match=r"image file .*JPEGImages/2007_000001.jpg not found .*1 of 3 ids"):
        VOCFolder(root)


def test_rgb_scribble_png_is_refused_at_construction(tmp_path):
    make_voc(str(tmp_path))
    path = os.path.join(tmp_path, "pascal_2012_scribble", "2008_000003.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match="2008_000003.png: label PNG is RGB; expected a palette"):
        VOCFolder(str(tmp_path))


def test_size_mismatch_fails_at_load_in_both_paths(tmp_path):
    make_voc(str(tmp_path))
    write_label_png(os.path.join(tmp_path, "pascal_2012_scribble", "2007_000002.png"),
                    np.zeros((12, 10)))
    voc = VOCFolder(str(tmp_path))
    voc.load(0)
    with pytest.raises(ValueError,
                       match=r"2007_000002.png is 12x10 .*JPEGImages/2007_000002.png is 12x9"):
        voc.load(1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="2007_000002.png.* is 12x10"):
        list(voc.to_tf_dataset())


def test_label_value_out_of_range_names_file_and_value(tmp_path):
    make_voc(str(tmp_path))
    mask = np.zeros(SIZES["2008_000003"], np.uint8)
    mask[2, 3] = 30
    Image.fromarray(mask, "L").save(os.path.join(tmp_path, "SegmentationClassAug",
                                                 "2008_000003.png"))
    voc = VOCFolder(str(tmp_path))
    with pytest.raises(ValueError, match=r"2008_000003.png: mask value 30 outside \[0, 21\)"):
        voc.load(2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"2008_000003.png.*: mask value 30 outside \[0, 21\)"):
        list(voc.to_tf_dataset())


def test_truncated_image_names_the_file(tmp_path):
    make_voc(str(tmp_path), image_format="jpg")
    path = os.path.join(tmp_path, "JPEGImages", "2007_000001.jpg")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match="2007_000001.jpg: cannot decode image"):
        VOCFolder(str(tmp_path))            # its header is cut: refused when the folder opens
    with open(path, "wb") as f:
        f.write(data)
    voc = VOCFolder(str(tmp_path))
    with open(path, "wb") as f:             # replaced after the folder opened
        f.write(b"not an image at all")
    with pytest.raises(ValueError, match="2007_000001.jpg: cannot decode image"):
        voc.load(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="2007_000001.jpg.*not a JPEG or PNG"):
        list(voc.to_tf_dataset())


def test_voc_feeds_the_training_pipeline_with_alignment(tmp_path):
    """Image pixel = 10 x its mask label / 255: after flips, rot90 and crop they still agree."""
    root = str(tmp_path)
    written = make_voc(root, masks="SegmentationClass")
    for image_id, truth in written.items():  # re-encode each image from its mask
        value = np.where(truth["mask"] == 255, 0, truth["mask"] * 10).astype(np.uint8)
        Image.fromarray(np.repeat(value[..., None], 3, -1)).save(
            os.path.join(root, "JPEGImages", f"{image_id}.png"))
    voc = VOCFolder(root)
    dataset = make_training_dataset(
        voc, batch_size=3, crop_size=11, seed=0, target="dense",
        augmentation=Augmentation(hflip=True, vflip=True, rot90=True))
    seen = set()
    for images, y_true in dataset.take(4):
        assert images.shape == (3, 11, 11, 3)
        labels = np.asarray(y_true[..., 0]).astype(int)
        labeled = labels < 21
        np.testing.assert_allclose(np.asarray(images[..., 0])[labeled] * 255,
                                   labels[labeled] * 10, atol=1e-3)
        seen |= set(np.unique(labels).tolist())
    assert {IGNORE_INDEX, PAD_INDEX} <= seen <= set(range(21)) | {IGNORE_INDEX, PAD_INDEX}


# --- io helpers -------------------------------------------------------------------------------

def test_voc_palette_known_entries():
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in palette.tolist()}) == 256


@pytest.mark.parametrize("kind", ["palette", "short_palette", "gray8", "gray16", "gray_alpha"])
def test_label_png_decoders_agree_with_the_written_values(tmp_path, kind):
    rng = np.random.default_rng(5)
    path = str(tmp_path / f"{kind}.png")
    if kind == "palette":  # random distinct palette, every index used
        values = rng.permutation(np.arange(256).repeat(2)).reshape(16, 32)
        image = Image.fromarray(values.astype(np.uint8), "P")
        colors = rng.choice(256 ** 3, 256, replace=False)
        image.putpalette(np.stack([colors >> 16, (colors >> 8) & 255, colors & 255],
                                  1).astype(np.uint8).ravel().tolist())
        image.save(path)
    elif kind == "short_palette":  # 3 colours: PIL writes a 2-bit palette PNG
        values = rng.integers(0, 3, (7, 5))
        image = Image.fromarray(values.astype(np.uint8), "P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
        image.save(path)
    elif kind == "gray8":
        values = rng.integers(0, 256, (6, 9))
        Image.fromarray(values.astype(np.uint8), "L").save(path)
    elif kind == "gray16":
        values = rng.integers(0, 65536, (6, 9))
        Image.fromarray(values.astype(np.uint16)).save(path)
    else:
        values = rng.integers(0, 256, (6, 9))
        Image.fromarray(np.stack([values, 255 - values], -1).astype(np.uint8), "LA").save(path)
    np.testing.assert_array_equal(read_label_png(path), values)
    np.testing.assert_array_equal(tf_decode_label_png(tf.io.read_file(path), path), values)


def test_palette_with_shared_colours_is_read_as_indices_by_both_readers(tmp_path):
    path = str(tmp_path / "dup.png")
    image = Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8), "P")
    image.putpalette([0, 0, 0, 5, 5, 5, 5, 5, 5])
    image.save(path)
    assert read_label_png(path).tolist() == [[0, 1], [2, 2]]
    assert tf_decode_label_png(tf.io.read_file(path), path).numpy().tolist() == [[0, 1], [2, 2]]


def test_image_readers_agree_on_png(tmp_path):
    rng = np.random.default_rng(6)
    rgba = rng.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    path = str(tmp_path / "rgba.png")
    Image.fromarray(rgba, "RGBA").save(path)
    expected = rgba[..., :3] / np.float32(255)
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_allclose(tf_decode_image(tf.io.read_file(path), 3, path), expected,
                               atol=1e-7)
    with pytest.raises(FileNotFoundError, match="missing.png: file not found"):
        read_image(str(tmp_path / "missing.png"))
