"""Bad inputs a user can hand to keras_regseg: each gets a clear error or a documented handling.

Data files (corrupt images, odd label PNGs, greyscale versus RGB, images
smaller than the crop, images without scribbles, single-class images), a
network whose output turns NaN or inf, model files (a ``.keras`` file carrying
Python code), YAML configurations, and property-based tests of the file
decoders: no input crashes the process or escapes as an unexpected exception
type. (The solver front end has its own property tests, test_solver_properties.py.)
"""

import io
import json
import os
import re
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.special import log_softmax

from keras_regseg.cli import evaluate as evaluate_cli
from keras_regseg.data.io import (PNG_SIGNATURE, read_image, read_label_png, tf_decode_image,
                                  tf_decode_label_png, write_label_png)
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.data.voc import VOCFolder
from keras_regseg.evaluation import evaluate_images
from keras_regseg.losses import PartialCrossEntropy
from keras_regseg.models import UNet
from keras_regseg.prediction import UnsafeModelError, load_keras_model, load_segmenter
from keras_regseg.training.callbacks import NonFiniteLossError
from keras_regseg.training.config import ConfigError, TrainConfig
from keras_regseg.training.trainer import train

from helpers import make_voc, one_batch, png_bytes, random_image

NUM_CLASSES = 3


# ---------------------------------------------------------------- helpers

