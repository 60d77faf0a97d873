"""Pascal VOC style folders with ScribbleSup scribbles.

Layout (every folder name configurable)::

    root/
      JPEGImages/<id>.jpg (or .png)            images
      pascal_2012_scribble/<id>.png            scribbles: 0 background, 1..20 classes,
                                               255 unlabeled
      SegmentationClassAug/<id>.png            optional masks, 255 = void
      ImageSets/Segmentation/<split>.txt       one id per line

Label PNGs are read as pixel values: palette indices for palette PNGs (as the
VOC masks are stored), grey levels for single-channel PNGs. Colour-coded RGB
label PNGs are refused. The file's unlabeled value (scribbles) and void value
(masks) become :data:`~keras_regseg.data.spec.IGNORE_INDEX`. Greyscale images
are converted to RGB (the grey copied to three channels), so every sample has
3 channels (``channels=1``: colour images are converted to luminance).

Missing files, empty or missing split lists, unreadable image headers, images
larger than ``max_pixels`` and RGB label PNGs fail when the folder is opened;
size mismatches and label values out of range fail when the
sample is loaded, naming the file.

>>> import os, tempfile
>>> import numpy as np
>>> from PIL import Image
>>> from keras_regseg.data.io import write_label_png
>>> root = tempfile.mkdtemp()
>>> for sub in ("JPEGImages", "pascal_2012_scribble", "ImageSets/Segmentation"):
...     os.makedirs(os.path.join(root, sub))
>>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(f"{root}/JPEGImages/a.png")
>>> scribble = np.full((4, 6), 255, np.uint8); scribble[1, 1:4] = 12
>>> write_label_png(f"{root}/pascal_2012_scribble/a.png", scribble)
>>> _ = open(f"{root}/ImageSets/Segmentation/train.txt", "w").write("a\\n")
>>> voc = VOCFolder(root, split="train")
>>> sample = voc.load(0)
>>> sample["image"].shape, sample["weak_label"][1, :5].tolist()
((4, 6, 3), [255, 12, 12, 12, 255])
>>> sample["tags"].nonzero()[0].tolist()
[12]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tqdm

from keras_regseg.data.base import SegmentationSource, tags_from_labels
from keras_regseg.data.io import (MAX_IMAGE_PIXELS, check_image_pixels, check_label_png,
                                  image_size, read_image, read_label_png, tf_decode_image,
                                  tf_decode_label_png)
from keras_regseg.data.spec import IGNORE_INDEX, MAX_CLASSES
from keras_regseg.data.weak_labels import shorten_scribbles
from keras_regseg.utils.files import read_text_lines

__all__ = ["IMAGE_EXTENSIONS", "map_label_values", "path_inside", "read_boxes_file",
           "read_split_file", "read_tags_file", "tf_map_label_values", "tf_tags_from_labels",
           "VOC_CLASS_NAMES", "VOCFolder"]

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_PROGRESS_MIN_FILES = 2000  # checking headers is ~20-100 us a file; show a bar for big sets


def read_split_file(path):
    """Ids listed in a split file, in order.

    One id per line; blank lines are skipped. A line may also hold file paths
    (``/JPEGImages/x.jpg /SegmentationClassAug/x.png``, the DeepLab list
    format): its first token's base name without extension is the id.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path} not found.")
    ids = [os.path.splitext(os.path.basename(line.split()[0]))[0]
           for line in read_text_lines(path, "split file") if line.strip()]
    if not ids:
        raise ValueError(f"split file {path} lists no ids; expected one id per line.")
    seen = set()
    duplicates = [i for i in ids if i in seen or seen.add(i)]
    if duplicates:
        raise ValueError(f"split file {path} lists {duplicates[0]!r} more than once.")
    return ids


