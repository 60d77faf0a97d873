"""Linear constraints on the CCNN latent distribution (Pathak et al., ICCV 2015, sec. 5).

CCNN looks for a latent distribution ``P`` (one softmax per pixel) close to the
network output that satisfies linear constraints. Every constraint here bounds
the *mass* of one class ``l`` inside a pixel weight map ``m`` (the whole image,
or a region such as a box) on the ``h x w`` grid where the dual is solved::

    (1/n) * sum_p m[p] * P_p[l]   >=  bound      (lower bound)
    (1/n) * sum_p m[p] * P_p[l]   <=  bound      (upper bound)

with ``n = h * w``. Rows are divided by ``n`` as in the authors' code, so bounds
are fractions of the image (``0.05`` = 5 % of its pixels). Each bound carries a
slack weight ``beta`` (paper eq. 6): violating the bound by ``xi`` costs
``beta * xi``, which caps its dual variable at ``0 <= mu <= beta``; ``mu`` is
also the largest bias (in logits) the bound can add to a pixel. ``beta = 0``
turns a bound off. Suppression (``P_p[l] = 0``) is exact, not a bound: see
:class:`ConstraintSet`.

A batch of constraints is a :class:`ConstraintSet` of tensors. The paper's
constraints come from image tags with :func:`tag_constraints`; users add their
own with :meth:`ConstraintSet.with_region_bounds`,
:meth:`ConstraintSet.with_suppression` and :meth:`ConstraintSet.with_boxes`.

>>> import numpy as np
>>> tags = np.array([[1, 0, 1]], "float32")          # background and class 2
>>> cs = tag_constraints(tags)
>>> cs.lower.numpy().astype(float).round(2).tolist()               # bg >= 0.3, class 2 >= 0.05
[[0.3, 0.0, 0.05]]
>>> cs.forbidden.numpy()[0, 0, 0].tolist()           # class 1 is suppressed
[False, True, False]
>>> cs = cs.with_boxes([[[0.0, 0.0, 0.5, 0.5]]], [[2]], grid_shape=(4, 4))
>>> cs.regions.masks.shape                           # one box region on a 4 x 4 grid
TensorShape([1, 1, 4, 4])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

__all__ = ["box_masks", "ConstraintSet", "HARD_SLACK", "Regions", "tag_constraints",
           "TagConstraintConfig", "tags_from_class_lists"]

HARD_SLACK = 1000.0
"""Slack weight of bounds the authors enforce without slack (their ``1e10``).