def chunk(kind, payload):
    """A PNG chunk with its CRC."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_with_header(width, height, bit_depth=8, colour_type=0, idat=b""):
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tiny_config(tmp_path, **training):
    return TrainConfig.from_dict({
        "data": {"name": "synthetic", "size": 32, "num_train": 4, "num_val": 2},
        "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
        "training": {"iterations": 2, "steps_per_epoch": 2, "batch_size": 2,
                     "num_grid_images": 1, **training},
        "output": str(tmp_path / "run")})


# ---------------------------------------------------------------- corrupt image files

def test_a_truncated_png_stops_the_training_pipeline_instead_of_training_on_it(tmp_path):
    image = random_image((8, 8, 3), seed=0)
    data = png_bytes(image)
    scribble = np.full((8, 8), 255)
    voc = make_voc(str(tmp_path / "voc"), {"good": (image, scribble),
                                           "bad": (data[:len(data) // 2], scribble)})
    # Its header is whole, so the folder opens; PIL names the file (VOCFolder.load) ...
    with pytest.raises(ValueError, match="bad.png: cannot decode image"):
        voc.load(1)
    # ... and TensorFlow's decoder stops: a partially decoded image never reaches the network
    # (the trainer then names the file: test_reliability.py).
    batches = make_training_dataset(voc, batch_size=1, shuffle=False, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        list(batches)


def test_a_jpeg_truncated_inside_its_header_is_refused_when_the_folder_opens(tmp_path):
    image = random_image((8, 8, 3), seed=0)
    Image.fromarray(image).save(tmp_path / "x.jpg", quality=95)
    data = (tmp_path / "x.jpg").read_bytes()
    scribble = np.full((8, 8), 255)
    with pytest.raises(ValueError, match="bad.png: cannot decode image"):
        make_voc(str(tmp_path / "voc"), {"good": (image, scribble),
                                         "bad": (data[:len(data) // 2], scribble)})


def test_a_decompression_bomb_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(30000, 30000, idat=zlib.compress(b"\0" * 100)))
    for read in (read_image, read_label_png):
        try:
            read(str(path))
        except ValueError as error:
            assert str(path) in str(error)
        except Exception as error:  # noqa: BLE001  (the point: which type escapes)
            raise AssertionError(f"{read.__name__} raised {type(error).__name__}: {error}")


# ---------------------------------------------------------------- scribble PNGs

def test_scribble_values_outside_the_classes_are_refused_naming_file_and_value(tmp_path):
    scribble = np.full((6, 6), 255)
    scribble[2, 1:5] = PAD_INDEX   # a file value that collides with the internal padding code
    voc = make_voc(str(tmp_path), {"odd": (random_image((6, 6, 3), 1), scribble)})
    with pytest.raises(ValueError, match="odd.png: scribble value 254 outside \\[0, 3\\)"):
        voc.load(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="odd.png.*: scribble value 254"):
        one_batch(voc, crop_size=6)   # a crop: no first sample loaded with PIL, TF decodes all


def test_low_bit_depth_greyscale_scribbles_are_refused_when_the_folder_opens(tmp_path):
    image = random_image((6, 6, 3), 2)
    make_voc(str(tmp_path), {"a": (image, np.full((6, 6), 255))})
    Image.fromarray(np.eye(6, dtype=bool)).save(tmp_path / "pascal_2012_scribble" / "a.png")
    with pytest.raises(ValueError, match="a.png: greyscale label PNG of bit depth 1"):
        VOCFolder(str(tmp_path), num_classes=NUM_CLASSES)


def test_scribbles_drawn_with_a_foreign_palette_are_read_as_indices(tmp_path):
    values = np.full((6, 6), 255)
    values[1, :4], values[4, 2:] = 0, 2
    foreign = Image.fromarray(values.astype(np.uint8), "P")
    colours = np.random.default_rng(3).permutation(256 ** 3)[:256]   # 256 distinct colours
    foreign.putpalette(np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1)
                       .astype(np.uint8).ravel().tolist())
    voc = make_voc(str(tmp_path), {"a": (random_image((6, 6, 3), 3), values)})
    foreign.save(tmp_path / "pascal_2012_scribble" / "a.png")
    expected = np.where(values == 255, IGNORE_INDEX, values)
    np.testing.assert_array_equal(voc.load(0)["weak_label"], expected)
    _, y_true = one_batch(voc)
    np.testing.assert_array_equal(y_true[0, ..., 0].numpy(), expected)


def test_in_graph_label_decoder_refuses_what_the_numpy_reader_refuses(tmp_path):
    Image.fromarray(random_image((4, 4, 3), 4)).save(tmp_path / "x.jpg")
    cases = {"x.jpg": (tmp_path / "x.jpg").read_bytes(),
             "rgb.png": png_bytes(random_image((4, 4, 3), 5)), "short.png": b"\x89PNG"}
    for name, data in cases.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        with pytest.raises(ValueError, match=name):
            read_label_png(path)
        try:
            tf_decode_label_png(tf.constant(data), path)
        except tf.errors.InvalidArgumentError as error:
            assert name in str(error), error
        else:
            raise AssertionError(f"tf_decode_label_png decoded {name} as labels")


def test_an_image_file_shorter_than_a_png_header_stops_the_pipeline_with_a_tf_error(tmp_path):
    scribble = np.full((8, 8), 255)
    short = PNG_SIGNATURE + b"\0\0\0\rIHDR"
    with pytest.raises(ValueError, match="short.png: cannot decode image"):  # when it opens
        make_voc(str(tmp_path / "a"), {"good": (random_image((8, 8, 3), 0), scribble),
                                       "short": (short, scribble)})
    voc = make_voc(str(tmp_path / "b"), {"good": (random_image((8, 8, 3), 0), scribble),
                                         "short": (random_image((8, 8, 3), 1), scribble)})
    (tmp_path / "b" / "JPEGImages" / "short.png").write_bytes(short)  # cut after it opened
    batches = make_training_dataset(voc, batch_size=1, crop_size=8, shuffle=False, repeat=False)
    try:
        list(batches)
    except tf.errors.InvalidArgumentError:
        pass   # TensorFlow's decoder refused it: the documented handling of corrupt images
    except Exception as error:  # noqa: BLE001  (the point: which type escapes)
        raise AssertionError(f"{type(error).__name__} escaped from tf.data: {error}") from None
    else:
        raise AssertionError("a 16-byte image file was decoded")


# ---------------------------------------------------------------- greyscale versus RGB

@pytest.mark.parametrize("channels, classes", [(3, 4), (1, 3)])
def test_init_from_a_network_that_does_not_fit_the_data_is_refused(tmp_path, channels, classes):
    path = tmp_path / "other.keras"
    UNet(num_classes=classes, input_channels=channels, filters=(4, 8), dropout=0.0).save(path)
    config = tiny_config(tmp_path, init_from=str(path))   # synthetic data: 1 channel, 4 classes
    try:
        train(config, verbose=0)
    except ValueError as error:
        assert str(path) in str(error), error
    else:
        raise AssertionError("a network of other channels or classes trained on the data")


# ---------------------------------------------------------------- image smaller than the crop

def test_an_image_smaller_than_the_crop_is_padded_with_pad_index_and_the_loss_ignores_it(
        tmp_path):
    image = random_image((10, 12, 3), 6)
    scribble = np.full((10, 12), 255)
    scribble[2, 1:9], scribble[7, 3:11], scribble[3:9, 5] = 1, 0, 2
    voc = make_voc(str(tmp_path), {"small": (image, scribble)})
    images, y_true = one_batch(voc, crop_size=16, seed=3)
    labels, picture = y_true[0, ..., 0].numpy().astype(int), images[0].numpy()
    assert labels.shape == picture.shape[:2] == (16, 16)
    inside = labels != PAD_INDEX
    top, left = np.argwhere(inside).min(axis=0)
    window = np.s_[top:top + 10, left:left + 12]
    assert inside.sum() == 10 * 12 and inside[window].all()    # the image, whole, once
    np.testing.assert_array_equal(labels[window], np.where(scribble == 255, IGNORE_INDEX, scribble))
    np.testing.assert_allclose(picture[window], image / 255.0, atol=1e-6)
    assert (picture[~inside] == 0.0).all()                     # Augmentation's pad value
    # pCE over the padded crop is the cross-entropy of the original scribble pixels only.
    logits = np.random.default_rng(7).normal(size=(1, 16, 16, NUM_CLASSES)).astype(np.float32)
    log_probs = log_softmax(logits[0].astype(np.float64), axis=-1)[window]
    seeds = np.argwhere(scribble != 255)
    expected = -np.mean([log_probs[r, c, scribble[r, c]] for r, c in seeds])
    assert float(PartialCrossEntropy()(y_true, logits)) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- no scribble pixels

def test_an_image_without_scribbles_gives_zero_loss_and_leaves_the_network_unchanged(tmp_path):
    voc = make_voc(str(tmp_path), {"empty": (random_image((8, 8, 3), 8), np.full((8, 8), 255))})
    sample = voc.load(0)
    assert (sample["weak_label"] == IGNORE_INDEX).all() and not sample["tags"].any()
    images, y_true = one_batch(voc)
    keras.utils.set_random_seed(0)
    model = UNet(num_classes=NUM_CLASSES, input_channels=3, filters=(4, 8), dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=PartialCrossEntropy())
    before = [w.numpy() for w in model.trainable_weights]
    loss = model.train_on_batch(images, y_true)
    assert loss == 0.0   # not NaN (0 / 0): the mean is over max(labelled pixels, 1)
    for old, new in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())


# ---------------------------------------------------------------- single-class image

def test_a_single_class_image_has_one_hot_tags_and_defined_scores(tmp_path):
    scribble = np.full((8, 8), 255)
    scribble[2:6, 4] = 2
    voc = make_voc(str(tmp_path), {"one": (random_image((8, 8, 3), 9), scribble)},
                   masks={"one": np.full((8, 8), 2)})
    sample = voc.load(0)
    assert sample["tags"].tolist() == [0.0, 0.0, 1.0]

    def predict(label):
        return lambda images: np.eye(NUM_CLASSES, dtype=np.float32)[
            np.full(images.shape[:3], label)]

    right = evaluate_images(predict(2), [sample], NUM_CLASSES, progress=False)
    wrong = evaluate_images(predict(0), [sample], NUM_CLASSES, progress=False)
    assert (right["miou"], right["iou_per_class"]) == (1.0, [None, None, 1.0])
    assert (wrong["miou"], wrong["iou_per_class"]) == (0.0, [0.0, None, 0.0])
    assert right["trimap"][8] == {"pixels": 0}   # no class boundary: an empty band, no score
    json.dumps([right, wrong], allow_nan=False)  # no NaN anywhere
    _, y_true = one_batch(voc)
    uniform = np.zeros((1, 8, 8, NUM_CLASSES), np.float32)
    assert float(PartialCrossEntropy()(y_true, uniform)) == pytest.approx(np.log(NUM_CLASSES))


# ---------------------------------------------------------------- NaN or inf network output

class PoisonAt(keras.callbacks.Callback):
    """From the start of ``epoch`` the network's output is NaN (its last kernel is)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.layers[-1].weights[0]
            kernel.assign(kernel * np.nan)


