"""Contrast-sensitive edge weights of the 8-neighbourhood grid CRF (Boykov-Jolly).

For neighbouring pixels p, q:

    w_pq = exp(-||I_p - I_q||^2 / (2 sigma^2)) / dist(p, q)

with ``dist`` = 1 for horizontal/vertical and sqrt(2) for diagonal pairs, and
``sigma^2`` the image's mean of ``||I_p - I_q||^2`` over all its neighbouring
pairs (each undirected 8-neighbourhood pair once; every image of a batch gets
its own sigma). Pixels outside the image (crop padding) take no part: their
edges get weight 0 and their pairs do not enter sigma.

Constant image: every difference is 0, so sigma^2 = 0 and the formula is 0 / 0.
Its limit is taken instead: all weights ``1 / dist`` (uniform), never NaN.

Each undirected edge appears once, stored at its first pixel p in one of four
*directed maps* (:data:`DIRECTIONS`, ``(dy, dx)`` from p to q): right, down,
down-right, down-left. Map entries whose q falls outside the array are 0. The
grid-CRF loss, :mod:`keras_regseg.losses.potts` and the alpha-expansion solver
all use these maps; :func:`grid_edge_weights` (TensorFlow) and
:func:`grid_edge_weights_np` (numpy) implement the same formula.

>>> import numpy as np
>>> image = np.zeros((3, 3, 1), "float32"); image[:, 2] = 1.0
>>> w = grid_edge_weights_np(image)
>>> w.shape
(4, 3, 3)
>>> bool(w[0, 0, 0] > w[0, 0, 1])  # the right edge crossing the step is cheaper
True
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

__all__ = ["column_inside", "DIRECTIONS", "DISTANCES", "flat_offsets", "grid_edge_weights",
           "grid_edge_weights_np", "shift_flat", "unshift_flat"]

DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""``(dy, dx)`` of the four directed edge maps: right, down, down-right, down-left."""

DISTANCES = tuple(math.hypot(dy, dx) for dy, dx in DIRECTIONS)


def _pair_slices(dy, dx, height, width):
    """Slices selecting p and q = p + (dy, dx) over every in-array pair, and the padding of p's map."""
    x0, x1 = max(0, -dx), width - max(0, dx)
    p = (slice(0, height - dy), slice(x0, x1))
    q = (slice(dy, height), slice(x0 + dx, x1 + dx))
    padding = ((0, dy), (x0, width - x1))
    return p, q, padding


