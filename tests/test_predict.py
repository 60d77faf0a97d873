"""Prediction of image files: outputs against the network, formats, bad inputs, the CLI."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_regseg.cli import predict as predict_cli
from keras_regseg.data.io import read_image, read_label_png
from keras_regseg.export import export_saved_model
from keras_regseg.inference import make_predict_fn
from keras_regseg.models import UNet
from keras_regseg.prediction import (OVERLAY_ALPHA, SkippedImageWarning, UnsafeModelError,
                                     find_images, overlay_labels, predict_files)
from keras_regseg.visualization import palette

NUM_CLASSES = 3


def _lively_unet(input_channels, filters, seed):
    """A tiny UNet whose predicted class changes from pixel to pixel.

    A freshly initialized network predicts nearly the same probabilities
    everywhere (logits vary by ~0.01), which would make label maps
    uninformative: its logit layer is scaled up.
    """
    keras.utils.set_random_seed(seed)
    net = UNet(num_classes=NUM_CLASSES, input_channels=input_channels, filters=filters,
               dropout=0.0)
    for weight in net.weights:
        if weight.path.endswith("logits/kernel"):
            weight.assign(weight.numpy() * 60.0)
        elif weight.path.endswith("logits/bias"):
            weight.assign(np.zeros(weight.shape, np.float32))
    return net


@pytest.fixture(scope="module")
def grey_model():
    return _lively_unet(1, (4, 8, 16), seed=0)   # size_divisor 4


@pytest.fixture(scope="module")
def keras_file(grey_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "net.keras"
    grey_model.save(path)
    return path


def _write_png(path, shape, seed, mode=None):
    pixels = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return pixels


def _reference(model, image):
    """Probabilities ``[H, W, K]`` of one image by the library's single-image inference."""
    return make_predict_fn(model)(image[None])[0]


def test_outputs_equal_one_image_at_a_time_inference(grey_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    # Mixed sizes in an order that makes batches of 2, then a lone image, then a size change.
    sizes = {"a": (8, 8), "b": (8, 8), "c": (5, 7), "d": (8, 8), "e": (9, 13)}
    for seed, (name, shape) in enumerate(sizes.items()):
        _write_png(inputs / f"{name}.png", shape, seed)
    summary = predict_files(grey_model, str(inputs), tmp_path / "out", save_probabilities=True,
                            batch_size=2, progress=False)
    assert summary.num_predicted == 5 and summary.num_skipped == 0 and summary.converted == []
    assert summary.num_classes == NUM_CLASSES
    seen_classes = set()
    for name, shape in sizes.items():
        expected = _reference(grey_model, read_image(inputs / f"{name}.png", channels=1))
        labels = read_label_png(tmp_path / "out" / "labels" / f"{name}.png")
        probabilities = np.load(tmp_path / "out" / "probabilities" / f"{name}.npy")
        assert labels.shape == shape and probabilities.shape == (*shape, NUM_CLASSES)
        assert probabilities.dtype == np.float16
        np.testing.assert_allclose(probabilities, expected, atol=1e-3)
        # Ties aside, the label is the most probable class.
        clear = np.sort(expected, axis=-1)[..., -1] - np.sort(expected, axis=-1)[..., -2] > 1e-3
        np.testing.assert_array_equal(labels[clear], expected.argmax(-1)[clear])
        seen_classes.update(np.unique(labels).tolist())
    assert len(seen_classes) > 1   # the label maps say something
    # Images whose size the network takes as is: the reference needs no padding at all.
    image = read_image(inputs / "a.png", channels=1)
    direct = keras.ops.softmax(grey_model(image[None], training=False), axis=-1)[0]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities" / "a.npy"),
                               keras.ops.convert_to_numpy(direct), atol=1e-3)


def test_keras_file_and_saved_model_give_the_same_outputs(keras_file, grey_model, tmp_path):
    _write_png(tmp_path / "x.png", (8, 12), seed=1)
    export_saved_model(grey_model, str(tmp_path / "exported"))   # version folder 1/
    results = {}
    for name, model in (("keras", str(keras_file)), ("saved", str(tmp_path / "exported"))):
        summary = predict_files(model, str(tmp_path / "x.png"), tmp_path / name,
                                save_probabilities=True, progress=False)
        assert summary.num_predicted == 1
        results[name] = (read_label_png(tmp_path / name / "labels" / "x.png"),
                         np.load(tmp_path / name / "probabilities" / "x.npy"))
    np.testing.assert_array_equal(results["keras"][0], results["saved"][0])
    np.testing.assert_allclose(results["keras"][1], results["saved"][1], atol=1e-3)


