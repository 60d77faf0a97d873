"""Predict label maps for image files with a trained network (``.keras`` file or SavedModel).

:func:`predict_files` reads images (a file, a folder with its sub-folders, a
glob pattern or a list of them), runs the network at each image's own size and
writes, under ``output_dir``, in the tree of the inputs (``<name>`` is an
image's path relative to the folder or pattern that found it, without its
extension, so images of the same name in different folders are both written):

- ``labels/<name>.png``: the predicted class of every pixel, as a palette PNG
  with the Pascal VOC colours (pixel values are class indices; read them back
  with :func:`keras_regseg.data.io.read_label_png`);
- ``probabilities/<name>.npy`` (``save_probabilities=True``): the softmax
  probabilities, float16 ``[H, W, K]`` (half the disk space of float32; values
  are exact to about 1e-3 and each pixel's K values sum to 1 within 1e-2);
- ``overlays/<name>.png`` (``save_overlays=True``): the image the network saw,
  blended half and half with the class colours (RGB).

Images are converted to the network's channels (RGB to luminance for a
one-channel network, grey copied to three channels for an RGB one; counted in
the summary). Unreadable files (corrupt, truncated, not images, or larger than
``max_pixels`` by their header) are skipped
with a :class:`SkippedImageWarning` naming them and counted in the summary;
they never stop the run. Every output file is written atomically.

A ``.keras`` file is loaded in Keras safe mode: a model carrying Python code
(a ``Lambda`` layer) is refused with :class:`UnsafeModelError` unless
``unsafe=True``.

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> from keras_regseg.models import UNet
>>> from keras_regseg.data.io import read_label_png
>>> folder = tempfile.mkdtemp()
>>> Image.fromarray(np.zeros((5, 7), np.uint8)).save(f"{folder}/slice.png")
>>> model = UNet(num_classes=3, filters=(4, 8), dropout=0.0)
>>> summary = predict_files(model, folder, f"{folder}/out", save_probabilities=True,
...                         progress=False)
>>> summary.num_predicted, summary.num_skipped
(1, 0)
>>> read_label_png(f"{folder}/out/labels/slice.png").shape
(5, 7)
>>> np.load(f"{folder}/out/probabilities/slice.npy").dtype.name
'float16'
"""

import dataclasses
import glob
import os
import typing
import warnings

import keras
import numpy as np
import tqdm
from PIL import Image

import keras_regseg.models  # noqa: F401  (registers the network classes for load_model)
from keras_regseg.constants import MAX_IMAGE_PIXELS
from keras_regseg.data.io import read_image, write_label_png
from keras_regseg.export import load_serving
from keras_regseg.inference import make_predict_fn
from keras_regseg.saving import check_safe_keras
from keras_regseg.utils.files import atomic_write
from keras_regseg.visualization import colorize

