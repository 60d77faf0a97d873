"""Random geometric augmentation applied alike to an image and its label maps.

One random draw per sample gives one affine map (scale, rotation, rot90,
flips and crop composed), which resamples the image (bilinear) and every label
map (nearest neighbour, so labels stay class indices) once, identically.
Pixels that come from outside the image (rotation corners, crop padding) get
:data:`~keras_regseg.data.spec.PAD_INDEX` in the labels and the pad value in
the image. Everything is TensorFlow ops with stateless randomness: the result
depends only on the sample and its seed.

>>> import tensorflow as tf
>>> sample = {"image": tf.zeros([20, 30, 1]), "weak_label": tf.fill([20, 30], 255)}
>>> out = augment_sample(sample, Augmentation.medical(), crop_size=32, seed=[1, 2])
>>> tuple(out["image"].shape), tuple(out["weak_label"].shape)
((32, 32, 1), (32, 32))
>>> sorted(set(out["weak_label"].numpy().ravel().tolist()))  # 254 = padding
[254, 255]
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_regseg.data.spec import PAD_INDEX

__all__ = ["augment_sample", "Augmentation", "LABEL_KEYS", "normalize_crop_size",
           "random_transform"]

LABEL_KEYS = ("weak_label", "dense_label", "proposal", "box_masks")
"""Label maps warped with the image: ``proposal`` (trust-region stage A) and
``box_masks`` (``[H, W, R]``, one channel per box; CCNN box constraints) besides the labels."""


class Augmentation:
    """Which random transforms to apply, in this order: scale, rotation, rot90, flips.

    Args:
        scale_range: ``(low, high)`` random scale factor, or ``None`` for no scaling.
        hflip: flip left-right with probability 1/2.
        vflip: flip up-down with probability 1/2.
        rotation_degrees: rotate by an angle uniform in ``[-d, d]`` degrees (0 = off).
        rotation_probability: chance that a sample is rotated at all.
        rot90: rotate by a multiple of 90 degrees, uniform over the four.
        image_pad_value: image value for pixels from outside the image: a number,
            one number per channel, or ``"mean"`` (the image's mean colour).
        flip_probability: chance of each enabled flip (1 = always).
        exclusive: the dihedral part (rot90, flips) and the rotation are
            alternatives: half of the samples get the dihedral part only, the
            others the rotation with ``rotation_probability`` (WSL4MIS).
        image_interpolation: ``"bilinear"`` or ``"nearest"`` (WSL4MIS
            rotates images with ``order=0``).

    Crop size is an argument of the pipeline, not of the augmentation: random
    cropping also serves to batch images of different sizes.

    >>> Augmentation.natural().get_config()["scale_range"]
    (0.5, 2.0)
    >>> Augmentation.from_config(Augmentation.medical().get_config()) == Augmentation.medical()
    True
    """

    def __init__(self, scale_range: tuple[float, float] | None = None, hflip: bool = False,
                 vflip: bool = False, rotation_degrees: float = 0.0,
                 rotation_probability: float = 1.0, rot90: bool = False,
                 image_pad_value: float = 0.0, flip_probability: float = 0.5,
                 exclusive: bool = False, image_interpolation: str = "bilinear"):
        if scale_range is not None:
            scale_range = tuple(float(s) for s in scale_range)
            if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high; "
                                 f"got {scale_range}.")
        if not 0 <= rotation_degrees <= 180:
            raise ValueError(f"rotation_degrees must be in [0, 180]; got {rotation_degrees}.")
        if not 0 <= rotation_probability <= 1:
            raise ValueError(f"rotation_probability must be in [0, 1]; got "
                             f"{rotation_probability}.")
        if isinstance(image_pad_value, str):
            if image_pad_value != "mean":
                raise ValueError(f"image_pad_value must be a number, a per-channel sequence or "
                                 f"'mean'; got {image_pad_value!r}.")
        elif isinstance(image_pad_value, (list, tuple)):
            image_pad_value = tuple(float(v) for v in image_pad_value)
        else:
            image_pad_value = float(image_pad_value)
        if not 0 <= flip_probability <= 1:
            raise ValueError(f"flip_probability must be in [0, 1]; got {flip_probability}.")
        if image_interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"image_interpolation must be 'bilinear' or 'nearest'; got "
                             f"{image_interpolation!r}.")
        self.flip_probability = float(flip_probability)
        self.exclusive = bool(exclusive)
        self.image_interpolation = image_interpolation
        self.scale_range = scale_range
        self.hflip, self.vflip, self.rot90 = bool(hflip), bool(vflip), bool(rot90)
        self.rotation_degrees = float(rotation_degrees)
        self.rotation_probability = float(rotation_probability)
        self.image_pad_value = image_pad_value

    @classmethod
    def natural(cls):
        """Natural images (DeepLab / VOC): scale 0.5..2, horizontal flip, mean-colour padding."""
        return cls(scale_range=(0.5, 2.0), hflip=True, image_pad_value="mean")

    @classmethod
    def medical(cls):
        """2D medical slices (WSL4MIS ACDC): rot90 + flip (all 8 symmetries), rotation
        by up to 20 degrees on half of the samples, pad with 0 (black background)."""
        return cls(hflip=True, rot90=True, rotation_degrees=20.0, rotation_probability=0.5)

    @classmethod
    def wsl4mis(cls):
        """WSL4MIS's ``RandomGenerator`` exactly: half of the slices get rot90 then a flip
        (always), a quarter a rotation by up to 20 degrees, a quarter nothing; images are
        sampled by nearest neighbour (``order=0``)."""
        return cls(hflip=True, flip_probability=1.0, rot90=True, rotation_degrees=20.0,
                   rotation_probability=0.5, exclusive=True, image_interpolation="nearest")

    def is_identity(self):
        """True when no geometric transform is enabled."""
        return (self.scale_range is None and not (self.hflip or self.vflip or self.rot90)
                and (self.rotation_degrees == 0 or self.rotation_probability == 0))

    def get_config(self):
        return {"scale_range": self.scale_range, "hflip": self.hflip, "vflip": self.vflip,
                "rotation_degrees": self.rotation_degrees,
                "rotation_probability": self.rotation_probability, "rot90": self.rot90,
                "image_pad_value": self.image_pad_value, "flip_probability": self.flip_probability,
                "exclusive": self.exclusive, "image_interpolation": self.image_interpolation}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, Augmentation) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Augmentation({args})"


def _pad_color(image, pad_value):
    """Pad value as a ``[C]`` float32 tensor."""
    channels = tf.shape(image)[-1]
    if pad_value == "mean":
        return tf.reduce_mean(image, axis=[0, 1])
    if isinstance(pad_value, tuple):
        color = tf.constant(pad_value, tf.float32)
        check = tf.debugging.assert_equal(
            tf.size(color), channels,
            message=f"image_pad_value {pad_value} has one value per channel, but the image has "
                    "a different number of channels.")
        with tf.control_dependencies([check]):
            return tf.identity(color)
    return tf.fill([channels], tf.constant(pad_value, tf.float32))


def _matrix(rows):
    """3x3 float32 matrix from nested lists of scalars or scalar tensors."""
    return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in row]) for row in rows])


def _translation(du, dv):
    return _matrix([[1, 0, du], [0, 1, dv], [0, 0, 1]])


def _rot90_matrix(turns, width, height):
    """Output -> input map of ``tf.image.rot90(., turns)`` on a ``width x height`` canvas."""
    return tf.gather(tf.stack([
        _matrix([[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        _matrix([[0, -1, width], [1, 0, 0], [0, 0, 1]]),
        _matrix([[-1, 0, width], [0, -1, height], [0, 0, 1]]),
        _matrix([[0, 1, 0], [-1, 0, height], [0, 0, 1]]),
    ]), turns)


def _uniform_int(seed, low, high):
    """Uniform integer in ``[low, high]`` (inclusive)."""
    return tf.random.stateless_uniform([], seed, low, high + 1, dtype=tf.int32)


def random_transform(height, width, augmentation, crop_size, seed):
    """One random draw of ``augmentation`` (then crop) as a single affine map.

    Returns ``(matrix, output_size)``: ``matrix`` is a float32 3x3 map from
    output pixel ``(col, row, 1)`` to the input point it samples (pixel centres
    at integers); ``output_size`` is int32 ``[2]`` (rows, cols).

    The steps are composed in "corner" coordinates (the image spans
    ``[0, W] x [0, H]``), where scaling and flipping are linear; composing them
    resamples every pixel once, so labels are not rounded twice.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=8))
    dihedral = tf.constant(True)
    if augmentation.exclusive:   # half of the draws take the dihedral part, the others may rotate
        choice_seed = tf.random.experimental.stateless_fold_in(seed, 8)
        dihedral = tf.random.stateless_uniform([], choice_seed) < 0.5
    size = tf.cast(tf.stack([height, width]), tf.int32)
    matrix = _matrix([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # output -> input, built outside-in
    if augmentation.scale_range is not None:
        low, high = augmentation.scale_range
        scale = tf.random.stateless_uniform([], seeds[0], low, high)
        scaled = tf.maximum(tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32), 1)
        # The exact ratio of the rounded sizes, as tf.image.resize uses.
        ratio = tf.cast(size, tf.float32) / tf.cast(scaled, tf.float32)
        matrix = matrix @ _matrix([[ratio[1], 0, 0], [0, ratio[0], 0], [0, 0, 1]])
        size = scaled
    if augmentation.rotation_degrees > 0:
        limit = augmentation.rotation_degrees * math.pi / 180
        rotate = tf.random.stateless_uniform([], seeds[1]) < augmentation.rotation_probability
        if augmentation.exclusive:
            rotate = rotate & ~dihedral
        angle = tf.where(rotate, tf.random.stateless_uniform([], seeds[2], -limit, limit), 0.0)
        cos, sin = tf.cos(angle), tf.sin(angle)
        centre_u, centre_v = tf.cast(size[1], tf.float32) / 2, tf.cast(size[0], tf.float32) / 2
        matrix = (matrix @ _translation(centre_u, centre_v)
                  @ _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
                  @ _translation(-centre_u, -centre_v))
    if augmentation.rot90:
        turns = tf.where(dihedral, _uniform_int(seeds[3], 0, 3), 0)
        matrix = matrix @ _rot90_matrix(turns, size[1], size[0])
        size = tf.where(turns % 2 == 1, size[::-1], size)
    for enabled, axis, flip_seed in ((augmentation.hflip, 1, seeds[4]),
                                     (augmentation.vflip, 0, seeds[5])):
        if enabled:
            flip = dihedral & (tf.random.stateless_uniform([], flip_seed)
                               < augmentation.flip_probability)
            mirror = (_matrix([[-1, 0, size[1]], [0, 1, 0], [0, 0, 1]]) if axis == 1
                      else _matrix([[1, 0, 0], [0, -1, size[0]], [0, 0, 1]]))
            matrix = matrix @ tf.where(flip, mirror, tf.eye(3))
    if crop_size is not None:
        # Window offset uniform over all placements; negative offsets pad (image smaller).
        spare = size - tf.constant(crop_size, tf.int32)
        top = _uniform_int(seeds[6], tf.minimum(spare[0], 0), tf.maximum(spare[0], 0))
        left = _uniform_int(seeds[7], tf.minimum(spare[1], 0), tf.maximum(spare[1], 0))
        matrix = matrix @ _translation(left, top)
        size = tf.constant(crop_size, tf.int32)
    # Pixel index = corner coordinate - 1/2, on both sides.
    return _translation(-0.5, -0.5) @ matrix @ _translation(0.5, 0.5), size


def _warp(images, matrix, size, interpolation, fill_mode, fill_value=0.0):
    """Sample ``images`` [H, W, C] at ``matrix`` (output pixel -> input point)."""
    transform = tf.reshape(matrix / matrix[2, 2], [9])[:8][None]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images[None], transforms=transform, output_shape=size, fill_value=fill_value,
        interpolation=interpolation, fill_mode=fill_mode)[0]