def test_keras_file_and_saved_model_agree_on_sizes_that_need_padding(keras_file, grey_model,
                                                                   tmp_path):
    _write_png(tmp_path / "x.png", (9, 13), seed=2)
    export_saved_model(grey_model, str(tmp_path / "exported"))
    outputs = []
    for name, model in (("keras", str(keras_file)), ("saved", str(tmp_path / "exported"))):
        predict_files(model, str(tmp_path / "x.png"), tmp_path / name, save_probabilities=True,
                      progress=False)
        outputs.append(np.load(tmp_path / name / "probabilities" / "x.npy"))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-3)


def test_images_much_smaller_than_the_size_divisor(grey_model, tmp_path):
    _write_png(tmp_path / "tiny.png", (1, 2), seed=3)   # divisor 4: pads 3 rows to 1 row
    summary = predict_files(grey_model, str(tmp_path / "tiny.png"), tmp_path / "out",
                            progress=False)
    assert summary.num_predicted == 1


def test_grey_and_rgb_files_are_converted_to_the_network_channels(grey_model, tmp_path):
    rgb_pixels = _write_png(tmp_path / "colour.png", (8, 8, 3), seed=4)
    grey_pixels = _write_png(tmp_path / "grey.png", (8, 8), seed=5)
    summary = predict_files(grey_model, [str(tmp_path / "colour.png"), str(tmp_path / "grey.png")],
                            tmp_path / "out1", save_probabilities=True, progress=False)
    assert summary.converted == [str(tmp_path / "colour.png")]
    # The one-channel network sees the luminance (ITU-R 601-2, as PIL computes it).
    luminance = np.asarray(Image.fromarray(rgb_pixels).convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(np.load(tmp_path / "out1" / "probabilities" / "colour.npy"),
                               _reference(grey_model, luminance[..., None]), atol=1e-3)

    rgb_model = _lively_unet(3, (4, 8), seed=1)
    summary = predict_files(rgb_model, str(tmp_path / "grey.png"), tmp_path / "out3",
                            save_probabilities=True, progress=False)
    assert summary.converted == [str(tmp_path / "grey.png")]
    grey3 = np.repeat(grey_pixels[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    np.testing.assert_allclose(np.load(tmp_path / "out3" / "probabilities" / "grey.npy"),
                               _reference(rgb_model, grey3), atol=1e-3)

    two_channel = UNet(num_classes=2, input_channels=2, filters=(4, 8), dropout=0.0)
    with pytest.raises(ValueError, match="2 channels.*1 \\(greyscale\\) or 3 \\(RGB\\)"):
        predict_files(two_channel, str(tmp_path / "grey.png"), tmp_path / "out2", progress=False)


def test_unreadable_files_are_skipped_named_and_counted(grey_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_png(inputs / "good.png", (8, 8), seed=6)
    whole = (inputs / "good.png").read_bytes()
    (inputs / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (inputs / "text.jpg").write_bytes(b"this is not a JPEG")
    (inputs / "empty.png").write_bytes(b"")
    with pytest.warns(SkippedImageWarning) as caught:
        summary = predict_files(grey_model, str(inputs), tmp_path / "out", save_overlays=True,
                                progress=False)
    bad = sorted(str(inputs / n) for n in ("truncated.png", "text.jpg", "empty.png"))
    assert summary.predicted == [str(inputs / "good.png")]
    assert sorted(path for path, _ in summary.skipped) == bad
    for path, reason in summary.skipped:
        assert reason.startswith(path) and "corrupt, truncated or not an image" in reason
    skip_warnings = [w for w in caught if issubclass(w.category, SkippedImageWarning)]
    assert sorted(str(w.message).split(":")[0] for w in skip_warnings) == bad
    assert sorted(os.listdir(tmp_path / "out" / "labels")) == ["good.png"]
    assert sorted(os.listdir(tmp_path / "out" / "overlays")) == ["good.png"]
    assert "skipped 3 unreadable file(s)" in str(summary)


def test_overlay_is_the_image_blended_with_the_class_colours(grey_model, tmp_path):
    pixels = _write_png(tmp_path / "x.png", (5, 7), seed=7)
    predict_files(grey_model, str(tmp_path / "x.png"), tmp_path / "out", save_overlays=True,
                  progress=False)
    labels = read_label_png(tmp_path / "out" / "labels" / "x.png")
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / "x.png"))
    assert overlay.shape == (5, 7, 3) and overlay.dtype == np.uint8
    colours = palette(NUM_CLASSES)
    for row in range(5):   # pixel by pixel, from the definition
        for col in range(7):
            grey = pixels[row, col] / 255.0
            expected = np.round(255 * ((1 - OVERLAY_ALPHA) * grey
                                       + OVERLAY_ALPHA * colours[labels[row, col]] / 255.0))
            np.testing.assert_allclose(overlay[row, col], expected, atol=1)
    np.testing.assert_array_equal(
        overlay, overlay_labels(pixels[..., None] / 255.0, labels, NUM_CLASSES))


def _lambda_model(path):
    inputs = keras.Input((None, None, 1))
    doubled = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(NUM_CLASSES, 1)(doubled))
    model.save(path)
    return model


def test_a_keras_file_with_python_code_needs_the_opt_in(tmp_path):
    model = _lambda_model(tmp_path / "lambda.keras")
    _write_png(tmp_path / "x.png", (4, 4), seed=8)
    with pytest.raises(UnsafeModelError, match="lambda.keras.*unsafe=True"):
        predict_files(str(tmp_path / "lambda.keras"), str(tmp_path / "x.png"), tmp_path / "out",
                      progress=False)
    assert not (tmp_path / "out").exists()   # refused before anything was written
    summary = predict_files(str(tmp_path / "lambda.keras"), str(tmp_path / "x.png"),
                            tmp_path / "out", save_probabilities=True, progress=False,
                            unsafe=True)
    assert summary.num_predicted == 1
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities" / "x.npy"),
                               _reference(model, read_image(tmp_path / "x.png", channels=1)),
                               atol=1e-3)


def test_non_finite_network_output_is_an_error_naming_the_image(tmp_path):
    broken = UNet(num_classes=2, filters=(4, 8), dropout=0.0)
    kernel = broken.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    _write_png(tmp_path / "x.png", (4, 4), seed=9)
    with pytest.raises(ValueError, match="non-finite.*x.png"):
        predict_files(broken, str(tmp_path / "x.png"), tmp_path / "out", progress=False)


def test_inputs_by_file_folder_and_glob(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    names = lambda paths: [os.path.relpath(p, tmp_path) for p in paths]  # noqa: E731
    assert names(find_images(tmp_path)) == [                             # not notes.txt
        "a.JPG", "b.png", "sub/c.jpeg", "sub/deeper/d.png"]
    assert names(find_images(str(tmp_path / "**" / "*.*"))) == [
        "a.JPG", "b.png", "sub/c.jpeg", "sub/deeper/d.png"]
    assert names(find_images([str(tmp_path / "notes.txt"), str(tmp_path / "b.png"),
                              str(tmp_path / "b.png")])) == ["notes.txt", "b.png"]
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        find_images(str(tmp_path / "missing.png"))
    with pytest.raises(FileNotFoundError, match=r"\*.gif: no image files found"):
        find_images(str(tmp_path / "*.gif"))
    (tmp_path / "sub" / "b.jpeg").write_bytes(b"")
    model = UNet(num_classes=2, filters=(4, 8), dropout=0.0)
    with pytest.raises(ValueError, match="both be written as 'b'"):
        predict_files(model, [str(tmp_path / "b.png"), str(tmp_path / "sub" / "b.jpeg")],
                      tmp_path / "out", progress=False)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is one of the inputs"):
        predict_files(model, str(tmp_path / "labels" / "*.png"), tmp_path, progress=False)


def test_command_line(keras_file, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_png(inputs / "good.png", (8, 8), seed=10)
    (inputs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    status = predict_cli.main(["--model", str(keras_file), "--input", str(inputs / "*.png"),
                               "--output", str(out), "--probabilities", "--overlays", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1                              # one file skipped
    assert f"warning: {inputs / 'bad.png'}: cannot decode image" in captured.err
    assert "predicted 1 image(s)" in captured.out and "skipped 1" in captured.out
    for kind, name in (("labels", "good.png"), ("probabilities", "good.npy"),
                       ("overlays", "good.png")):
        assert os.listdir(out / kind) == [name]

    assert predict_cli.main(["--model", str(keras_file), "--input", str(inputs / "good.png"),
                             "--output", str(tmp_path / "out2"), "--quiet"]) == 0
    assert predict_cli.main(["--model", str(tmp_path / "missing.keras"), "--input",
                             str(inputs), "--output", str(out)]) == 2
    assert "missing.keras" in capsys.readouterr().err
    _lambda_model(tmp_path / "lambda.keras")
    assert predict_cli.main(["--model", str(tmp_path / "lambda.keras"), "--input",
                             str(inputs / "good.png"), "--output", str(out), "--quiet"]) == 2
    assert "--unsafe" in capsys.readouterr().err


def test_a_folder_tree_is_predicted_into_the_same_tree(tmp_path):
    for name in ("scans/x.png", "scans/left/x.png", "scans/right/deep/x.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / name)
    model = UNet(num_classes=2, filters=(4, 8), dropout=0.0)
    output = tmp_path / "scans" / "out"      # inside the input folder: never read back
    for _ in range(2):
        summary = predict_files(model, str(tmp_path / "scans"), output, progress=False)
        assert summary.num_predicted == 3
    written = sorted(os.path.relpath(os.path.join(folder, name), output / "labels")
                     for folder, _, names in os.walk(output / "labels") for name in names)
    assert written == ["left/x.png", "right/deep/x.png", "x.png"]