__all__ = ["find_images", "IMAGE_EXTENSIONS", "load_keras_model", "load_segmenter",
           "OUTPUT_FOLDERS", "OVERLAY_ALPHA", "overlay_labels", "predict_files",
           "PredictionSummary", "read_for_model", "Segmenter", "SkippedImageWarning",
           "UnsafeModelError"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File name endings picked up from folders and glob patterns (any case)."""

OUTPUT_FOLDERS = {"labels": "labels", "probabilities": "probabilities", "overlays": "overlays"}
"""Sub-folder of ``output_dir`` for each kind of output."""

OVERLAY_ALPHA = 0.5
"""Weight of the class colour in an overlay (the image gets ``1 - OVERLAY_ALPHA``)."""

_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class UnsafeModelError(ValueError):
    """A ``.keras`` file holds Python code (e.g. a ``Lambda`` layer) and safe mode refused it."""


class SkippedImageWarning(UserWarning):
    """An input file could not be read as an image; it was skipped."""


@dataclasses.dataclass
class Segmenter:
    """A loaded network: ``predict(images [B, H, W, C]) -> probabilities [B, H, W, K]``."""

    predict: typing.Callable
    channels: int
    name: str
    num_classes: typing.Optional[int] = None


@dataclasses.dataclass
class PredictionSummary:
    """What :func:`predict_files` did.

    ``predicted``: input paths with outputs written, in order; ``skipped``:
    ``(path, reason)`` of unreadable inputs; ``converted``: inputs converted
    between greyscale and RGB to match the network.
    """

    output_dir: str
    predicted: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    converted: list = dataclasses.field(default_factory=list)
    num_classes: typing.Optional[int] = None

    @property
    def num_predicted(self):
        return len(self.predicted)

    @property
    def num_skipped(self):
        return len(self.skipped)

    def __str__(self):
        lines = [f"predicted {self.num_predicted} image(s) into {self.output_dir}"]
        if self.converted:
            lines.append(f"converted {len(self.converted)} image(s) between greyscale and RGB "
                         "to the network's channels")
        if self.skipped:
            lines.append(f"skipped {self.num_skipped} unreadable file(s):")
            lines.extend(f"  {reason}" for _, reason in self.skipped)
        return "\n".join(lines)


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def find_images(inputs):
    """Paths of the images named by ``inputs``, in order, without repeats.

    ``inputs`` is a path or a list of them: a file (taken whatever its
    extension), a folder (its image files, sub-folders included) or a glob
    pattern (``*``, ``?``, ``[...]``; ``**`` descends into sub-folders). Raises
    ``FileNotFoundError`` naming an input that gives no image.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "sub"))
    >>> for name in ("b.png", "a.JPG", "notes.txt", "sub/c.png"):
    ...     _ = open(os.path.join(folder, name), "w")
    >>> [os.path.relpath(p, folder) for p in find_images(folder)]
    ['a.JPG', 'b.png', 'sub/c.png']
    """
    return list(dict.fromkeys(path for path, _ in _named_images(inputs)))


def _named_images(inputs, skip_folder=None):
    """``[(path, name)]``: each image and its path relative to the input that found it
    (a folder, the fixed part of a glob pattern; a file's own name), which the outputs mirror.
    Folders are walked without entering ``skip_folder`` (the output folder)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    skip = None if skip_folder is None else os.path.realpath(skip_folder)
    named = []
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            found = []
            for folder, subfolders, names in os.walk(item):
                subfolders[:] = sorted(d for d in subfolders
                                       if os.path.realpath(os.path.join(folder, d)) != skip)
                found += [os.path.join(folder, n) for n in names if _is_image_name(n)]
            found.sort()
            root = item
        elif os.path.isfile(item):
            found, root = [item], os.path.dirname(item)
        elif any(c in item for c in "*?["):
            found = sorted(p for p in glob.glob(item, recursive=True)
                           if os.path.isfile(p) and _is_image_name(p))
            fixed = item.split(os.sep)
            fixed = fixed[:next(i for i, part in enumerate(fixed) if any(c in part for c in "*?["))]
            root = os.sep.join(fixed)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder (nor a glob pattern).")
        if not found:
            raise FileNotFoundError(f"{item}: no image files found; expected files ending in "
                                    f"{', '.join(IMAGE_EXTENSIONS)}.")
        named.extend((path, os.path.relpath(path, root or os.curdir)) for path in found)
    seen = set()
    return [(path, name) for path, name in named if not (path in seen or seen.add(path))]


def load_segmenter(model_or_path, unsafe=False):
    """A :class:`Segmenter` from a ``keras.Model``, a ``.keras`` file or a SavedModel folder.

    A SavedModel folder is one written by
    :func:`~keras_regseg.export.export_saved_model` (a version folder or its
    parent, whose latest version is used). ``.keras`` files load in safe mode
    and SavedModel graphs are checked for ops beyond tensor arithmetic
    (:mod:`keras_regseg.export.graph_check`) unless ``unsafe=True``.
    """
    if isinstance(model_or_path, keras.Model):
        return _keras_segmenter(model_or_path, getattr(model_or_path, "name", "model"))
    path = os.fspath(model_or_path)
    if os.path.isdir(path):
        serving = load_serving(path, unsafe=unsafe)
        return _checked(Segmenter(lambda images: serving(images)["probabilities"].numpy(),
                                  serving.channels, path, serving.num_classes))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: model not found; expected a .keras file or a "
                                "SavedModel folder.")
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras file or a SavedModel folder.")
    return _keras_segmenter(load_keras_model(path, unsafe=unsafe), path)