def _check_image_np(image, valid):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim < 3:
        raise ValueError(f"grid_edge_weights_np expects an image [..., H, W, C] or [H, W]; got shape {image.shape}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("grid_edge_weights_np: the image has non-finite values (NaN or inf).")
    if valid is None:
        valid = np.ones(image.shape[:-1], bool)
    valid = np.asarray(valid, bool)
    if valid.shape != image.shape[:-1]:
        raise ValueError(f"grid_edge_weights_np: valid mask shape {valid.shape} does not match image "
                         f"{image.shape[:-1]}.")
    # Weights depend on intensities only through d^2 / sigma^2 (scale invariant): dividing
    # each image by its peak keeps the squares of huge values finite.
    image = image.astype(np.float64)
    peak = np.abs(image).max(axis=(-3, -2, -1), keepdims=True, initial=0.0)
    return image / np.where(peak > 0, peak, 1.0), valid


def grid_edge_weights_np(image: ArrayLike, valid: ArrayLike | None = None) -> np.ndarray:
    """Numpy twin of :func:`grid_edge_weights` for one image or a batch.

    Args:
      image: ``[..., H, W, C]`` (or ``[H, W]``), any real range.
      valid: optional bool ``[..., H, W]``; False marks pixels outside the image.

    Returns:
      float64 ``[..., 4, H, W]``: the right, down, down-right and down-left maps.
    """
    image, valid = _check_image_np(image, valid)
    height, width = image.shape[-3], image.shape[-2]
    lead = image.shape[:-3]
    squared, edge = [], []
    for dy, dx in DIRECTIONS:
        p, q, padding = _pair_slices(dy, dx, height, width)
        diff = image[(..., *p, slice(None))] - image[(..., *q, slice(None))]
        pad = [(0, 0)] * len(lead) + list(padding)
        squared.append(np.pad(np.sum(diff**2, -1), pad))
        edge.append(np.pad(valid[(..., *p)] & valid[(..., *q)], pad))
    squared, edge = np.stack(squared, -3), np.stack(edge, -3)
    count = edge.sum(axis=(-3, -2, -1), keepdims=True)
    sigma2 = np.where(edge, squared, 0.0).sum(axis=(-3, -2, -1), keepdims=True) / np.maximum(count, 1)
    safe = np.where(sigma2 > 0, sigma2, 1.0)
    contrast = np.where(sigma2 > 0, np.exp(-squared / (2.0 * safe)), 1.0)
    distance = np.asarray(DISTANCES).reshape(4, 1, 1)
    return np.where(edge, contrast / distance, 0.0)


def flat_offsets(width):
    """Offsets ``dy * W + dx`` of the four directions in a row-major flattened ``[B, H*W, ...]`` array."""
    return [dy * width + dx for dy, dx in DIRECTIONS]


def shift_flat(x, offset):
    """``out[:, p] = x[:, p + offset]`` along axis 1 (zeros past the end).

    On flattened images this pairs every pixel p with its neighbour q: contiguous
    slices, much cheaper (and with a cheaper gradient) than 2-D strided slices.
    Pairs that wrap to the next row have q out of the image: callers zero them
    with :func:`column_inside`.
    """
    return tf.concat([x[:, offset:], tf.zeros_like(x[:, :offset])], axis=1)


def unshift_flat(x, offset):
    """Adjoint of :func:`shift_flat`: ``out[:, q] = x[:, q - offset]`` (zeros before the start)."""
    return tf.concat([tf.zeros_like(x[:, :offset]), x[:, : tf.shape(x)[1] - offset]], axis=1)


def column_inside(height, width, dx):
    """Bool ``[H*W]``: the neighbour column ``x + dx`` is inside ``[0, W)``."""
    column = tf.range(width) + dx
    return tf.tile((column >= 0) & (column < width), [height])


def grid_edge_weights(image: tf.Tensor, valid: tf.Tensor | None = None) -> tf.Tensor:
    """Contrast-sensitive 8-neighbourhood edge weights, batched, in TensorFlow.

    Args:
      image: float ``[B, H, W, C]`` (C = 1 grayscale, 3 colour; any range).
      valid: optional bool ``[B, H, W]``; False marks pixels outside the image.

    Returns:
      ``[B, 4, H, W]`` in the image's float dtype (float32 unless float64), no
      gradient: the right, down, down-right and down-left maps.

    >>> image = tf.constant([[[[0.0], [0.0], [1.0]]]])  # one row 0 0 1: sigma^2 = 1/2
    >>> [round(float(v), 4) for v in grid_edge_weights(image)[0, 0, 0]]
    [1.0, 0.3679, 0.0]
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 4:
        raise ValueError(f"grid_edge_weights expects an image [B, H, W, C]; got shape {image.shape}.")
    dtype = tf.float64 if image.dtype == tf.float64 else tf.float32
    image = tf.stop_gradient(tf.cast(image, dtype))
    peak = tf.reduce_max(tf.abs(image), axis=[1, 2, 3], keepdims=True)  # scale invariance, as the numpy twin
    image = image / tf.where(peak > 0, peak, 1.0)
    if valid is None:
        valid = tf.ones(tf.shape(image)[:3], tf.bool)
    valid = tf.cast(valid, tf.bool)
    shape = tf.shape(image)
    batch, height, width = shape[0], shape[1], shape[2]
    flat_image = tf.reshape(image, tf.stack([batch, height * width, -1]))
    flat_valid = tf.reshape(valid, tf.stack([batch, height * width]))
    squared, edge = [], []
    for (dy, dx), offset in zip(DIRECTIONS, flat_offsets(width)):
        squared.append(tf.reduce_sum(tf.square(flat_image - shift_flat(flat_image, offset)), -1))
        inside = flat_valid & shift_flat(flat_valid, offset) & column_inside(height, width, dx)[None]
        edge.append(tf.cast(inside, dtype))
    map_shape = tf.stack([batch, 4, height, width])
    squared, edge = tf.reshape(tf.stack(squared, 1), map_shape), tf.reshape(tf.stack(edge, 1), map_shape)
    count = tf.reduce_sum(edge, axis=[1, 2, 3], keepdims=True)
    sigma2 = tf.reduce_sum(edge * squared, axis=[1, 2, 3], keepdims=True) / tf.maximum(count, 1.0)
    has_contrast = sigma2 > 0
    # Constant image (sigma^2 = 0): the limit of the formula, uniform weights 1 / dist.
    contrast = tf.where(has_contrast, tf.exp(-squared / (2.0 * tf.where(has_contrast, sigma2, 1.0))), 1.0)
    distance = tf.constant(DISTANCES, dtype)[None, :, None, None]
    return edge * contrast / distance
