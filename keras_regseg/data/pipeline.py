"""``tf.data`` pipelines that feed Keras ``fit`` and evaluation.

Training batches are ``(images [B, h, w, C] float32, y_true)``. The methods
train on ``y_true`` as a dict of what they ask for (:class:`DictTargets`: the
seeds, the dense mask, the augmented image, trust-region proposals, image-level
tags, sizes, boxes): the pipeline warps the label maps it is asked for and
knows no method. ``target="weak"`` or ``"dense"`` packs one label map and the
image into one tensor instead (:func:`keras_regseg.losses.targets.pack_targets`),
the form a network compiled with a keras_regseg loss takes in ``fit``.

Sources are shuffled by index, before decoding, with an order of each pass
over the data drawn from the seed and the pass number (reproducible whatever
iterators are made, and a resumed run can skip ahead in it); the VOC and ACDC
readers decode by index (``indexed_tf_dataset``). Plain ``tf.data.Dataset``
inputs are shuffled with a buffer of ``shuffle_buffer`` decoded samples.

>>> import numpy as np
>>> from keras_regseg.data.base import InMemorySource
>>> source = InMemorySource(np.random.rand(4, 16, 16, 1).astype("float32"),
...                         np.full((4, 16, 16), 255), num_classes=3)
>>> images, y_true = next(iter(make_training_dataset(
...     source, batch_size=2, seed=0, target=DictTargets(("seeds", "image")))))
>>> tuple(images.shape), {key: tuple(y_true[key].shape) for key in sorted(y_true)}
((2, 16, 16, 1), {'image': (2, 16, 16, 1), 'seeds': (2, 16, 16)})
>>> images, y_true = next(iter(make_training_dataset(source, batch_size=2, seed=0)))
>>> tuple(y_true.shape)    # target="weak": seeds and image packed
(2, 16, 16, 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_regseg.data.augment import Augmentation, augment_sample, normalize_crop_size
from keras_regseg.data.base import SegmentationSource
from keras_regseg.data.spec import PAD_INDEX
from keras_regseg.data.weak_labels import (boxes_from_mask, class_sizes_from_mask,
                                          size_bits_from_mask)
from keras_regseg.losses.targets import pack_targets
from keras_regseg.ops import padding

__all__ = ["class_sizes", "DICT_TARGET_KEYS", "DictTargets", "make_eval_dataset",
           "make_training_dataset", "rasterize_boxes", "SIZE_BIT_THRESHOLD", "size_bits",
           "TARGETS", "without_autotune_model"]

TARGETS = {"weak": "weak_label", "dense": "dense_label"}
"""Packed ``target`` -> the label map packed with the image into ``y_true``."""

DICT_TARGET_KEYS = ("seeds", "dense", "image", "proposals", "tags", "size_bits", "sizes",
                    "boxes")

IMAGE_LEVEL = {"tags": ("tags",), "tags_and_sizes": ("tags", "size_bits")}
"""Older names of image-level :class:`DictTargets` (CCNN from tags, and size bits)."""


@dataclasses.dataclass(frozen=True)
class DictTargets:
    """``y_true`` as a dict of named targets: what a method trains on.

    ``keys`` among :data:`DICT_TARGET_KEYS`; each adds entries to the batch's
    ``y_true``:

    - ``"seeds"``: int32 ``[B, h, w]``, the weak label map (scribbles, clicks)
      warped with the image; ``"dense"``: int32 ``[B, h, w]``, the full mask;
    - ``"image"``: float32 ``[B, h, w, C]``, the augmented image (pairwise terms);
    - ``"proposals"``: int32 ``[B, h, w]``, the label map the ``proposals``
      function of :func:`make_training_dataset` gives (trust-region stage A),
      warped with the image;
    - ``"tags"``, ``"size_bits"``: float32 ``[B, K]`` image-level facts, read
      before augmentation (size bits from the dense label, :func:`size_bits`);
    - ``"sizes"``: float32 ``[B, K]``, each class's fraction of the image,
      measured on the dense label *after* augmentation (padding excluded), so
      crops and rotations keep it exact;
    - ``"boxes"``: ``"box_masks"`` float32 ``[B, h, w, R]`` (1 inside box r) and
      ``"box_classes"`` int32 ``[B, R]`` (-1: no box), ``R = max_boxes``. Boxes are
      the sample's own (``"boxes"`` ``[R', 4]`` normalized ``(y0, x0, y1, x1)`` and
      ``"box_classes"`` ``[R']``) or, without them, one per connected component
      of each foreground class of the dense label
      (:func:`~keras_regseg.data.weak_labels.boxes_from_mask`); rasterized
      before augmentation and warped with the image.

    >>> DictTargets(("seeds", "sizes")).keys
    ('seeds', 'sizes')
    """

    keys: tuple
    max_boxes: int = 8

    def __post_init__(self):
        keys = tuple(self.keys)
        unknown = [k for k in keys if k not in DICT_TARGET_KEYS]
        if not keys or unknown:
            raise ValueError(f"dict targets must name some of {', '.join(DICT_TARGET_KEYS)}; "
                             f"got {list(keys)}.")
        if isinstance(self.max_boxes, bool) or int(self.max_boxes) < 1:
            raise ValueError(f"max_boxes must be an integer >= 1; got {self.max_boxes!r}.")
        object.__setattr__(self, "keys", keys)

    def label_maps(self):
        """The sample's label maps (besides the image) to warp through augmentation.

        Augmentation marks padding on a label map, so image-level targets keep the seeds.
        """
        wanted = (("weak_label", ("seeds",)), ("dense_label", ("dense", "sizes")),
                  ("box_masks", ("boxes",)))
        maps = [name for name, keys in wanted if any(key in self.keys for key in keys)]
        return maps if set(maps) & {"weak_label", "dense_label"} else ["weak_label", *maps]

    def needs_classes(self):
        """Whether the targets need the number of classes (image-level facts, boxes)."""
        return any(key in self.keys for key in ("tags", "size_bits", "sizes", "boxes"))


SIZE_BIT_THRESHOLD = 0.1
"""A class's size bit is 1 when it covers more than this fraction of the image (CCNN paper)."""


def without_autotune_model(dataset):
    """``dataset`` with tf.data's autotuning model (the optimization thread) turned off.

    With the model on, deleting an iterator waits for the model's optimization
    thread to finish its current sleep, which doubles up to about 10 s as the
    iterator lives on: every ``fit`` then took up to 10 s more to return, and
    every stage-A round 1.5 s more (measured on 2 CPU cores with TensorFlow
    2.21). ``AUTOTUNE`` parallelism then falls back to the number of cores
    and prefetch buffers still grow on their own (``legacy_autotune``); the
    training epoch time was unchanged (11.2 s against 11.2 s per 2 epochs).

    >>> dataset = without_autotune_model(tf.data.Dataset.range(3))
    >>> dataset.options().autotune.enabled, [int(i) for i in dataset.as_numpy_iterator()]
    (False, [0, 1, 2])
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _label_key(target):
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, {sorted(IMAGE_LEVEL)} or "
                         f"a DictTargets; got {target!r}.")
    return TARGETS[target]


def size_bits(dense_label, num_classes, threshold=SIZE_BIT_THRESHOLD):
    """float32 ``[K]`` tensor of :func:`~keras_regseg.data.weak_labels.size_bits_from_mask`.

    The one rule of the library (the numpy function itself runs here, so the
    two cannot drift apart): a class's bit is 1 when it covers more than
    ``threshold`` of the image, the image being every pixel but padding;
    unlabeled and void pixels (255, VOC's object borders) are part of the image
    and count for no class.

    >>> import numpy as np
    >>> size_bits(np.array([[0, 0, 0, 1], [0, 0, 0, 2]] * 5), 4).numpy().tolist()
    [1.0, 1.0, 1.0, 0.0]
    """
    bits = tf.numpy_function(
        lambda mask: size_bits_from_mask(mask, num_classes, threshold).astype(np.float32),
        [tf.cast(dense_label, tf.int32)], tf.float32, stateful=False)
    return tf.reshape(bits, [num_classes])   # static shape for the model's checks


def class_sizes(dense_label, num_classes):
    """float32 ``[K]`` tensor of :func:`~keras_regseg.data.weak_labels.class_sizes_from_mask`
    (the same rule as :func:`size_bits`: the image is every pixel but padding)."""
    sizes = tf.numpy_function(
        lambda mask: class_sizes_from_mask(mask, num_classes).astype(np.float32),
        [tf.cast(dense_label, tf.int32)], tf.float32, stateful=False)
    return tf.reshape(sizes, [num_classes])


def _check_input(source):
    if not isinstance(source, (SegmentationSource, tf.data.Dataset)):
        raise TypeError(f"expected a SegmentationSource or a tf.data.Dataset of sample dicts; "
                        f"got {type(source).__name__}.")
    if isinstance(source, SegmentationSource) and len(source) == 0:
        raise ValueError(f"{type(source).__name__} has no samples.")


def _samples(source, shuffle, seed, repeat, shuffle_buffer, skip=0):
    """Sample dicts, optionally shuffled (anew each pass over the data) and repeated forever.

    A :class:`SegmentationSource` is read by index: pass ``p`` visits the
    indices in an order drawn from ``seed`` and ``p`` alone, so the stream is a
    function of the position in it. (TensorFlow's ``reshuffle_each_iteration``
    draws new orders for every iterator made from the dataset: an iterator made
    only to peek at one batch, to build a model, then changes the order training
    sees, by an amount that depends on how far its prefetching got, so runs with
    the same seed differed and a resumed run that skipped the samples it had
    trained on did not continue the same stream.) A plain ``tf.data.Dataset``
    is shuffled with a buffer of ``shuffle_buffer`` samples, TensorFlow's way.
    """
    if not isinstance(source, SegmentationSource):
        if shuffle:
            source = source.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return (source.repeat() if repeat else source).skip(skip)
    if shuffle and seed is None:   # still reproducible under a global seed (set_random_seed)
        seed = int(tf.random.uniform((), 0, 2 ** 31 - 1, dtype=tf.int64))
    count = len(source)

    def pass_indices(number):
        indices = tf.range(count, dtype=tf.int64)
        if shuffle:
            keys = tf.random.stateless_uniform([count], seed=tf.stack([seed, number]))
            indices = tf.gather(indices, tf.argsort(keys))
        return tf.data.Dataset.from_tensor_slices(indices)

    passes = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    return _read_by_index(source)(passes.flat_map(pass_indices).skip(skip))


def _read_by_index(source):
    """``indices dataset -> sample dicts dataset`` for a :class:`SegmentationSource`.

    The source's own ``indexed_tf_dataset`` (files decoded in the graph), else
    ``source.load`` in a ``tf.numpy_function`` (in-memory sources: no copy of
    their arrays), with the shapes of ``source.to_tf_dataset()``.
    """
    if hasattr(source, "indexed_tf_dataset"):
        return source.indexed_tf_dataset
    spec = source.to_tf_dataset().element_spec
    keys = sorted(spec)

    def load(index):
        sample = source.load(int(index))
        return [np.asarray(sample[k], spec[k].dtype.as_numpy_dtype) for k in keys]

    def read(index):
        values = tf.numpy_function(load, [index], [spec[k].dtype for k in keys],
                                   name="load_sample")
        return {k: tf.ensure_shape(v, spec[k].shape) for k, v in zip(keys, values)}

    return lambda indices: indices.map(read)


def _first_image_shape(source):
    """``[H, W, C]`` of the first sample (static when the dataset knows it)."""
    if isinstance(source, SegmentationSource):
        return tuple(source.load(0)["image"].shape)
    spec = source.element_spec["image"]
    if spec.shape.is_fully_defined():
        return tuple(spec.shape.as_list())
    return tuple(next(iter(source.take(1)))["image"].shape)


def _same_size_check(reference_shape, hint):
    """A map function failing on a sample whose image is not ``reference_shape`` [H, W].

    The checked image gets that static shape (Keras prefers known sizes).
    """
    height, width = reference_shape

    def check(sample):
        shape = tf.shape(sample["image"])
        sample_id = sample.get("id", tf.constant("?"))
        same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
        assertion = tf.debugging.Assert(same, [tf.strings.format(
            "sample {} is {}x{} (HxW) but the first sample is " + f"{height}x{width}; " + hint,
            [sample_id, shape[0], shape[1]])])
        with tf.control_dependencies([assertion]):
            image = tf.identity(sample["image"])
        image.set_shape([height, width, None])
        return dict(sample, image=image)

    return check


def _select(sample, keys, optional=()):
    """The entries ``keys`` (required) and ``optional`` (when present) of a sample dict."""
    missing = [k for k in keys if k not in sample]
    if missing:
        raise ValueError(f"samples have no {missing[0]!r}; got keys {sorted(sample)}.")
    return {k: sample[k] for k in (*keys, *optional) if k in sample}


def _fixed_size_check(source, crop_size, augmentation):
    """For batching without a crop: raise now if sizes must vary, else a runtime size check."""
    if crop_size is not None:
        return None
    if augmentation.scale_range is not None:
        raise ValueError("random scaling (scale_range) makes images of different sizes; pass "
                         "crop_size to batch them.")
    height, width = _first_image_shape(source)[:2]
    if augmentation.rot90 and height != width:
        raise ValueError(f"rot90 turns the {height}x{width} images into {width}x{height} ones; "
                         "pass crop_size (or use square images) to batch them.")
    return _same_size_check((height, width), "images of different sizes need crop_size "
                                             "to be batched.")


def make_training_dataset(source: SegmentationSource, batch_size: int,
                          crop_size: tuple[int, int] | None = None,
                          augmentation: Augmentation | None = None, shuffle: bool = True,
                          seed: int | None = None, repeat: bool = True, target: str = "weak",
                          shuffle_buffer: int = 1024,
                          proposals: Callable[[tf.Tensor], tf.Tensor] | None = None,
                          skip_samples: int = 0,
                          pad_to_multiple: int | None = None) -> tf.data.Dataset:
    """Batched, augmented, prefetched ``(images, y_true)`` for ``model.fit``.

    Args:
        source: a :class:`~keras_regseg.data.base.SegmentationSource` or a
            ``tf.data.Dataset`` of sample dicts (see :mod:`keras_regseg.data.spec`).
        batch_size: samples per batch; the last partial batch is dropped so
            every batch has a static shape.
        crop_size: int or ``(height, width)`` random crop (padded with PAD_INDEX
            labels where an image is smaller); needed when sizes vary.
        augmentation: an :class:`~keras_regseg.data.augment.Augmentation`, or
            ``None`` for none.
        shuffle: reshuffle every epoch.
        seed: makes shuffling and augmentation reproducible; ``None``: random.
        repeat: repeat forever (use ``steps_per_epoch`` in ``fit``).
        target: a :class:`DictTargets` (``y_true`` a dict of what it names), or
            ``"weak"`` / ``"dense"``: ``weak_label`` / ``dense_label`` packed with
            the image into ``y_true [B, h, w, 1 + C]`` (see :data:`TARGETS`;
            ``"tags"`` and ``"tags_and_sizes"`` name the image-level DictTargets).
        shuffle_buffer: buffer size when samples cannot be shuffled by index.
        skip_samples: samples of the stream to skip before the first batch. A resumed
            run passes the number it already trained on, so that it continues the
            stream of the uninterrupted run. Skipped before decoding (by index) and
            augmentation, so it costs little.
        proposals: optional ``(sample dict, step) -> int32 [H, W]`` label map
            (trust-region proposals looked up by sample id; ``step`` is the int64
            index of the training step, counted from the start of the stream, that
            the sample is part of), added before augmentation and warped with the
            labels: ``y_true["proposals"]`` (``DictTargets`` naming ``"proposals"``),
            or packed as ``[label, proposal, image]`` (``[B, h, w, 2 + C]``).
        pad_to_multiple: pad each augmented sample at the bottom and right to
            multiples of this (a network's ``size_divisor``), with ``PAD_INDEX``
            labels, so that any image size trains as prediction takes it.

    Returns:
        ``tf.data.Dataset`` of ``(images [B, h, w, C] float32, y_true)``.
    """
    if isinstance(target, str) and target in IMAGE_LEVEL:
        target = DictTargets(IMAGE_LEVEL[target])
    dict_targets = target if isinstance(target, DictTargets) else None
    label_maps = dict_targets.label_maps() if dict_targets else [_label_key(target)]
    if dict_targets and (proposals is None) == ("proposals" in dict_targets.keys):
        raise ValueError("proposals and the 'proposals' target come together; got "
                         f"proposals={proposals!r} with targets {list(dict_targets.keys)}.")
    _check_input(source)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if isinstance(source, SegmentationSource) and len(source) < batch_size and not repeat:
        raise ValueError(f"{type(source).__name__} has {len(source)} samples, fewer than "
                         f"batch_size {batch_size}, and repeat=False: no full batch.")
    augmentation = augmentation or Augmentation()
    crop_size = normalize_crop_size(crop_size)
    size_check = _fixed_size_check(source, crop_size, augmentation)

    samples = _samples(source, shuffle, seed, repeat, shuffle_buffer, skip_samples)
    num_classes = None
    if dict_targets and dict_targets.needs_classes():
        num_classes = samples.element_spec["tags"].shape[-1]
        samples = samples.map(lambda s: _dict_targets_before_augmentation(
            s, num_classes, dict_targets))
    if proposals is not None:
        # The training step each sample goes to (one batch a step) tells the proposal lookup
        # which stage-A round it belongs to, however far ahead tf.data prefetches. The lookup
        # may wait for that round: sequential, so that it holds back only the samples after
        # it, never the threads that prepare the samples before it (a parallel map deadlocks).
        steps = tf.data.Dataset.counter(start=skip_samples).map(lambda i: i // batch_size)
        samples = tf.data.Dataset.zip(samples, steps).map(
            lambda s, step: dict(s, proposal=proposals(s, step)))
    # Drop what the step does not use (the id names a sample in size errors).
    samples = samples.map(lambda s: _select(s, ["image", *label_maps],
                                            optional=["id", "image_targets", "proposal"]))
    # One stateless seed pair per sample, drawn from a seeded stream: augmentations are then
    # reproducible whatever the parallelism, and differ from epoch to epoch.
    seeds = tf.data.Dataset.random(seed=seed).batch(2).skip(skip_samples)

    def augment(sample, sample_seed):
        sample = augment_sample(sample, augmentation, crop_size, sample_seed)
        if size_check is not None:
            sample = size_check(sample)
        if pad_to_multiple:
            sample = _pad_sample(sample, pad_to_multiple)
        image = sample["image"]
        if crop_size is not None:
            image.set_shape([*_padded(crop_size, pad_to_multiple), None])
        if dict_targets is not None:
            return image, _dict_targets_after_augmentation(
                dict(sample, image=image), num_classes, dict_targets)
        if proposals is not None:
            return image, tf.stack([sample[label_maps[0]], sample["proposal"]], axis=-1)
        return image, sample[label_maps[0]]

    dataset = tf.data.Dataset.zip(samples, seeds).map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    if dict_targets is None:
        dataset = dataset.map(lambda images, labels: (images, _pack(labels, images)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return without_autotune_model(dataset.prefetch(tf.data.AUTOTUNE))


def _pack(labels, images):
    """``pack_targets`` for one label map ``[B, h, w]``, or several stacked ``[B, h, w, L]``."""
    if labels.shape.rank == 4:
        return tf.concat([tf.cast(labels, tf.float32), tf.cast(images, tf.float32)], axis=-1)
    return pack_targets(labels, images)


def _dict_targets_before_augmentation(sample, num_classes, targets):
    """Image-level targets, and the box masks to warp with the image (:class:`DictTargets`)."""
    image_targets = {}
    if "tags" in targets.keys:
        image_targets["tags"] = tf.cast(sample["tags"], tf.float32)
    if "size_bits" in targets.keys:
        image_targets["size_bits"] = size_bits(sample["dense_label"], num_classes)
    sample = dict(sample, image_targets=image_targets)
    if "boxes" in targets.keys:
        boxes, classes = _sample_boxes(sample, num_classes, targets.max_boxes)
        shape = tf.shape(sample["image"])
        sample["box_masks"] = rasterize_boxes(boxes, shape[0], shape[1])
        image_targets["box_classes"] = classes
    return sample


def _sample_boxes(sample, num_classes, max_boxes):
    """``(boxes [R, 4], classes [R])``: the sample's own boxes, padded or cut to ``max_boxes``,
    else boxes from its dense label."""
    if "boxes" in sample:
        boxes = tf.reshape(tf.cast(sample["boxes"], tf.float32), [-1, 4])[:max_boxes]
        classes = tf.reshape(tf.cast(sample["box_classes"], tf.int32), [-1])[:max_boxes]
        missing = max_boxes - tf.shape(classes)[0]
        boxes = tf.pad(boxes, [[0, missing], [0, 0]])
        classes = tf.pad(classes, [[0, missing]], constant_values=-1)
    else:
        boxes, classes = tf.numpy_function(
            lambda mask: boxes_from_mask(mask, num_classes, max_boxes),
            [tf.cast(sample["dense_label"], tf.int32)], (tf.float32, tf.int32), stateful=False)
    return tf.reshape(boxes, [max_boxes, 4]), tf.reshape(classes, [max_boxes])


def rasterize_boxes(boxes, height, width):
    """int32 ``[H, W, R]``: 1 on the pixels whose centre lies in box r, else 0.

    ``boxes`` ``[R, 4]`` are normalized ``(y0, x0, y1, x1)`` (edges of the image at 0 and 1).

    >>> rasterize_boxes(tf.constant([[0.0, 0.5, 0.5, 1.0]]), 2, 4)[..., 0].numpy().tolist()
    [[0, 0, 1, 1], [0, 0, 0, 0]]
    """
    rows = (tf.cast(tf.range(height), tf.float32) + 0.5) / tf.cast(height, tf.float32)
    cols = (tf.cast(tf.range(width), tf.float32) + 0.5) / tf.cast(width, tf.float32)
    inside_rows = (rows[:, None] >= boxes[None, :, 0]) & (rows[:, None] <= boxes[None, :, 2])
    inside_cols = (cols[:, None] >= boxes[None, :, 1]) & (cols[:, None] <= boxes[None, :, 3])
    return tf.cast(inside_rows[:, None, :] & inside_cols[None, :, :], tf.int32)


def _dict_targets_after_augmentation(sample, num_classes, targets):
    """``y_true`` of one augmented sample (:class:`DictTargets`)."""
    y = dict(sample.get("image_targets", {}))
    for key, name in (("seeds", "weak_label"), ("dense", "dense_label"),
                      ("proposals", "proposal")):
        if key in targets.keys:
            y[key] = tf.cast(sample[name], tf.int32)
    if "image" in targets.keys:
        y["image"] = tf.cast(sample["image"], tf.float32)
    if "sizes" in targets.keys:
        y["sizes"] = class_sizes(sample["dense_label"], num_classes)
    if "boxes" in targets.keys:
        y["box_masks"] = tf.cast(sample["box_masks"] == 1, tf.float32)   # padding (254): out
    return y


def _padded(size, multiple):
    """``(height, width)`` rounded up to multiples of ``multiple`` (``None``: as it is)."""
    return tuple(-(-side // multiple) * multiple for side in size) if multiple else tuple(size)


def _pad_sample(sample, multiple):
    """Pad every map of an augmented sample at the bottom and right to multiples of ``multiple``.

    The image as prediction pads it (:func:`keras_regseg.ops.padding.pad_to_multiple`:
    reflected), label maps with ``PAD_INDEX`` (no label, not part of the image),
    other maps (box masks) with 0.
    """
    shape = tf.shape(sample["image"])
    paddings = [[0, (multiple - shape[0] % multiple) % multiple],
                [0, (multiple - shape[1] % multiple) % multiple]]
    padded = {}
    for key, value in sample.items():
        if key == "image":
            padded[key] = padding.pad_to_multiple(value[None], multiple)[0]
        elif isinstance(value, tf.Tensor) and value.shape.rank is not None and value.shape.rank >= 2:
            fill = PAD_INDEX if value.dtype.is_integer else 0
            extra = [[0, 0]] * (value.shape.rank - 2)
            padded[key] = tf.pad(value, paddings + extra,
                                 constant_values=tf.cast(fill, value.dtype))
        else:
            padded[key] = value
    return padded


def make_eval_dataset(source: SegmentationSource, batch_size: int = 1, target: str = "dense",
                      keep_ids: bool = True, pad_to_multiple: int | None = None) -> tf.data.Dataset:
    """Batched samples in order, without augmentation, for evaluation and prediction.

    Args:
        source: a source or a ``tf.data.Dataset`` of sample dicts.
        batch_size: images per batch (the last batch may be smaller); batches
            of more than one image need images of one size.
        target: ``"dense"`` or ``"weak"``: the label map packed in ``y_true``.
        keep_ids: yield ``(images, y_true, ids)`` (string ids; the sample index when
            the samples have no ``"id"``) instead of ``(images, y_true)``.
        pad_to_multiple: pad images bottom/right to a multiple of this (networks
            with strided stages need it) as training and prediction do (reflected);
            padded labels are PAD_INDEX.

    >>> import numpy as np
    >>> from keras_regseg.data.base import InMemorySource
    >>> source = InMemorySource(np.zeros((3, 10, 12, 1), "float32"),
    ...                         np.zeros((3, 10, 12)), num_classes=2)
    >>> images, y_true, ids = next(iter(make_eval_dataset(source, 2, pad_to_multiple=8)))
    >>> tuple(images.shape), ids.numpy().tolist()
    ((2, 16, 16, 1), [b'0', b'1'])
    """
    label_key = _label_key(target)
    _check_input(source)
    samples = source.to_tf_dataset() if isinstance(source, SegmentationSource) else source
    if "id" not in samples.element_spec:
        samples = samples.enumerate().map(
            lambda index, s: dict(s, id=tf.strings.as_string(index)))
    samples = samples.map(lambda s: _select(s, ["image", label_key, "id"]))
    if pad_to_multiple is not None:
        if int(pad_to_multiple) < 1:
            raise ValueError(f"pad_to_multiple must be >= 1; got {pad_to_multiple}.")
        samples = samples.map(lambda s: _pad_sample(s, int(pad_to_multiple)))
    if batch_size > 1:
        shape = _padded(_first_image_shape(source)[:2], pad_to_multiple)
        samples = samples.map(_same_size_check(
            shape, "batch_size=1 evaluates images of different sizes."))

    def pack(sample):
        images = sample["image"]
        packed = (images, pack_targets(sample[label_key], images))
        return (*packed, sample["id"]) if keep_ids else packed

    return without_autotune_model(samples.batch(batch_size).map(pack).prefetch(tf.data.AUTOTUNE))