A finite cap keeps the dual bounded when such bounds contradict each other
(the dual would otherwise diverge); a per-pixel bias of 1000 logits already
overrides any network output.
"""


@dataclasses.dataclass(frozen=True)
class TagConstraintConfig:
    """Bounds of the paper's tag and size constraints (fractions of the image).

    Defaults are the paper's (sec. 5) and REFERENCE.md's: foreground lower bound
    ``0.05 n`` with slack 2, background between ``0.3 n`` and ``0.7 n`` (the authors
    use no slack there: :data:`HARD_SLACK`), and with size bits a lower bound of
    ``0.1 n`` for classes above 10 % of the image and an upper bound of ``0.01 n``
    for the others.

    Args:
        background_class: index of the background class, or ``None`` when every
            class is a foreground class (no background bounds).
        foreground_lower: lower bound of each tagged foreground class.
        foreground_slack: slack weight of the foreground bounds (also the size ones).
        background_lower: lower bound of the background when it is tagged.
        background_upper: upper bound of the background when it is tagged along
            with at least one foreground class (as the authors' code).
        background_slack: slack weight of both background bounds.
        large_lower: lower bound of a tagged class whose size bit is set
            (replaces ``foreground_lower``).
        small_upper: upper bound of a tagged class whose size bit is clear
            (it then has no lower bound, as in the authors' code).

    >>> TagConstraintConfig(foreground_lower=0.1).get_config()["foreground_lower"]
    0.1
    """

    background_class: Optional[int] = 0
    foreground_lower: float = 0.05
    foreground_slack: float = 2.0
    background_lower: float = 0.3
    background_upper: float = 0.7
    background_slack: float = HARD_SLACK
    large_lower: float = 0.1
    small_upper: float = 0.01

    def __post_init__(self):
        if self.background_class is not None and (
                isinstance(self.background_class, bool)
                or int(self.background_class) != self.background_class
                or self.background_class < 0):
            raise ValueError(
                "background_class must be a class index >= 0 or None; "
                f"got {self.background_class!r}.")
        for name in ("foreground_lower", "background_lower", "background_upper",
                     "large_lower", "small_upper"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a fraction of the image and must be in [0, 1]; "
                                 f"got {value}.")
        for name in ("foreground_slack", "background_slack"):
            value = getattr(self, name)
            if not 0.0 <= value < np.inf:
                raise ValueError(f"{name} must be finite and >= 0; got {value}.")
        if self.background_lower > self.background_upper:
            raise ValueError(
                f"background_lower ({self.background_lower}) exceeds background_upper "
                f"({self.background_upper}).")

    def get_config(self):
        """Plain dict of the fields (JSON-serializable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        """Inverse of :meth:`get_config`."""
        return cls(**config)


class Regions(NamedTuple):
    """Bounds on class mass inside weighted regions, ``R`` per image.

    Fields (``R`` may differ from batch to batch; a padding region has slack 0):
        masks: float32 ``[B, R, h, w]`` pixel weights in ``[0, 1]``.
        classes: int32 ``[B, R]`` class of each region's bound.
        bounds: float32 ``[B, R]`` bound on ``(1/n) sum_p m[p] P_p[class]``.
        senses: float32 ``[B, R]``, ``+1`` for a lower bound, ``-1`` for an upper one.
        slacks: float32 ``[B, R]`` slack weights (0 turns the bound off).
    """

    masks: tf.Tensor
    classes: tf.Tensor
    bounds: tf.Tensor
    senses: tf.Tensor
    slacks: tf.Tensor


class ConstraintSet(NamedTuple):
    """Constraints of a batch of ``B`` images with ``K`` classes.

    Fields:
        lower, lower_slack: float32 ``[B, K]``; ``(1/n) sum_p P_p[k] >= lower[k]``
            with slack weight ``lower_slack[k]`` (0 = no bound).
        upper, upper_slack: float32 ``[B, K]``; ``(1/n) sum_p P_p[k] <= upper[k]``.
        forbidden: bool ``[B, 1, 1, K]`` (whole image) or ``[B, h, w, K]``;
            ``P_p[k] = 0`` exactly where True.
        regions: optional :class:`Regions`.

    Why suppression is exact: with ``P >= 0``, the paper's ``sum_p P_p[l] <= 0``
    (eq. 7) holds only if every ``P_p[l] = 0``, so the authors' code removes the
    label from the softmax (``addZeroConstraint``). As a bound it would need an
    unbounded dual (a capped ``mu`` leaves ``P_p[l] = q e^-beta / Z > 0``), so
    forbidden entries are dropped instead. A pixel where *every* class is
    forbidden (contradictory input) keeps all its classes; the solver reports
    that mass as violation.
    """

    lower: tf.Tensor
    lower_slack: tf.Tensor
    upper: tf.Tensor
    upper_slack: tf.Tensor
    forbidden: tf.Tensor
    regions: Optional[Regions] = None

    @property
    def num_classes(self):
        """Static number of classes K."""
        return int(self.lower.shape[-1])

    def with_region_bounds(self, masks, classes, fraction, sense="lower", slack=2.0):
        """Add bounds on the mass of ``classes`` inside weighted regions.

        ``sum_p m[p] P_p[c] >= fraction * sum_p m[p]`` (``sense="lower"``) or
        ``<=`` (``sense="upper"``): ``fraction`` is relative to the region's area.

        Args:
            masks: ``[B, R, h, w]`` weights in ``[0, 1]`` on the solver's grid.
            classes: int ``[B, R]``; ``-1`` marks a padding region (ignored).
            fraction: scalar or ``[B, R]``, in ``[0, 1]``.
            sense: ``"lower"`` or ``"upper"``.
            slack: scalar or ``[B, R]`` slack weight, finite and ``>= 0``.

        >>> cs = tag_constraints([[1.0, 1.0]])
        >>> top_row = [[[[1.0, 1.0], [0.0, 0.0]]]]
        >>> cs = cs.with_region_bounds(top_row, [[1]], fraction=0.9)
        >>> cs.regions.bounds.numpy().astype(float).round(2).tolist()     # 0.9 * 2 pixels / 4
        [[0.45]]
        """
        if sense not in ("lower", "upper"):
            raise ValueError(f"sense must be 'lower' or 'upper'; got {sense!r}.")
        masks = tf.convert_to_tensor(masks, tf.float32)
        if masks.shape.rank != 4:
            raise ValueError(f"masks must have shape [B, R, h, w]; got {masks.shape}.")
        classes = tf.convert_to_tensor(classes, tf.int32)
        _check_class_range(classes, self.num_classes, "region classes")
        fraction = tf.broadcast_to(tf.convert_to_tensor(fraction, tf.float32), tf.shape(classes))
        slack = tf.broadcast_to(tf.convert_to_tensor(slack, tf.float32), tf.shape(classes))
        checks = [
            tf.debugging.assert_greater_equal(masks, 0.0, message="region masks must be >= 0"),
            tf.debugging.assert_less_equal(masks, 1.0, message="region masks must be <= 1"),
            tf.debugging.assert_greater_equal(fraction, 0.0, message="fraction must be >= 0"),
            tf.debugging.assert_less_equal(fraction, 1.0, message="fraction must be <= 1"),
            tf.debugging.assert_non_negative(slack, message="slack must be >= 0"),
            tf.debugging.assert_less(slack, np.inf, message="slack must be finite"),
        ]
        with tf.control_dependencies(checks):
            real = classes >= 0
            # Padding regions: zero mask and zero slack, so they never act.
            masks = masks * tf.cast(real, tf.float32)[:, :, None, None]
            bounds = fraction * tf.reduce_mean(masks, axis=[2, 3])
            new = Regions(
                masks=masks,
                classes=tf.maximum(classes, 0),
                bounds=bounds,
                senses=tf.fill(tf.shape(bounds), 1.0 if sense == "lower" else -1.0),
                slacks=tf.where(real, slack, 0.0),
            )
        if self.regions is None:
            return self._replace(regions=new)
        merged = Regions(*(tf.concat([old, add], axis=1) for old, add in zip(self.regions, new)))
        return self._replace(regions=merged)

    def with_suppression(self, forbidden):
        """Forbid classes on pixels: ``P_p[k] = 0`` where ``forbidden[b, y, x, k]``.

        Args:
            forbidden: bool ``[B, h, w, K]`` (or broadcastable to it).

        >>> cs = tag_constraints([[1.0, 1.0]]).with_suppression([[[[False, True]]]])
        >>> cs.forbidden.numpy().tolist()
        [[[[False, True]]]]
        """
        forbidden = tf.convert_to_tensor(forbidden, tf.bool)
        if forbidden.shape.rank != 4 or forbidden.shape[-1] not in (None, self.num_classes):
            raise ValueError(f"forbidden must have shape [B, h, w, {self.num_classes}]; "
                             f"got {forbidden.shape}.")
        return self._replace(forbidden=tf.logical_or(self.forbidden, forbidden))

    def with_seeds(self, seeds):
        """Keep seed pixels at their labels: every other class is forbidden there.

        With the suppression exact, the latent distribution of a seed pixel is
        the one-hot of its label whatever the network and the other bounds say
        (scribbles, clicks); pixels without a seed are left to the constraints.

        Args:
            seeds: int ``[B, h, w]`` on the solver's grid: a class index in
                ``[0, K)`` on seed pixels, any other value (255, 254) elsewhere.

        >>> cs = tag_constraints([[1.0, 1.0, 1.0]]).with_seeds([[[2, 255]]])
        >>> cs.forbidden.numpy()[0, 0].tolist()
        [[True, True, False], [False, False, False]]
        """
        seeds = tf.convert_to_tensor(seeds, tf.int32)
        if seeds.shape.rank != 3:
            raise ValueError(f"seeds must have shape [B, h, w]; got {seeds.shape}.")
        is_seed = tf.logical_and(seeds >= 0, seeds < self.num_classes)
        label = tf.one_hot(tf.where(is_seed, seeds, 0), self.num_classes) > 0.5
        return self.with_suppression(tf.logical_and(is_seed[..., None],
                                                    tf.logical_not(label)))

    def with_boxes(self, boxes, classes, grid_shape, inside_fraction=0.75, slack=2.0):
        """Bounding-box constraints (paper sec. 7.4).

        For each box, at least ``inside_fraction`` of its area takes its class
        (a lower bound with the given slack), and its class is suppressed on
        every pixel outside all boxes of that class.

        Args:
            boxes: float ``[B, R, 4]`` as ``(y0, x0, y1, x1)`` in normalized image
                coordinates ``[0, 1]`` (independent of the grid's resolution).
            classes: int ``[B, R]``; ``-1`` marks padding.
            grid_shape: ``(h, w)`` of the solver's grid.
            inside_fraction: fraction of each box that takes its class.
            slack: slack weight of the box bounds.

        >>> cs = tag_constraints([[1.0, 1.0]])
        >>> cs = cs.with_boxes([[[0.0, 0.0, 0.5, 1.0]]], [[1]], grid_shape=(2, 2))
        >>> cs.forbidden.numpy()[0, :, :, 1].tolist()        # class 1 only in the top row
        [[False, False], [True, True]]
        """
        return self.with_box_masks(box_masks(boxes, grid_shape), classes, inside_fraction, slack)

    def with_box_masks(self, masks, classes, inside_fraction=0.75, slack=2.0):
        """Box constraints from box masks on the solver's grid (boxes after augmentation).

        The same constraints as :meth:`with_boxes`: at least ``inside_fraction``
        of each box takes its class, and a class that has boxes is suppressed
        wherever none of its boxes reaches.

        Args:
            masks: ``[B, R, h, w]``, the fraction of each cell a box covers.
            classes: int ``[B, R]``; ``-1`` marks padding.
            inside_fraction: scalar or ``[B, R]`` (e.g. a fraction per class gathered
                by the box classes).
            slack: slack weight of the box bounds.

        >>> cs = tag_constraints([[1.0, 1.0]])
        >>> cs = cs.with_box_masks([[[[1.0, 0.5], [0.0, 0.0]]]], [[1]], inside_fraction=0.5)
        >>> cs.regions.bounds.numpy().astype(float).round(3).tolist(), cs.forbidden.numpy()[0, 1, :, 1].tolist()
        ([[0.188]], [True, True])
        """
        masks = tf.convert_to_tensor(masks, tf.float32)
        classes = tf.convert_to_tensor(classes, tf.int32)
        _check_class_range(classes, self.num_classes, "box classes")
        with_bounds = self.with_region_bounds(masks, classes, inside_fraction, "lower", slack)
        # A class with boxes is allowed only where one of its boxes covers the pixel.
        one_hot = tf.one_hot(classes, self.num_classes)  # padding (-1) gives zeros
        inside = tf.einsum("brhw,brk->bhwk", tf.cast(masks > 0.0, tf.float32), one_hot) > 0.0
        has_box = tf.reduce_any(one_hot > 0.0, axis=1)[:, None, None, :]
        return with_bounds.with_suppression(tf.logical_and(has_box, tf.logical_not(inside)))

    def with_size_bounds(self, sizes, margin=0.1, slack=2.0):
        """Bound each class's mass near a known size (Kervadec et al., MedIA 2019).

        A class of size ``s > 0`` keeps its mass in ``[(1 - margin) s, (1 + margin) s]``
        (replacing the bounds it had); a class of size 0 is suppressed. An image
        whose sizes are all 0 (nothing known) is left as it was.

        Args:
            sizes: float ``[B, K]``, each class's fraction of the image.
            margin: relative tolerance of the bounds, in ``[0, 1]``.
            slack: slack weight of the bounds.

        >>> cs = tag_constraints([[0.0, 0.0, 0.0]]).with_size_bounds([[0.9, 0.1, 0.0]])
        >>> cs.lower.numpy().astype(float).round(2).tolist(), cs.upper.numpy().astype(float).round(2).tolist()
        ([[0.81, 0.09, 0.0]], [[0.99, 0.11, 1.0]])
        >>> cs.forbidden.numpy()[0, 0, 0].tolist()
        [False, False, True]
        """
        sizes = tf.convert_to_tensor(sizes, tf.float32)
        if sizes.shape.rank != 2 or sizes.shape[-1] != self.num_classes:
            raise ValueError(f"sizes must have shape [B, {self.num_classes}]; got {sizes.shape}.")
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1]; got {margin}.")
        known = tf.reduce_any(sizes > 0.0, axis=-1, keepdims=True)
        present = sizes > 0.0
        bounded = tf.logical_and(known, present)
        return self._replace(
            lower=tf.where(bounded, (1.0 - margin) * sizes, self.lower),
            lower_slack=tf.where(bounded, slack, self.lower_slack),
            upper=tf.where(bounded, tf.minimum((1.0 + margin) * sizes, 1.0), self.upper),
            upper_slack=tf.where(bounded, slack, self.upper_slack),
            forbidden=tf.logical_or(self.forbidden, tf.logical_and(
                known, tf.logical_not(present))[:, None, None, :]))


def box_masks(boxes: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """Area covered by each box in each grid cell, as float32 ``[B, R, h, w]`` in ``[0, 1]``.

    Cell ``(i, j)`` spans ``[i/h, (i+1)/h] x [j/w, (j+1)/w]`` in normalized coordinates.

    >>> box_masks([[[0.0, 0.25, 0.5, 1.0]]], (2, 2)).numpy()[0, 0].tolist()
    [[0.5, 1.0], [0.0, 0.0]]
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    if boxes.shape.rank != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [B, R, 4] as (y0, x0, y1, x1); got {boxes.shape}.")
    h, w = (int(s) for s in grid_shape)
    checks = [
        tf.debugging.assert_greater_equal(boxes, 0.0, message="box coordinates must be in [0, 1]"),
        tf.debugging.assert_less_equal(boxes, 1.0, message="box coordinates must be in [0, 1]"),
        tf.debugging.assert_less_equal(boxes[..., :2], boxes[..., 2:],
                                       message="boxes must satisfy y0 <= y1 and x0 <= x1"),
    ]
    with tf.control_dependencies(checks):
        cover_y = _interval_cover(boxes[..., 0], boxes[..., 2], h)
        cover_x = _interval_cover(boxes[..., 1], boxes[..., 3], w)
    return cover_y[..., :, None] * cover_x[..., None, :]


def _interval_cover(start, stop, cells):
    """Fraction of each of ``cells`` unit cells of ``[0, 1]`` covered by ``[start, stop]``."""
    edges = tf.range(cells + 1, dtype=tf.float32) / cells
    low, high = edges[:-1], edges[1:]
    overlap = tf.minimum(stop[..., None], high) - tf.maximum(start[..., None], low)
    return tf.clip_by_value(overlap * cells, 0.0, 1.0)


def tag_constraints(tags: ArrayLike, size_bits: ArrayLike | None = None,
                    config: TagConstraintConfig | None = None) -> ConstraintSet:
    """The paper's constraints from image tags (and optional size bits).

    Per image, with ``present = tags > 0.5``:

    - suppression (eq. 7) of every class that is not tagged;
    - foreground (eq. 8): mass of each tagged foreground class ``>= foreground_lower``;
    - background (eq. 9): mass between ``background_lower`` and ``background_upper``
      when the background is tagged (the upper bound only if a foreground class is too);
    - size (eq. 10), when ``size_bits`` is given: a tagged class with its bit set
      (above 10 % of the image) gets the lower bound ``large_lower`` instead, one
      with its bit clear gets the upper bound ``small_upper`` and no lower bound.
      Size bits of the background and of untagged classes are ignored.

    An image with no tag at all gets no constraint (nothing is known about it):
    its latent distribution equals the network output, so it adds no gradient.

    Args:
        tags: float ``[B, K]`` multi-hot tags.
        size_bits: optional float ``[B, K]``; 1 where a class covers more than 10 %
            of the image.
        config: a :class:`TagConstraintConfig` (defaults when omitted).

    Returns:
        A :class:`ConstraintSet` whose ``forbidden`` has shape ``[B, 1, 1, K]``.

    >>> cs = tag_constraints([[1, 1, 1]], size_bits=[[0, 1, 0]])
    >>> cs.lower.numpy().astype(float).round(2).tolist(), cs.upper_slack.numpy().tolist()
    ([[0.3, 0.1, 0.0]], [[1000.0, 0.0, 2.0]])
    """
    config = config or TagConstraintConfig()
    tags = tf.convert_to_tensor(tags, tf.float32)
    if tags.shape.rank != 2 or tags.shape[-1] is None:
        raise ValueError(f"tags must have shape [B, K] with K known; got {tags.shape}.")
    num_classes = int(tags.shape[-1])
    background = config.background_class
    if background is not None and background >= num_classes:
        raise ValueError(f"background_class {background} is outside [0, {num_classes}).")
    present = tags > 0.5
    tagged_any = tf.reduce_any(present, axis=-1, keepdims=True)
    forbidden = tf.logical_and(tf.logical_not(present), tagged_any)

    is_background = tf.constant(
        [k == background for k in range(num_classes)], tf.bool)[None, :]
    foreground = tf.logical_and(present, tf.logical_not(is_background))
    zeros = tf.zeros_like(tags)
    if size_bits is None:
        lower = tf.where(foreground, config.foreground_lower, 0.0)
        lower_slack = tf.where(foreground, config.foreground_slack, 0.0)
        upper, upper_slack = tf.ones_like(tags), zeros
    else:
        size_bits = tf.convert_to_tensor(size_bits, tf.float32)
        if size_bits.shape.rank != 2 or size_bits.shape[-1] != num_classes:
            raise ValueError(f"size_bits must have the shape of tags {tags.shape}; "
                             f"got {size_bits.shape}.")
        large = tf.logical_and(foreground, size_bits > 0.5)
        small = tf.logical_and(foreground, size_bits <= 0.5)
        lower = tf.where(large, config.large_lower, 0.0)
        lower_slack = tf.where(large, config.foreground_slack, 0.0)
        upper = tf.where(small, config.small_upper, 1.0)
        upper_slack = tf.where(small, config.foreground_slack, 0.0)

    if background is not None:
        lower_on = present[:, background:background + 1]
        upper_on = tf.logical_and(lower_on, tf.reduce_any(foreground, axis=-1, keepdims=True))
        # Inactive bounds read lower 0, upper 1 (and slack 0), like every other class.
        lower = tf.where(is_background, tf.where(lower_on, config.background_lower, 0.0), lower)
        lower_slack = tf.where(
            is_background, tf.where(lower_on, config.background_slack, 0.0), lower_slack)
        upper = tf.where(is_background, tf.where(upper_on, config.background_upper, 1.0), upper)
        upper_slack = tf.where(
            is_background, tf.where(upper_on, config.background_slack, 0.0), upper_slack)
    return ConstraintSet(lower=lower, lower_slack=lower_slack, upper=upper,
                         upper_slack=upper_slack, forbidden=forbidden[:, None, None, :])


def tags_from_class_lists(class_lists: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Multi-hot float32 ``[B, K]`` tags from per-image lists of class indices.

    Raises ``ValueError`` naming the image and the class when an index is outside
    ``[0, num_classes)``. An empty list gives an all-zero row (an untagged image).

    >>> tags_from_class_lists([[0, 2], []], 3).tolist()
    [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    tags = np.zeros((len(class_lists), int(num_classes)), np.float32)
    for image, classes in enumerate(class_lists):
        for label in classes:
            if int(label) != label or not 0 <= label < num_classes:
                raise ValueError(f"image {image}: tag {label!r} is not a class index in "
                                 f"[0, {num_classes}).")
            tags[image, int(label)] = 1.0
    return tags


def _check_class_range(classes, num_classes, what):
    """A ValueError naming the bad values when they are known (eager), else a graph assertion."""
    if tf.executing_eagerly():
        values = classes.numpy()
        bad = values[(values >= num_classes) | (values < -1)]
        if bad.size:
            raise ValueError(f"{what} must be in [0, {num_classes}) or -1 for padding; "
                             f"got {bad.tolist()}.")
        return
    tf.debugging.assert_less(classes, num_classes,
                             message=f"{what} must be < {num_classes}")