def test_a_nan_network_output_stops_training_naming_the_step_and_keeps_the_last_good_epoch(
        tmp_path):
    config = tiny_config(tmp_path, iterations=6)   # 3 epochs of 2 steps
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError,
                       match=r"loss = nan at epoch 2, batch 1 of 2 \(training step 3\); "
                             r"training stopped and nothing of epoch 2 was saved: the "
                             r"checkpoints and the backup keep epoch 1"):
        train(config, verbose=0, callbacks=[PoisonAt(1)])
    # Nothing of the NaN epoch reached the disk: the backup, the checkpoint and the
    # metrics file are those of epoch 1, and there is no final model.
    assert json.loads((run / "backup" / "state.json").read_text())["epoch"] == 1
    assert json.loads((run / "metrics.json").read_text())["history"]["epoch"] == [1]
    assert not (run / "model.keras").exists()
    last = keras.saving.load_model(run / "checkpoints" / "last.keras", compile=False)
    assert all(np.isfinite(w).all() for w in last.get_weights())
    # Rerunning the same command resumes from epoch 1 and, without the poison, finishes.
    result = train(config, verbose=0)
    assert json.loads((run / "metrics.json").read_text())["history"]["epoch"] == [1, 2, 3]
    assert all(np.isfinite(w).all() for w in result.network.get_weights())