def load_keras_model(path, unsafe=False):
    """``keras.saving.load_model(path, compile=False)`` in safe mode unless ``unsafe``.

    Raises :class:`UnsafeModelError` naming the file when safe mode refuses
    it, and ``ValueError`` naming the file when it cannot be loaded at all.
    """
    check_safe_keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error):
            raise UnsafeModelError(
                f"{path}: refused to load: the model holds Python code (such as a Lambda "
                "layer), which could run anything on this machine. Only if you trust the "
                "file, load it with unsafe=True (keras-regseg-predict --unsafe). "
                f"Keras said: {error}") from None
        raise ValueError(f"{path}: cannot load the model: {error}") from error
    except Exception as error:  # corrupt archive, unknown custom class, ...
        raise ValueError(f"{path}: cannot load the model ({type(error).__name__}: {error})."
                         ) from error


def _keras_segmenter(model, name):
    channels = model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None
    classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    return _checked(Segmenter(make_predict_fn(model), channels, name, classes))


def _checked(segmenter):
    if segmenter.channels is None:
        raise ValueError(f"cannot tell how many image channels {segmenter.name} takes; give it "
                         "an input of known shape [None, None, C].")
    if segmenter.channels not in (1, 3):
        raise ValueError(f"{segmenter.name} takes images of {segmenter.channels} channels; image "
                         "files can only be given as 1 (greyscale) or 3 (RGB) channels.")
    return segmenter


def read_for_model(path, channels, max_pixels=MAX_IMAGE_PIXELS):
    """``(image float32 [H, W, channels], converted)``: the file converted to ``channels``.

    ``converted`` says whether a greyscale file became RGB or the reverse.
    Raises ``ValueError`` naming the file when it cannot be decoded.
    """
    image = read_image(path, channels=channels, max_pixels=max_pixels)
    with Image.open(path) as header:  # read_image succeeded: only the header is read here
        native = 1 if header.mode in _GREY_MODES else 3
    return image, native != channels


def overlay_labels(image, labels, num_classes, alpha=OVERLAY_ALPHA):
    """RGB uint8 ``[H, W, 3]``: ``image`` blended with the colour of each pixel's class.

    >>> image = np.ones((1, 2, 1), np.float32)                 # white, greyscale
    >>> overlay_labels(image, np.array([[0, 1]]), 2).tolist()  # class 1 is (128, 0, 0)
    [[[128, 128, 128], [192, 128, 128]]]
    """
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    colours = colorize(labels, num_classes).astype(np.float32) / 255.0
    return np.round(255.0 * ((1.0 - alpha) * rgb + alpha * colours)).astype(np.uint8)


def _output_paths(named, output_dir, save_probabilities, save_overlays):
    """``{input: {kind: output path}}`` mirroring each input's relative name; refuses name
    clashes and overwriting an input."""
    kinds = ["labels"] + ["probabilities"] * save_probabilities + ["overlays"] * save_overlays
    suffix = {"labels": ".png", "probabilities": ".npy", "overlays": ".png"}
    names, outputs = {}, {}
    for path, relative in named:
        name = os.path.splitext(relative)[0]
        if name in names:
            raise ValueError(f"{names[name]} and {path} would both be written as {name!r}; "
                             "predict them into different output folders.")
        names[name] = path
        outputs[path] = {kind: os.path.join(output_dir, OUTPUT_FOLDERS[kind], name + suffix[kind])
                         for kind in kinds}
    inputs = {os.path.realpath(p): p for p, _ in named}
    for targets in outputs.values():
        for target in targets.values():
            if os.path.realpath(target) in inputs:
                raise ValueError(f"{target} is one of the inputs; choose another output folder.")
    return outputs


