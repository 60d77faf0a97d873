"""A built-in synthetic dataset: textured shapes with scribbles, masks and tags.

Each image shows up to ``max_objects`` shapes (ellipses, rectangles, polygons,
blobs) on a textured background. A shape's class decides its appearance, not its
form: a mean intensity (a mean colour with ``channels=3``) and a texture
(smooth shading, stripes, dots, grain). Per-object brightness jitter, texture,
a per-image gain and offset, and pixel noise make single pixels ambiguous
between classes, so a network must look at regions. The intensity steps between
classes are larger than the noise, so object boundaries are strong image edges
(what a contrast-sensitive CRF regularizer exploits), while scribbles, drawn
``scribble_margin`` pixels inside each region by
:func:`~keras_regseg.data.weak_labels.scribbles_from_mask`, leave the
boundaries unlabeled. With the defaults they cover about 3% of the pixels.

Every sample is drawn from its own seed, derived from ``(seed, split, index)``,
so a sample does not depend on ``num_samples`` and the splits never share one.

>>> ds = SyntheticShapes(num_samples=4, size=32, seed=1)
>>> sample = ds.load(0)
>>> sample["image"].shape, sample["weak_label"].dtype.name, ds.class_names
((32, 32, 1), 'int32', ('background', 'smooth', 'striped', 'dotted'))
>>> bool(((sample["weak_label"] == 255) | (sample["weak_label"] == sample["dense_label"])).all())
True
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage

from keras_regseg.data.base import InMemorySource
from keras_regseg.data.spec import IGNORE_INDEX, MAX_CLASSES
from keras_regseg.data.weak_labels import scribbles_from_mask, shorten_scribbles, tags_from_mask

__all__ = ["SHAPES", "SPLITS", "SyntheticShapes", "TEXTURES"]

SPLITS = ("train", "val", "test")
"""Names accepted by ``SyntheticShapes(split=...)``; each draws from its own seeds."""

TEXTURES = ("smooth", "striped", "dotted", "grainy")
"""Object textures, assigned to classes 1, 2, ... in turn (class names follow them)."""

SHAPES = ("ellipse", "rectangle", "polygon", "blob")

# Layout of the uniform [0, 1) numbers drawn per object slot; fixed so that a
# sample's content depends only on its seed.
_OBJECT_FIELDS = ("cls", "shape", "cy", "cx", "radius", "aspect", "angle",
                  "sides", "wobble2", "wobble3", "phase2", "phase3", "jitter",
                  "tex_angle", "tex_phase")

_BACKGROUND_MEAN = 0.3
_OBJECT_MEANS = (0.55, 0.9)       # class means spread over this range
_TEXTURE_AMPLITUDE = 0.1
_BACKGROUND_TEXTURE = 0.08        # low-frequency blotches of the background
_OBJECT_JITTER = 0.06             # per-object brightness offset, uniform +-
_GAIN, _OFFSET = (0.8, 1.1), 0.08  # per-image contrast and brightness changes
_TINT = 0.12                      # colour mode: size of the per-class tint
_EDGE_BLUR = 0.5                  # Gaussian sigma (pixels) of the optics before noise


def _class_name(k):
    if k == 0:
        return "background"
    cycle, texture = divmod(k - 1, len(TEXTURES))
    return TEXTURES[texture] if cycle == 0 else f"{TEXTURES[texture]}_{cycle + 1}"


def _class_means(num_classes):
    """Mean intensity of each class; objects spread evenly, all brighter than background."""
    if num_classes == 2:
        return np.array([_BACKGROUND_MEAN, np.mean(_OBJECT_MEANS)], np.float32)
    return np.array([_BACKGROUND_MEAN, *np.linspace(*_OBJECT_MEANS, num_classes - 1)], np.float32)


def _class_tints(num_classes):
    """Colour mode: an RGB offset per class, hues spread around the colour wheel."""
    hue = 2 * np.pi * np.arange(num_classes) / num_classes
    phases = np.array([0.0, -2 * np.pi / 3, 2 * np.pi / 3])
    return (_TINT * np.cos(hue[:, None] + phases)).astype(np.float32)


def _inside(shape, p, yy, xx):
    """Inside-mask of one shape kind for images with parameters ``p`` (arrays ``[n, 1, 1]``)."""
    dy, dx = yy - p["cy"], xx - p["cx"]
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos          # object-aligned coordinates
    r, a = p["radius"], p["aspect"]
    if shape == "ellipse":
        return (u / r) ** 2 + (v / (a * r)) ** 2 <= 1
    if shape == "rectangle":
        return (np.abs(u) <= r) & (np.abs(v) <= a * r)
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if shape == "polygon":
        sector = 2 * np.pi / p["sides"]
        return rho * np.cos(np.mod(phi, sector) - sector / 2) <= r * np.cos(sector / 2)
    return rho <= r * (1 + p["wobble2"] * np.cos(2 * phi + p["phase2"])
                       + p["wobble3"] * np.cos(3 * phi + p["phase3"]))


def _texture(texture, p, yy, xx, grain):
    """Texture field (zero mean, amplitude 1) of one kind for images with parameters ``p``."""
    cos, sin = np.cos(p["tex_angle"]), np.sin(p["tex_angle"])
    dy, dx = yy - p["cy"], xx - p["cx"]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    if texture == "smooth":
        return np.clip(u / p["radius"], -1, 1)                # shading across the object
    if texture == "striped":
        return np.sin(2 * np.pi * u / 5.0 + p["tex_phase"])   # period 5 px
    if texture == "dotted":
        return np.sin(2 * np.pi * u / 7.0) * np.sin(2 * np.pi * v / 7.0)
    return grain


def _by_kind(kinds, names, evaluate, params, dtype):
    """``[N, H, W]`` field where image ``i`` gets ``evaluate(names[kinds[i]], p, images)``.

    Each image evaluates only its own kind; ``p`` holds the parameters of the images of
    one kind as ``[n, 1, 1]`` arrays and ``images`` their indices.
    """
    out = None
    for kind, name in enumerate(names):
        images = np.flatnonzero(kinds == kind)
        if images.size:
            value = evaluate(name, {k: v[images, None, None] for k, v in params.items()}, images)
            if out is None:
                out = np.zeros((kinds.size, *value.shape[1:]), dtype)
            out[images] = value
    return out


class SyntheticShapes(InMemorySource):
    """Textured shapes with thin scribbles, dense masks and tags, generated from a seed.

    Args:
        num_samples: number of images.
        size: image height and width in pixels (>= 16).
        channels: 1 (grayscale) or 3 (colour: classes also differ in tint).
        num_classes: classes including background 0 (>= 2).
        seed: the same seed, split and arguments give identical arrays.
        split: one of :data:`SPLITS`; splits use disjoint seeds.
        scribble_ratio: scribble length kept by
            :func:`~keras_regseg.data.weak_labels.shorten_scribbles` (1 = full, 0 = clicks).
        max_objects: at most this many shapes per image (at least one).
        scribble_margin, scribble_width: passed to
            :func:`~keras_regseg.data.weak_labels.scribbles_from_mask`.
        noise: standard deviation of the pixel noise.

    Attributes:
        scribble_coverage: fraction of pixels carrying a scribble label.

    >>> train = SyntheticShapes(num_samples=3, size=32, seed=0)
    >>> val = SyntheticShapes(num_samples=3, size=32, seed=0, split="val")
    >>> bool(np.array_equal(train.images, SyntheticShapes(3, 32, seed=0).images))
    True
    >>> bool(np.array_equal(train.images, val.images)), val.ids()[0]
    (False, 'val_00000')
    """

    def __init__(self, num_samples: int = 200, size: int = 64, channels: int = 1,
                 num_classes: int = 4, seed: int = 0, split: str = "train",
                 scribble_ratio: float = 1.0, max_objects: int = 5, scribble_margin: int = 3,
                 scribble_width: int = 1, noise: float = 0.06):
        for name, value, low in (("num_samples", num_samples, 1), ("size", size, 16),
                                 ("max_objects", max_objects, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
                or not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(
                f"num_classes must be an integer in [2, {MAX_CLASSES}]; got {num_classes!r}.")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
        if isinstance(scribble_ratio, bool) or not isinstance(scribble_ratio, numbers.Real) \
                or not 0 <= scribble_ratio <= 1:
            raise ValueError(f"scribble_ratio must be a number in [0, 1]; got {scribble_ratio!r}.")
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 <= noise <= 1:
            raise ValueError(f"noise must be a number in [0, 1]; got {noise!r}.")

        seeds = np.random.SeedSequence([seed, SPLITS.index(split)]).spawn(num_samples)
        images, masks = self._render(seeds, size, channels, num_classes, max_objects, noise)
        weak = scribbles_from_mask(masks, num_classes, margin=scribble_margin,
                                   width=scribble_width, min_area=9)
        if scribble_ratio != 1.0:
            weak = shorten_scribbles(weak, scribble_ratio)
        self.scribble_coverage = float(np.mean(weak != IGNORE_INDEX))
        self.seed, self.split, self.scribble_ratio = int(seed), split, scribble_ratio
        super().__init__(
            images=images, weak_labels=weak, num_classes=num_classes, dense_labels=masks,
            ids=[f"{split}_{i:05d}" for i in range(num_samples)],
            tags=tags_from_mask(masks, num_classes),
            class_names=[_class_name(k) for k in range(num_classes)])

    @staticmethod
    def _render(seeds, size, channels, num_classes, max_objects, noise):
        """Draw every sample's numbers from its own seed, then render the batch at once."""
        n = len(seeds)
        draws = [np.random.default_rng(s) for s in seeds]
        # [N, slots, fields] uniforms, image-level uniforms and noise fields, per sample.
        uniforms = np.stack([g.random((max_objects, len(_OBJECT_FIELDS))) for g in draws])
        image_uniforms = np.stack([g.random(3) for g in draws])
        fields = np.stack([g.standard_normal((size, size, 2 + channels), np.float32)
                           for g in draws])

        yy, xx = (c.astype(np.float32) + 0.5 for c in np.mgrid[0:size, 0:size])
        means, tints = _class_means(num_classes), _class_tints(num_classes)
        num_objects = 1 + np.floor(image_uniforms[:, 0] * max_objects).astype(int)

        mask = np.zeros((n, size, size), np.int32)
        intensity = np.zeros((n, size, size), np.float32)
        blotches = ndimage.gaussian_filter(fields[..., 0], sigma=(0, 4, 4))
        blotches /= blotches.std(axis=(1, 2), keepdims=True) + 1e-6
        intensity += _BACKGROUND_MEAN + _BACKGROUND_TEXTURE * blotches
        grain = fields[..., 1]
        for slot in range(max_objects):
            params = _object_params(uniforms[:, slot], size, num_classes)
            inside = _by_kind(params["shape"], SHAPES,
                              lambda name, p, _: _inside(name, p, yy, xx), params, bool)
            inside &= (slot < num_objects)[:, None, None]
            cls = params["cls"]
            texture = _by_kind((cls - 1) % len(TEXTURES), TEXTURES,
                               lambda name, p, images: _texture(name, p, yy, xx, grain[images]),
                               params, np.float32)
            value = means[cls][:, None, None] + params["jitter"][:, None, None] \
                + _TEXTURE_AMPLITUDE * texture
            mask = np.where(inside, cls[:, None, None], mask)   # later objects occlude earlier ones
            intensity = np.where(inside, value, intensity)

        gain = _GAIN[0] + (_GAIN[1] - _GAIN[0]) * image_uniforms[:, 1]
        offset = _OFFSET * (2 * image_uniforms[:, 2] - 1)
        clean = intensity[..., None] + (tints[mask] if channels == 3 else 0.0)
        clean = gain[:, None, None, None] * clean + offset[:, None, None, None]
        clean = ndimage.gaussian_filter(clean, sigma=(0, _EDGE_BLUR, _EDGE_BLUR, 0))
        images = np.clip(clean + noise * fields[..., 2:], 0.0, 1.0).astype(np.float32)
        return images, mask


