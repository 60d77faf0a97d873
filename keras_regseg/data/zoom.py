"""Order-0 resizing of (Z, H, W) volumes slice by slice, as WSL4MIS resizes ACDC.

:func:`zoom_nearest` is ``scipy.ndimage.zoom(order=0)`` of every slice, fast;
:func:`zoom_seeds` the same for scribbles, without losing a click.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from keras_regseg.data.spec import IGNORE_INDEX

__all__ = ["zoom_nearest", "zoom_seeds"]


def zoom_nearest(volume, size):
    """Resize the last two axes of (Z, H, W) ``volume`` to ``size`` like ``zoom(order=0)``.

    Order-0 zoom picks, per axis, one source index for each output index. The
    index maps come from ``scipy.ndimage.zoom`` itself (applied to ``arange``),
    so the result is identical to zooming each slice, and a gather with them is
    several times faster than zooming the volume. Identical includes scipy's
    quirk: for some sizes float rounding puts the last output row or column
    just outside the input, and zoom fills it with 0.

    >>> volume = np.arange(2 * 5 * 3).reshape(2, 5, 3)
    >>> bool(np.array_equal(zoom_nearest(volume, (7, 4)),
    ...                     scipy.ndimage.zoom(volume, (1, 7 / 5, 4 / 3), order=0)))
    True
    """
    rows, cols = (_zoom_source_indices(n, out) for n, out in zip(volume.shape[1:], size))
    zoomed = volume[:, np.maximum(rows, 0)[:, None], np.maximum(cols, 0)[None, :]]
    zoomed[:, (rows < 0)[:, None] | (cols < 0)[None, :]] = 0
    return zoomed


def _zoom_source_indices(size_in, size_out):
    """``[size_out]``: the input index order-0 zoom copies to each output index (-1: its 0 fill)."""
    # Source indices + 1, so that zoom's out-of-bounds fill (0) becomes index -1.
    return scipy.ndimage.zoom(np.arange(1, size_in + 1, dtype=np.float64), size_out / size_in,
                              order=0).astype(np.intp) - 1


def _zoom_sources(size_in, size_out):
    """Boolean ``[size_in]``: the input indices that order-0 zoom copies to some output index."""
    sources = _zoom_source_indices(size_in, size_out)
    kept = np.zeros(size_in, bool)
    kept[sources[sources >= 0]] = True
    return kept


def _forward_index(size_in, size_out):
    """``[size_in]``: the output index nearest to each input index under order-0 zoom."""
    if size_in == 1 or size_out == 1:
        return np.zeros(size_in, np.intp)
    scale = (size_out - 1) / (size_in - 1)
    return np.clip(np.rint(np.arange(size_in) * scale), 0, size_out - 1).astype(np.intp)


def zoom_seeds(weak_label, size, ignore_index=IGNORE_INDEX):
    """Resize a (Z, H, W) seed map like :func:`zoom_nearest`, without losing any scribble.

    Order-0 zoom keeps about one input row and column in every ``H / h``: a long
    stroke survives as dashes, but a click (one pixel) or a short piece of a
    shortened scribble often vanishes (at 256 -> 128, about 3 clicks in 4 did
    on ACDC). Every seed component (8-connected, one class, one slice) with no
    pixel left gets one: its pixel nearest its centroid, mapped to the output
    grid. Components with a surviving pixel are left exactly as zoomed.

    >>> seeds = np.full((1, 8, 8), 255, np.int32); seeds[0, 3, 3] = 1     # one click
    >>> int((zoom_nearest(seeds, (4, 4)) == 1).sum()), int((zoom_seeds(seeds, (4, 4)) == 1).sum())
    (0, 1)
    """
    zoomed = zoom_nearest(weak_label, size)
    _, height, width = weak_label.shape
    kept_rows, kept_cols = _zoom_sources(height, size[0]), _zoom_sources(width, size[1])
    out_rows, out_cols = _forward_index(height, size[0]), _forward_index(width, size[1])
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True          # 8-connectivity inside each slice, never across slices
    for value in np.unique(weak_label[weak_label != ignore_index]):
        components, _ = scipy.ndimage.label(weak_label == value, structure)
        for index, box in enumerate(scipy.ndimage.find_objects(components), start=1):
            z, y, x = np.nonzero(components[box] == index)
            z, y, x = z + box[0].start, y + box[1].start, x + box[2].start
            if (kept_rows[y] & kept_cols[x]).any():
                continue
            nearest = np.argmin((y - y.mean()) ** 2 + (x - x.mean()) ** 2)
            target = (z[nearest], out_rows[y[nearest]], out_cols[x[nearest]])
            if zoomed[target] == ignore_index:
                zoomed[target] = value
    return zoomed