def read_tags_file(path, ids, num_classes):
    """Multi-hot float32 ``[len(ids), K]`` from lines ``id c1 c2 ...`` (class indices)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tags file {path} not found.")
    rows = {}
    for line_number, line in enumerate(read_text_lines(path, "tags file"), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            classes = [int(t) for t in tokens[1:]]
        except ValueError:
            raise ValueError(f"{path}:{line_number}: expected 'id c1 c2 ...' with integer "
                             f"class indices; got {line.strip()!r}.") from None
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"{path}:{line_number}: class index {bad[0]} outside "
                             f"[0, {num_classes}).")
        rows[tokens[0]] = classes
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ValueError(f"tags file {path} has no line for id {missing[0]!r} "
                         f"({len(missing)} of {len(ids)} ids missing).")
    tags = np.zeros((len(ids), num_classes), np.float32)
    for row, image_id in enumerate(ids):
        tags[row, rows[image_id]] = 1.0
    return tags


def map_label_values(values, path, unlabeled_value, num_classes, what):
    """Class indices with ``unlabeled_value`` -> IGNORE_INDEX; other values outside [0, K) raise."""
    values = np.asarray(values, np.int32)
    unlabeled = values == unlabeled_value
    bad = ~unlabeled & ((values < 0) | (values >= num_classes))
    if bad.any():
        raise ValueError(
            f"{path}: {what} value {int(values[bad][0])} outside [0, {num_classes}) and not the "
            f"unlabeled value {unlabeled_value} ({int(bad.sum())} pixels).")
    return np.where(unlabeled, IGNORE_INDEX, values).astype(np.int32)


def tf_map_label_values(values, path, unlabeled_value, num_classes, what):
    """TF twin of :func:`map_label_values`; the error names the file and the value."""
    unlabeled = tf.equal(values, unlabeled_value)
    bad = tf.logical_and(tf.logical_not(unlabeled),
                         tf.logical_or(values < 0, values >= num_classes))
    first_bad = tf.reduce_max(tf.where(bad, values, -1))
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [tf.strings.format(
        "{}: " + what + " value {} outside [0, " + str(num_classes) + ") and not the unlabeled "
        "value " + str(unlabeled_value) + ".", [path, first_bad])])
    with tf.control_dependencies([check]):
        return tf.where(unlabeled, IGNORE_INDEX, values)


def tf_tags_from_labels(labels, num_classes):
    """TF twin of :func:`~keras_regseg.data.base.tags_from_labels`."""
    present = tf.boolean_mask(labels, tf.logical_and(labels >= 0, labels < num_classes))
    counts = tf.math.bincount(present, minlength=num_classes, maxlength=num_classes)
    return tf.cast(counts > 0, tf.float32)


def _tf_assert_same_size(image, labels, image_path, label_path):
    """Control dependency failing when ``labels`` [H, W] is not the size of ``image`` [H, W, C]."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(labels)))
    return tf.debugging.Assert(same, [tf.strings.format(
        "{} is {}x{} (HxW) but {} is {}x{}; labels must have the image's size.",
        [label_path, tf.shape(labels)[0], tf.shape(labels)[1],
         image_path, tf.shape(image)[0], tf.shape(image)[1]])])


def path_inside(root, name, what):
    """``root/name``, refused (``ValueError``) when a relative ``name`` leads out of ``root``.

    A relative path in a config is read against the data root and must stay
    there (``../../etc/passwd`` must not become a split list whose first word is
    echoed in an error); an absolute path is the user's explicit choice.

    >>> path_inside("/data/voc", "ImageSets/train.txt", "split file")
    '/data/voc/ImageSets/train.txt'
    >>> path_inside("/data/voc", "../../etc/passwd", "split file")
    Traceback (most recent call last):
    ...
    ValueError: split file ../../etc/passwd leads out of the data folder /data/voc; ...
    """
    if os.path.isabs(name):
        return name
    path = os.path.join(root, name)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise ValueError(f"{what} {name} leads out of the data folder {root}; give a path "
                         "inside it, or an absolute path to use a file elsewhere.")
    return path


def _resolve_folder(root, name, what, required):
    """Absolute folder path or None; a required folder that is absent raises."""
    if name is None:
        return None
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        if required:
            raise FileNotFoundError(f"{what} folder {path} not found.")
        return None
    return path


def _files_for_ids(folder, ids, extensions, what, split_path):
    """Path of each id's file in ``folder`` (first matching extension); a missing one raises."""
    present = set(os.listdir(folder))
    paths, missing = [], []
    for image_id in ids:
        name = next((image_id + ext for ext in extensions if image_id + ext in present), None)
        if name is None:
            missing.append(image_id)
        else:
            paths.append(os.path.join(folder, name))
    if missing:
        expected = os.path.join(folder, missing[0] + extensions[0])
        raise FileNotFoundError(
            f"{what} file {expected} not found for id {missing[0]!r} listed in {split_path} "
            f"({len(missing)} of {len(ids)} ids have no {what} file"
            + (f" with extension {'/'.join(extensions)}" if len(extensions) > 1 else "") + ").")
    return paths


