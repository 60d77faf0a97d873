"""Trimap boundary metrics: accuracy and mIoU inside a band around label boundaries.

A ground-truth *boundary pixel* has a neighbour (4- or 8-neighbourhood) with a
different class; pairs involving a void pixel (``IGNORE_INDEX`` or
``PAD_INDEX``) do not count, so the edge of an unlabeled region is no
boundary. The *band* of width ``w`` is every non-void pixel whose Euclidean
distance to the nearest boundary pixel is at most ``w``. Metrics are then the
usual confusion-matrix metrics restricted to the band (Kohli et al. 2009;
DeepLab's "trimap" evaluation).

>>> import numpy as np
>>> labels = np.zeros((6, 6), int); labels[:, 3:] = 1
>>> boundary_mask(labels)[0].astype(int).tolist()
[0, 0, 1, 1, 0, 0]
>>> preds = np.zeros((6, 6), int)            # misses class 1 entirely
>>> r = trimap_metrics(labels, preds, num_classes=2, widths=(1,))
>>> r[1]["pixel_accuracy"], r[1]["pixels"]
(0.5, 24)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import distance_transform_edt

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.evaluation.confusion import ConfusionAccumulator

__all__ = ["boundary_distance", "boundary_mask", "trimap_bands", "trimap_metrics",
           "TrimapAccumulator"]

_VOID = (IGNORE_INDEX, PAD_INDEX)


def _neighbour_offsets(connectivity):
    # Each unordered neighbour pair is visited once; both of its pixels get marked.
    if connectivity == 4:
        return ((0, 1), (1, 0))
    if connectivity == 8:
        return ((0, 1), (1, 0), (1, 1), (1, -1))
    raise ValueError(f"connectivity must be 4 or 8; got {connectivity}.")


def _pair_slices(dy, dx):
    """Slices selecting pixels p and their neighbours q = p + (dy, dx), with dy >= 0."""
    rows_p, rows_q = slice(0, -dy or None), slice(dy, None)
    if dx >= 0:
        cols_p, cols_q = slice(0, -dx or None), slice(dx, None)
    else:
        cols_p, cols_q = slice(-dx, None), slice(0, dx)
    return (rows_p, cols_p), (rows_q, cols_q)


def boundary_mask(labels: ArrayLike, connectivity: int = 4, void: int = _VOID) -> np.ndarray:
    """Boolean ``[H, W]``: non-void pixels with a non-void neighbour of another class.

    >>> boundary_mask([[0, 1], [255, 255]]).tolist()
    [[True, True], [False, False]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be one [H, W] map; got shape {labels.shape}.")
    valid = ~np.isin(labels, np.asarray(void))
    boundary = np.zeros(labels.shape, bool)
    for dy, dx in _neighbour_offsets(connectivity):
        p, q = _pair_slices(dy, dx)
        differ = (labels[p] != labels[q]) & valid[p] & valid[q]
        boundary[p] |= differ
        boundary[q] |= differ
    return boundary


def boundary_distance(labels, connectivity=4, void=_VOID):
    """Float ``[H, W]``: Euclidean distance (px) to the nearest boundary pixel; inf when none."""
    boundary = boundary_mask(labels, connectivity, void)
    if not boundary.any():
        return np.full(boundary.shape, np.inf)
    return distance_transform_edt(~boundary)


def trimap_bands(labels: ArrayLike, widths: Sequence[int] = (8, 16), connectivity: int = 4,
                 void: int = _VOID) -> dict[int, np.ndarray]:
    """``{w: boolean [H, W]}``: non-void pixels within distance ``w`` of a boundary."""
    labels = np.asarray(labels)
    distance = boundary_distance(labels, connectivity, void)
    valid = ~np.isin(labels, np.asarray(void))
    return {w: (distance <= w) & valid for w in _check_widths(widths)}


def _check_widths(widths):
    widths = tuple(widths)
    if not widths or any(not np.isfinite(w) or w < 0 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of finite values >= 0; got {widths}.")
    return widths


class TrimapAccumulator:
    """Streaming trimap metrics: one confusion matrix per band width.

    >>> import numpy as np
    >>> acc = TrimapAccumulator(num_classes=2, widths=(1, 2))
    >>> labels = np.zeros((4, 8), int); labels[:, 4:] = 1
    >>> acc.update(labels, labels)
    >>> {w: r["miou"] for w, r in acc.result().items()}
    {1: 1.0, 2: 1.0}
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (8, 16), connectivity: int = 4):
        self.num_classes = int(num_classes)
        self.widths = _check_widths(widths)
        _neighbour_offsets(connectivity)
        self.connectivity = connectivity
        self._confusion = {w: ConfusionAccumulator(num_classes) for w in self.widths}

    def update(self, labels, predictions):
        """Add one ``[H, W]`` map or a stack ``[N, H, W]`` (each map gets its own band)."""
        labels, predictions = np.asarray(labels), np.asarray(predictions)
        if labels.shape != predictions.shape:
            raise ValueError(
                f"labels shape {labels.shape} does not match predictions shape {predictions.shape}.")
        if labels.ndim == 2:
            labels, predictions = labels[None], predictions[None]
        if labels.ndim != 3:
            raise ValueError(f"labels must be [H, W] or [N, H, W]; got shape {labels.shape}.")
        for image_labels, image_preds in zip(labels, predictions):
            bands = trimap_bands(image_labels, self.widths, self.connectivity)
            for w, band in bands.items():
                self._confusion[w].update(np.where(band, image_labels, IGNORE_INDEX), image_preds)

    def result(self):
        """``{w: {"miou", "iou_per_class", "pixel_accuracy", "pixels"}}`` per width.

        A width whose band holds no pixel (no boundary seen yet) maps to
        ``{"pixels": 0}`` and no metric, instead of failing or giving NaN.
        """
        out = {}
        for w, acc in self._confusion.items():
            out[w] = acc.result() if acc.matrix.sum() else {"pixels": 0}
        return out


def trimap_metrics(labels: ArrayLike, predictions: ArrayLike, num_classes: int,
                   widths: Sequence[int] = (8, 16), connectivity: int = 4) -> dict[int, dict]:
    """Trimap metrics of one ``[H, W]`` map or a stack ``[N, H, W]`` of maps.

    Returns ``{w: {"miou", "iou_per_class", "pixel_accuracy", "pixels"}}``; see
    :class:`TrimapAccumulator` (to accumulate over images of different sizes).
    """
    acc = TrimapAccumulator(num_classes, widths, connectivity)
    acc.update(labels, predictions)
    return acc.result()