def normalize_crop_size(crop_size):
    """``None`` or a ``(height, width)`` pair of positive ints."""
    if crop_size is None:
        return None
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    crop_size = tuple(int(s) for s in crop_size)
    if len(crop_size) != 2 or min(crop_size) < 1:
        raise ValueError(f"crop_size must be a positive int or (height, width); got {crop_size}.")
    return crop_size


def augment_sample(sample: dict[str, tf.Tensor], augmentation: Augmentation | None = None,
                   crop_size: tuple[int, int] | None = None,
                   seed: tuple[int, int] | tf.Tensor = (0, 0)) -> dict[str, tf.Tensor]:
    """Transform ``sample["image"]`` and its label maps with one random draw.

    The image is sampled bilinearly, the labels by nearest neighbour, both
    once, from the same map (:func:`random_transform`). Output pixels whose
    nearest source pixel is outside the image get PAD_INDEX labels and the pad
    value in the image; inside the image, bilinear sampling clamps at the
    border (as ``tf.image.resize`` does) rather than blending in the pad value.

    Args:
        sample: dict with ``"image"`` float32 ``[H, W, C]`` and any of
            :data:`LABEL_KEYS` (int ``[H, W]``, or ``[H, W, R]`` for several maps
            under one key); other keys pass through.
        augmentation: an :class:`Augmentation`, or ``None`` for none (crop only).
        crop_size: int or ``(height, width)``: random crop, padded where the image
            is smaller (labels with PAD_INDEX); ``None`` keeps the size.
        seed: int ``[2]`` stateless seed; the same seed gives the same transform.

    Returns:
        A new dict; label maps are int32.
    """
    augmentation = augmentation or Augmentation()
    crop_size = normalize_crop_size(crop_size)
    keys = [k for k in LABEL_KEYS if k in sample]
    if not keys:
        raise ValueError(f"sample has no label map; expected one of {LABEL_KEYS}, got keys "
                         f"{sorted(sample)}.")
    out = dict(sample)
    out["image"] = tf.convert_to_tensor(sample["image"], tf.float32)
    for key in keys:
        out[key] = tf.cast(sample[key], tf.int32)
    if augmentation.is_identity() and crop_size is None:
        return out
    image = out["image"]
    # A channel of ones rides along with the labels: after nearest sampling with fill
    # PAD_INDEX it marks the output pixels that come from inside the image.
    several = {k: out[k].shape.rank == 3 for k in keys}
    maps = [out[k] if several[k] else out[k][..., None] for k in keys]
    channels = [int(m.shape[-1]) for m in maps]
    labels = tf.concat(maps + [tf.ones_like(maps[0][..., :1])], axis=-1)
    shape = tf.shape(image)
    matrix, size = random_transform(shape[0], shape[1], augmentation, crop_size, seed)
    labels = _warp(labels, matrix, size, "NEAREST", "CONSTANT", float(PAD_INDEX))
    inside = labels[..., -1:] == 1
    image = _warp(image, matrix, size, augmentation.image_interpolation.upper(), "NEAREST")
    out["image"] = tf.where(inside, image, _pad_color(out["image"], augmentation.image_pad_value))
    start = 0
    for key, count in zip(keys, channels):
        out[key] = labels[..., start:start + count]
        if not several[key]:
            out[key] = out[key][..., 0]
        start += count
    return out