def read_boxes_file(path, ids, num_classes, sizes):
    """Boxes of each image from a text file, normalized: ``(boxes [N, R, 4], classes [N, R])``.

    One box per line, ``id class x_min y_min x_max y_max``, in pixels of the
    image: ``(x_min, y_min)`` is the box's top-left corner and ``(x_max, y_max)``
    its bottom-right one, as edges (a one-pixel box at column 3, row 5 is
    ``3 5 4 6``; VOC's XML corners ``xmin ymin xmax ymax``, 1-based and
    inclusive, give ``xmin - 1, ymin - 1, xmax, ymax``). Images may have no line
    (no box); ``#`` starts a comment. Boxes come out as ``(y0, x0, y1, x1)``
    fractions of the image's ``sizes[i] = (width, height)``, padded with class -1
    to the largest count of any image.

    A box outside its image, of zero area, of a class outside ``[0, K)``, or of
    an id not in the split is refused, naming the file, line and box.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"boxes file {path} not found.")
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    per_image = [[] for _ in ids]
    for line_number, line in enumerate(read_text_lines(path, "boxes file"), 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        where = f"{path}:{line_number}"
        try:
            if len(tokens) != 6:
                raise ValueError
            label, corners = int(tokens[1]), [float(t) for t in tokens[2:]]
        except ValueError:
            raise ValueError(f"{where}: expected 'id class x_min y_min x_max y_max' (pixels); "
                             f"got {line.strip()!r}.") from None
        if tokens[0] not in row_of:
            raise ValueError(f"{where}: id {tokens[0]!r} is not in the split.")
        if not 0 <= label < num_classes:
            raise ValueError(f"{where}: box class {label} outside [0, {num_classes}).")
        width, height = sizes[row_of[tokens[0]]]
        x0, y0, x1, y1 = corners
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"{where}: box ({x0:g}, {y0:g}) - ({x1:g}, {y1:g}) is empty or "
                             f"outside the {width}x{height} (WxH) image; expected "
                             f"0 <= x_min < x_max <= {width} and 0 <= y_min < y_max <= {height}.")
        per_image[row_of[tokens[0]]].append((label, (y0 / height, x0 / width,
                                                     y1 / height, x1 / width)))
    count = max(1, max(len(boxes) for boxes in per_image))
    boxes = np.zeros((len(ids), count, 4), np.float32)
    classes = np.full((len(ids), count), -1, np.int32)
    for row, image_boxes in enumerate(per_image):
        for column, (label, box) in enumerate(image_boxes):
            boxes[row, column], classes[row, column] = box, label
    return boxes, classes


class VOCFolder(SegmentationSource):
    """A Pascal VOC style folder with scribble (and optional mask) PNGs.

    Args:
        root: the dataset folder.
        split: split name; the ids come from ``split_file`` formatted with it.
        image_dir: image folder (``.jpg``, ``.jpeg`` or ``.png`` files).
        scribble_dir: scribble PNG folder; ``None`` for no weak labels (all IGNORE_INDEX).
        mask_dir: mask PNG folder, ``"auto"`` (``SegmentationClassAug`` if present, else
            ``SegmentationClass``, else none) or ``None`` (dense labels all IGNORE_INDEX).
        split_file: path of the id list relative to ``root``, ``{split}`` replaced.
        unlabeled_value: scribble pixel value meaning "unlabeled".
        void_value: mask pixel value meaning "void" (object borders in VOC).
        num_classes: K; scribble and mask values must be in ``[0, K)`` or the
            unlabeled/void value.
        class_names: K names (VOC names by default when K = 21).
        tags_file: optional file with lines ``id c1 c2 ...``; otherwise tags come
            from the mask, else the scribbles. Like ``split_file``, a relative path
            must stay inside ``root``; an absolute path is taken as given.
        boxes_file: optional file of boxes, one per line (:func:`read_boxes_file`);
            samples then carry ``"boxes"`` and ``"box_classes"`` (CCNN box
            constraints). Located like ``tags_file``.
        channels: 3 (RGB; greyscale files are copied to three channels) or 1
            (colour files are converted to luminance).
        max_pixels: images and label PNGs whose header declares more pixels are
            refused when the folder opens (see :data:`~keras_regseg.data.io.MAX_IMAGE_PIXELS`).
        scribble_ratio: fraction of each scribble's length kept (1 = all, 0 = one
            click per scribble), by :func:`~keras_regseg.data.weak_labels.shorten_scribbles`.
            Below 1 this is the one step of ``tf.data`` decoding that runs in
            Python (``tf.numpy_function``), once per sample and epoch.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_dir: str = "JPEGImages",
                 scribble_dir: str = "pascal_2012_scribble", mask_dir: str | None = "auto",
                 split_file: str = "ImageSets/Segmentation/{split}.txt", unlabeled_value: int = 255,
                 void_value: int = 255, num_classes: int = 21,
                 class_names: Sequence[str] | None = None, tags_file: str | None = None,
                 scribble_ratio: float = 1.0, channels: int = 3, max_pixels: int = MAX_IMAGE_PIXELS,
                 boxes_file: str | None = None):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"VOC folder {root} not found.")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3 for image files; got {channels}.")
        self.channels, self.max_pixels = int(channels), int(max_pixels)
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}]; got {num_classes}.")
        for name, value in (("unlabeled_value", unlabeled_value), ("void_value", void_value)):
            if 0 <= value < num_classes:
                raise ValueError(f"{name} = {value} is a class index (num_classes = "
                                 f"{num_classes}); expected a value outside [0, {num_classes}).")
        if not 0 <= scribble_ratio <= 1:
            raise ValueError(f"scribble_ratio must be in [0, 1]; got {scribble_ratio!r}.")
        self.scribble_ratio = float(scribble_ratio)
        self.root, self.split = root, split
        self.num_classes = int(num_classes)
        self.unlabeled_value, self.void_value = int(unlabeled_value), int(void_value)
        if class_names is None:
            class_names = (VOC_CLASS_NAMES if num_classes == len(VOC_CLASS_NAMES)
                           else tuple(f"class_{k}" for k in range(num_classes)))
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names; expected {num_classes}.")
        self.class_names = tuple(class_names)

        self.split_path = path_inside(root, split_file.format(split=split), "split file")
        self._ids = read_split_file(self.split_path)
        image_folder = _resolve_folder(root, image_dir, "image", required=True)
        self.image_paths = _files_for_ids(image_folder, self._ids, IMAGE_EXTENSIONS, "image",
                                          self.split_path)
        scribble_folder = _resolve_folder(root, scribble_dir, "scribble", required=True)
        self.scribble_paths = (None if scribble_folder is None else _files_for_ids(
            scribble_folder, self._ids, (".png",), "scribble", self.split_path))
        if mask_dir == "auto":
            mask_folder = (_resolve_folder(root, "SegmentationClassAug", "mask", False)
                           or _resolve_folder(root, "SegmentationClass", "mask", False))
        else:
            mask_folder = _resolve_folder(root, mask_dir, "mask", required=True)
        self.mask_paths = (None if mask_folder is None else _files_for_ids(
            mask_folder, self._ids, (".png",), "mask", self.split_path))
        self._check_files()
        self.tags = None
        if tags_file is not None:
            self.tags = read_tags_file(path_inside(root, tags_file, "tags file"), self._ids,
                                       num_classes)
        self.boxes = self.box_classes = None
        if boxes_file is not None:
            self.boxes, self.box_classes = read_boxes_file(
                path_inside(root, boxes_file, "boxes file"), self._ids, num_classes,
                [image_size(path) for path in self.image_paths])

    def output_signature(self):
        signature = super().output_signature()
        if self.boxes is not None:
            signature["boxes"] = tf.TensorSpec(self.boxes.shape[1:], tf.float32)
            signature["box_classes"] = tf.TensorSpec(self.box_classes.shape[1:], tf.int32)
        return signature

    def _check_files(self):
        """Refuse unreadable or oversized images and RGB label PNGs now rather than
        mid-training: only headers are read (PNG, JPEG), no pixels."""
        labels = (self.scribble_paths or []) + (self.mask_paths or [])
        paths = self.image_paths + labels
        for path in tqdm.tqdm(paths, desc="checking image headers", unit="file",
                              disable=len(paths) < _PROGRESS_MIN_FILES):
            if path in labels:
                check_label_png(path, self.max_pixels)
            else:
                check_image_pixels(path, self.max_pixels, size=image_size(path))

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return list(self._ids)

    def load(self, index):
        """Sample ``index`` as numpy arrays, decoded with PIL (see the module doc)."""
        image_path = self.image_paths[index]
        image = read_image(image_path, channels=self.channels, max_pixels=self.max_pixels)
        size = image.shape[:2]
        labels = {}
        for key, paths, special, what in (
                ("weak_label", self.scribble_paths, self.unlabeled_value, "scribble"),
                ("dense_label", self.mask_paths, self.void_value, "mask")):
            if paths is None:
                labels[key] = np.full(size, IGNORE_INDEX, np.int32)
                continue
            values = read_label_png(paths[index], self.max_pixels)
            if values.shape != size:
                raise ValueError(f"{paths[index]} is {values.shape[0]}x{values.shape[1]} (HxW) "
                                 f"but {image_path} is {size[0]}x{size[1]}; labels must have "
                                 "the image's size.")
            labels[key] = map_label_values(values, paths[index], special, self.num_classes, what)
        if self.scribble_paths is not None and self.scribble_ratio < 1:
            labels["weak_label"] = shorten_scribbles(labels["weak_label"], self.scribble_ratio)
        if self.tags is not None:
            tags = self.tags[index]
        else:
            tags = tags_from_labels(
                labels["dense_label" if self.mask_paths is not None else "weak_label"],
                self.num_classes)
        sample = {"image": image, **labels, "tags": tags, "id": self._ids[index]}
        if self.boxes is not None:
            sample.update(boxes=self.boxes[index], box_classes=self.box_classes[index])
        return sample

    def indexed_tf_dataset(self, indices):
        """Map a ``tf.data.Dataset`` of int64 indices to sample dicts, decoding in the graph.

        Shuffling the indices before decoding keeps shuffle buffers small (the
        training pipeline uses this). Decoding errors of corrupt JPEGs come
        from TensorFlow without the file name: ``load(i)`` names it.
        """
        image_paths = tf.constant(self.image_paths)
        scribble_paths = None if self.scribble_paths is None else tf.constant(self.scribble_paths)
        mask_paths = None if self.mask_paths is None else tf.constant(self.mask_paths)
        ids = tf.constant(self._ids)
        tags = None if self.tags is None else tf.constant(self.tags)
        boxes = None if self.boxes is None else (tf.constant(self.boxes),
                                                 tf.constant(self.box_classes))
        num_classes, channels, max_pixels = self.num_classes, self.channels, self.max_pixels

        def read_labels(paths, index, image, image_path, special, what):
            if paths is None:
                return tf.fill(tf.shape(image)[:2], IGNORE_INDEX)
            path = paths[index]
            values = tf_decode_label_png(tf.io.read_file(path), path, max_pixels)
            with tf.control_dependencies([_tf_assert_same_size(image, values, image_path, path)]):
                return tf_map_label_values(values, path, special, num_classes, what)

        def decode(index):
            image_path = image_paths[index]
            image = tf_decode_image(tf.io.read_file(image_path), channels, image_path,
                                    max_pixels)
            weak = read_labels(scribble_paths, index, image, image_path, self.unlabeled_value,
                               "scribble")
            if scribble_paths is not None and self.scribble_ratio < 1:
                weak = self._tf_shorten(weak)
            dense = read_labels(mask_paths, index, image, image_path, self.void_value, "mask")
            sample_tags = (tags[index] if tags is not None else tf_tags_from_labels(
                dense if mask_paths is not None else weak, num_classes))
            sample = {"image": image, "weak_label": weak, "dense_label": dense,
                      "tags": sample_tags, "id": ids[index]}
            if boxes is not None:
                sample.update(boxes=boxes[0][index], box_classes=boxes[1][index])
            return sample

        return indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def first_undecodable(self):
        """``(path, reason)`` of the first file TensorFlow's decoders refuse, or None.

        Decoding errors inside ``tf.data`` cannot name their file; the trainer
        calls this after one to find it (it decodes every file: seconds to
        minutes, only after a failure).
        """
        files = [(path, lambda c, p: tf_decode_image(c, self.channels, p, self.max_pixels))
                 for path in self.image_paths]
        for paths in (self.scribble_paths, self.mask_paths):
            files += [(path, lambda c, p: tf_decode_label_png(c, p, self.max_pixels))
                      for path in paths or []]
        for path, decode in files:
            try:
                decode(tf.io.read_file(path), path)
            except tf.errors.OpError as error:
                return path, str(error.message).strip().splitlines()[0][:200]
        return None

    def _tf_shorten(self, weak_label):
        """:func:`shorten_scribbles` on a tensor (geodesic distances have no TF op)."""
        shortened = tf.numpy_function(
            lambda w: shorten_scribbles(w, self.scribble_ratio).astype(np.int32),
            [weak_label], tf.int32, stateful=False)
        shortened.set_shape([None, None])
        return shortened

    def to_tf_dataset(self):
        """Samples in index order, decoded inside ``tf.data`` (see :meth:`indexed_tf_dataset`)."""
        return self.indexed_tf_dataset(tf.data.Dataset.range(len(self)))