def _object_params(u, size, num_classes):
    """Map one slot's float64 uniforms ``[N, fields]`` to shape and texture parameters.

    Discrete choices are made in float64 (in float32, ``u * n`` can round up to ``n``
    for ``u`` just below 1); the continuous parameters become float32 so that the image-sized
    arithmetic they enter stays float32.
    """
    f = dict(zip(_OBJECT_FIELDS, u.T))
    continuous = {
        "cy": size * (0.15 + 0.7 * f["cy"]),
        "cx": size * (0.15 + 0.7 * f["cx"]),
        "radius": size * (0.11 + 0.14 * f["radius"]),
        "aspect": 0.45 + 0.55 * f["aspect"],
        "angle": np.pi * f["angle"],
        "sides": 3 + np.floor(f["sides"] * 4),           # 3 to 6, exact in float32
        "wobble2": 0.25 * (2 * f["wobble2"] - 1),
        "wobble3": 0.2 * (2 * f["wobble3"] - 1),
        "phase2": 2 * np.pi * f["phase2"],
        "phase3": 2 * np.pi * f["phase3"],
        "jitter": _OBJECT_JITTER * (2 * f["jitter"] - 1),
        "tex_angle": np.pi * f["tex_angle"],
        "tex_phase": 2 * np.pi * f["tex_phase"],
    }
    params = {k: v.astype(np.float32) for k, v in continuous.items()}
    params["cls"] = 1 + np.floor(f["cls"] * (num_classes - 1)).astype(np.int32)
    params["shape"] = np.floor(f["shape"] * len(SHAPES)).astype(np.int32)
    return params