def _write_outputs(targets, image, probabilities, num_classes):
    labels = np.argmax(probabilities, axis=-1)
    atomic_write(targets["labels"], lambda tmp: write_label_png(tmp, labels))
    if "probabilities" in targets:
        atomic_write(targets["probabilities"],
                     lambda tmp: np.save(tmp, probabilities.astype(np.float16)))
    if "overlays" in targets:
        blended = Image.fromarray(overlay_labels(image, labels, num_classes), "RGB")
        atomic_write(targets["overlays"], lambda tmp: blended.save(tmp, format="PNG"))


def predict_files(model_or_path, inputs, output_dir, save_probabilities=False,
                  save_overlays=False, batch_size=8, progress=True, unsafe=False,
                  max_pixels=MAX_IMAGE_PIXELS):
    """Predict every image of ``inputs`` and write the outputs under ``output_dir``.

    Args:
        model_or_path: a ``keras.Model``, a ``.keras`` file or a SavedModel folder.
        inputs: a file, a folder, a glob pattern, or a list of them (see :func:`find_images`).
        output_dir: created if missing; outputs go to its ``labels/``,
            ``probabilities/`` and ``overlays/`` sub-folders (see the module doc).
        save_probabilities: also write float16 ``[H, W, K]`` ``.npy`` probability maps.
        save_overlays: also write PNGs of the image blended with the class colours.
        batch_size: images per network call (consecutive images of one size are batched).
        progress: show a progress bar.
        unsafe: allow ``.keras`` files holding Python code and SavedModels holding ops
            beyond tensor arithmetic (only for trusted files).
        max_pixels: images whose header declares more pixels are skipped before
            decoding (see :data:`~keras_regseg.constants.MAX_IMAGE_PIXELS`).

    Returns:
        A :class:`PredictionSummary`. Unreadable inputs are skipped (with a
        :class:`SkippedImageWarning`), not raised. A network whose output is
        not finite raises ``ValueError`` naming the image.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    named = _named_images(inputs, skip_folder=output_dir)
    paths = [path for path, _ in named]
    outputs = _output_paths(named, output_dir, save_probabilities, save_overlays)
    segmenter = load_segmenter(model_or_path, unsafe=unsafe)
    for folder in {os.path.dirname(t) for targets in outputs.values() for t in targets.values()}:
        os.makedirs(folder, exist_ok=True)
    summary = PredictionSummary(output_dir=os.fspath(output_dir))

    def run(batch):
        probabilities = segmenter.predict(np.stack([image for _, image in batch]))
        summary.num_classes = int(probabilities.shape[-1])
        for (path, image), probs in zip(batch, probabilities):
            if not np.isfinite(probs).all():
                raise ValueError(f"{segmenter.name} gives non-finite probabilities (NaN or inf) "
                                 f"for {path}; the network's weights are broken.")
            _write_outputs(outputs[path], image, probs, summary.num_classes)
            summary.predicted.append(path)

    pending = []
    with tqdm.tqdm(total=len(paths), desc="predicting", unit="image",
                   disable=not progress) as bar:
        for path in paths:
            try:
                image, converted = read_for_model(path, segmenter.channels, max_pixels)
            except (ValueError, OSError) as error:
                reason = str(error) if path in str(error) else f"{path}: {error}"
                summary.skipped.append((path, reason))
                warnings.warn(f"{reason} Skipped.", SkippedImageWarning, stacklevel=2)
                bar.update(1)
                continue
            if converted:
                summary.converted.append(path)
            if pending and (len(pending) == batch_size or pending[0][1].shape != image.shape):
                run(pending)
                bar.update(len(pending))
                pending = []
            pending.append((path, image))
        if pending:
            run(pending)
            bar.update(len(pending))
    return summary