def test_an_exploding_learning_rate_stops_at_the_first_non_finite_loss_saving_nothing(tmp_path):
    config = tiny_config(tmp_path, iterations=4).override(**{"optimizer.learning_rate": 1e30})
    with pytest.raises(NonFiniteLossError, match=r"loss = (nan|inf) at epoch 1, batch 2 of 2 "
                                                 r".*no epoch had finished, so nothing was saved"):
        train(config, verbose=0)
    run = tmp_path / "run"
    assert not (run / "backup" / "state.json").exists()
    assert not (run / "checkpoints" / "last.keras").exists() and not (run / "model.keras").exists()


# ---------------------------------------------------------------- untrusted .keras files

@pytest.fixture
def lambda_model(tmp_path, monkeypatch):
    """A .keras file whose Lambda layer creates a marker file whenever its code runs."""
    marker = tmp_path / "code_ran"
    monkeypatch.setenv("KRS_LAMBDA_MARKER", str(marker))
    inputs = keras.Input((None, None, 1))
    touched = keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["KRS_LAMBDA_MARKER"], "a").close(), x)[1])(inputs)
    path = tmp_path / "untrusted.keras"
    keras.Model(inputs, keras.layers.Conv2D(4, 1)(touched)).save(path)
    marker.unlink()   # building the model ran it once
    return str(path), marker


def test_a_keras_file_carrying_python_code_is_refused_by_every_loader(lambda_model, tmp_path):
    path, marker = lambda_model
    with pytest.raises(UnsafeModelError, match="untrusted.keras: refused to load.*unsafe=True"):
        load_keras_model(path)
    with pytest.raises(ValueError, match="Lambda"):
        load_segmenter(path)            # evaluate and predict
    with pytest.raises(ValueError, match="Lambda"):
        train(tiny_config(tmp_path, init_from=path), verbose=0)
    assert not marker.exists()          # none of them ran the file's code
    model = load_keras_model(path, unsafe=True)
    assert marker.exists()              # opting in runs it: loading alone executed it
    assert model.output_shape == (None, None, None, 4)


# ---------------------------------------------------------------- YAML

@pytest.mark.parametrize("text, message", [
    ("training: {batch_size: true}\n", "training.batch_size = True is a bool; expected int"),
    ("training: {batch_size: null}\n", "training.batch_size = None is a NoneType; expected int"),
    ("optimizer: {learning_rate: '0.1'}\n", "learning_rate = '0.1' is a str; expected float"),
    ("training: {init_from: 3}\n", "training.init_from = 3 is a int; expected null or str"),
    ("model: {options: [4, 8]}\n", "model.options = [4, 8] is a list; expected dict"),
    ("data: 5\n", "data must be a mapping; got int 5"),
    ("data: {name: synthetic, sise: 32}\n", "unknown key 'data.sise'"),
    ("training: {batch_size: [4\n", "not valid YAML"),
])
def test_yaml_with_unknown_keys_or_wrong_types_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_yaml(str(path))
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_yaml_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "yaml_ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"training: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        TrainConfig.from_yaml(str(path))
    assert not marker.exists()


def test_an_unknown_model_option_stops_the_run_before_training(tmp_path):
    config = tiny_config(tmp_path).override(**{"model.options": {"filterz": [4, 8]}})
    with pytest.raises(TypeError, match="unknown arguments \\['filterz'\\]"):
        train(config, verbose=0)
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- decoders never crash

PROPERTIES = settings(max_examples=60, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("decoders")


def numpy_outcome(read, path):
    """The array ``read(path)`` returns, or None when it refuses with a ValueError naming the file.

    Any other exception type fails the test.
    """
    try:
        return read(path)
    except ValueError as error:
        assert str(error).startswith(path), f"error does not name the file: {error}"
        return None


def tf_outcome(decode, data, path):
    """The decoded array, or None when TensorFlow refuses the bytes with InvalidArgumentError."""
    try:
        return decode(tf.constant(data), path).numpy()
    except tf.errors.InvalidArgumentError:
        return None


def check_decoders_on(data, folder):
    """Run all four decoders on ``data``; check types, ranges, and agreement where both decode."""
    path = str(folder / "input.bin")
    with open(path, "wb") as f:
        f.write(data)
    image = numpy_outcome(read_image, path)
    if image is not None:
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[-1] == 3
        assert image.size and 0.0 <= image.min() and image.max() <= 1.0
    labels = numpy_outcome(read_label_png, path)
    if labels is not None:
        assert labels.dtype == np.int32 and labels.ndim == 2
        assert labels.size and labels.min() >= 0
    tf_image = tf_labels = None
    tf_image = tf_outcome(lambda c, p: tf_decode_image(c, 3, p), data, path)
    tf_labels = tf_outcome(tf_decode_label_png, data, path)
    if image is not None and tf_image is not None:
        np.testing.assert_array_equal(image, tf_image)
    if labels is not None and tf_labels is not None:
        np.testing.assert_array_equal(labels, tf_labels)
    return image, labels, tf_image, tf_labels


@PROPERTIES
@given(data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=300).map(lambda b: PNG_SIGNATURE + b),
                      st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff" + b)))
def test_random_bytes_are_decoded_or_refused(scratch, data):
    check_decoders_on(data, scratch)


@st.composite
def chunked_pngs(draw):
    """Well-formed PNG chunks (valid CRCs) with random header fields and random contents."""
    header = struct.pack(">IIBBBBB", draw(st.integers(0, 40)), draw(st.integers(0, 40)),
                         draw(st.sampled_from([0, 1, 2, 3, 4, 8, 16])),
                         draw(st.sampled_from([0, 1, 2, 3, 4, 6, 7])), 0, 0,
                         draw(st.sampled_from([0, 1])))
    chunks = [chunk(b"IHDR", header)]
    if draw(st.booleans()):
        chunks.append(chunk(b"PLTE", draw(st.binary(max_size=60))))
    raw = draw(st.binary(max_size=500))
    chunks.append(chunk(b"IDAT", zlib.compress(raw) if draw(st.booleans()) else raw))
    if draw(st.booleans()):
        chunks.append(chunk(b"IEND", b""))
    data = PNG_SIGNATURE + b"".join(chunks)
    return data[:draw(st.integers(8, len(data)))]


@PROPERTIES
@given(data=chunked_pngs())
def test_png_files_with_random_headers_and_contents_are_decoded_or_refused(scratch, data):
    check_decoders_on(data, scratch)


@st.composite
def real_pngs(draw):
    """``(mode, pixel values, PNG bytes)`` written by PIL: every mode, random palettes."""
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]))
    shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if mode == "1":
        values = rng.random(shape) > 0.5
        return mode, values, png_bytes(values)
    if mode == "I;16":
        values = rng.integers(0, 65536, shape).astype(np.uint16)
        return mode, values, png_bytes(values)
    if mode == "P":
        size = draw(st.integers(1, 256))
        colours = rng.integers(0, 256, (size, 3))
        if draw(st.booleans()):   # repeated colours: the decoded colour does not tell the index
            colours = colours[rng.integers(0, size, size)]
        # Indices past a short palette too (an unlabeled 255 beside a 21-colour VOC palette).
        values = rng.integers(0, draw(st.sampled_from([size, 256])), shape).astype(np.uint8)
        image = Image.fromarray(values, "P")
        image.putpalette(colours.astype(np.uint8).ravel().tolist())
        return mode, values, png_bytes(image)
    channels = {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,)}[mode]
    values = rng.integers(0, 256, (*shape, *channels)).astype(np.uint8)
    return mode, values, png_bytes(values, mode)


@PROPERTIES
@given(png=real_pngs(), cut=st.floats(0.0, 1.0))
def test_real_pngs_decode_to_their_values_and_truncated_ones_are_refused(scratch, png, cut):
    mode, values, data = png
    image, labels, tf_image, tf_labels = check_decoders_on(data, scratch)
    assert image is not None and tf_image is not None        # every mode is an image
    if mode in ("RGB", "RGBA", "1"):    # colours are not classes; 1-bit levels are rescaled
        assert labels is None
    else:
        expected = values[..., 0] if mode == "LA" else values
        bit_depth = data[24]   # PIL packs a short palette's indices into fewer bits
        if expected.max() < 2 ** bit_depth:
            np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(tf_labels, labels)   # both readers, every palette
    # Any cut inside the file: decoded (when only the end marker is lost) or refused.
    check_decoders_on(data[:8 + int(cut * (len(data) - 9))], scratch)


def test_the_command_line_reports_a_non_finite_loss_in_one_line(tmp_path, capsys):
    from keras_regseg.cli.train import main

    config = tiny_config(tmp_path, iterations=4).override(**{"optimizer.learning_rate": 1e30})
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["--config", str(path)]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"error: loss = (nan|inf) at epoch 1, batch \d of 2", message), message
