"""Weak labels made from dense masks: scribbles, clicks, image tags and size bits.

Simulated scribbles (:func:`scribbles_from_mask`) imitate what an annotator
draws: one thin stroke through the middle of every connected region of every
class, background included, kept away from the region's boundary. They are
built in three vectorized steps over a whole batch of masks:

1. *Erode*: each region is shrunk by ``margin`` pixels (less for regions too
   thin for it, so that every region keeps some interior).
2. *Centred longest path*: the eroded region is a graph (8-neighbours); a step
   costs its length times ``1 / d``, ``d`` the Euclidean distance to the
   region's boundary. Minimal paths under such a cost run along the medial axis
   (the ridges of ``d``), as in centreline extraction by minimal paths
   (Deschamps and Cohen, Medical Image Analysis 2001). The stroke is the
   minimal path from the pixel farthest from the region's centroid to the
   pixel farthest from that one under this cost (one Dijkstra sweep). Unlike a
   bare skeleton it also crosses compact regions (a disk's skeleton is a
   point; its stroke is a diameter), and a branching medial axis still gives
   one stroke, as a person would draw. A single minimal path is one pixel
   thin: as ``d`` changes by at most a pixel per step, a shortcut between two
   non-consecutive path pixels would be cheaper, so none touch.
3. *Widen*: optionally dilate each stroke to 2-3 pixels, clipped to its region.

Scribbles are shortened (:func:`shorten_scribbles`) by geodesic position along
each stroke, the protocol of the trust-region paper (ratios 0.8, 0.5, 0.3 and 0
for one click per scribble).

>>> import numpy as np
>>> mask = np.zeros((12, 20), np.int32); mask[3:9, 4:16] = 1
>>> weak = scribbles_from_mask(mask, num_classes=2, margin=1)
>>> sorted(np.unique(weak).tolist())
[0, 1, 255]
>>> bool(np.all((weak == 255) | (weak == mask)))
True
>>> clicks = shorten_scribbles(weak, 0.0)
>>> [int((clicks == k).sum()) for k in (0, 1)]
[1, 1]
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from keras_regseg.data.spec import IGNORE_INDEX, MAX_CLASSES, PAD_INDEX

__all__ = ["boxes_from_mask", "class_sizes_from_mask", "scribbles_from_mask", "shorten_scribbles",
           "size_bits_from_mask", "tags_from_mask"]

_SQRT2 = float(np.sqrt(2.0))

# One direction of each 8-neighbour pair (dy, dx, step length); the graph is undirected.
_HALF_NEIGHBOURS = ((0, 1, 1.0), (1, -1, _SQRT2), (1, 0, 1.0), (1, 1, _SQRT2))

# Distances are sums of 1 and sqrt(2); comparisons allow for float rounding.
_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- input checks

def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(
            f"num_classes must be an integer in [1, {MAX_CLASSES}]; got {num_classes!r}.")
    return int(num_classes)


def _check_label_maps(labels, name, num_classes, void_values):
    """Validate an int label map ``[H, W]`` or batch ``[N, H, W]``; return it as ``[N, H, W]``.

    Values must lie in ``[0, num_classes)`` or be one of ``void_values``.
    """
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape [H, W] or [N, H, W]; got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold integer class indices; got dtype {arr.dtype}.")
    wide = arr.astype(np.int64)  # check before narrowing, so huge values cannot wrap
    bad = ((wide < 0) | (wide >= num_classes)) & ~np.isin(wide, void_values)
    if bad.any():
        raise ValueError(
            f"{name} holds value {int(wide[bad][0])}; expected class indices in "
            f"[0, {num_classes}) or one of {sorted(set(int(v) for v in void_values))}.")
    arr = wide.astype(np.int32)
    return arr if arr.ndim == 3 else arr[None]


def _check_ignore_index(ignore_index, num_classes):
    if not isinstance(ignore_index, numbers.Integral) or 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index must be an integer outside the class range [0, {num_classes}); "
            f"got {ignore_index!r}.")
    return int(ignore_index)


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}.")
    return float(value)


def _check_width(width):
    """``width`` as an inclusive ``(low, high)`` range of stroke widths."""
    low, high = (width, width) if isinstance(width, numbers.Integral) else tuple(width)
    _check_int(low, "width", 1), _check_int(high, "width", 1)
    if low > high:
        raise ValueError(f"width range must have low <= high; got {width!r}.")
    return int(low), int(high)


# --------------------------------------------------------------------------- array helpers

def _shift(array, dy, dx, fill):
    """``out[:, y, x] = array[:, y - dy, x - dx]`` inside each image; ``fill`` elsewhere."""
    out = np.full_like(array, fill)
    h, w = array.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        array[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _argmin_per_group(groups, *keys, slacks=()):
    """Index of the element with the smallest ``keys`` (first key primary) in each group.

    Keys refine in turn: after each key, the candidates of a group are those within
    ``slack`` of the group's minimum (``slacks[i]`` for key ``i``, float rounding by
    default). ``groups`` are non-negative ints; returns one index per group present, in
    increasing group order, ties going to the lowest index. Grouped minima by
    ``np.minimum.at`` are several times faster than a lexsort here.
    """
    size = int(groups.max()) + 1
    candidates = np.arange(groups.size)
    for i, key in enumerate(keys):
        key = key[candidates]
        least = np.full(size, np.inf)
        np.minimum.at(least, groups[candidates], key)
        slack = slacks[i] if i < len(slacks) else _TOLERANCE
        candidates = candidates[key <= least[groups[candidates]] + slack]
    first = np.full(size, groups.size)
    np.minimum.at(first, groups[candidates], candidates)
    return first[first < groups.size]


# --------------------------------------------------------------------------- regions

def _region_ids(masks, valid, classes):
    """Connected regions (8-connectivity) of every class, numbered ``1..R`` over the batch.

    Void pixels get 0. Returns ``(regions, R)``.
    """
    planar_8 = np.zeros((3, 3, 3), bool)
    planar_8[1] = True  # connect pixels inside one image only, never across the batch
    regions = np.zeros(masks.shape, np.int32)
    count = 0
    for k in classes:
        labeled, n = ndimage.label(valid & (masks == k), structure=planar_8)
        regions[labeled > 0] = labeled[labeled > 0] + count
        count += n
    return regions, count


def _capped_depth(masks, valid, margin):
    """Per pixel, ``1 + m`` for the largest ``m <= margin`` such that the ``(2m+1)^2``
    window around the pixel holds only the pixel's class.

    Pixels outside the image count as another class, so strokes keep away from the border
    too. Void pixels get 0. Repeated 3x3 min/max filters equal the larger windows.
    """
    marked = np.where(valid, masks, -1)
    low, high = marked, marked
    depth = valid.astype(np.int32)
    for _ in range(margin):
        low = ndimage.minimum_filter(low, size=(1, 3, 3), mode="constant", cval=-1)
        high = ndimage.maximum_filter(high, size=(1, 3, 3), mode="constant", cval=-1)
        depth += valid & (low == high)
    return depth


def _boundary_distance(masks, valid):
    """Euclidean distance of each pixel to the nearest pixel of another class, void or outside.

    One distance transform for the whole batch: its seeds are the pixels that differ from a
    4-neighbour (the image border counts as a difference), and a pixel's distance to its
    region's outside is its distance to those seeds plus one (approximately: the nearest
    seed may lie just outside the region). Images are stacked vertically into one 2-D array:
    every image's top and bottom rows are seeds, so no distance crosses into another image.
    """
    n, h, w = masks.shape
    marked = np.pad(np.where(valid, masks, -1), ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    centre = marked[:, 1:-1, 1:-1]
    differs = ((centre != marked[:, :-2, 1:-1]) | (centre != marked[:, 2:, 1:-1])
               | (centre != marked[:, 1:-1, :-2]) | (centre != marked[:, 1:-1, 2:]))
    distance = ndimage.distance_transform_edt(~differs.reshape(n * h, w))
    return distance.reshape(n, h, w) + 1.0


# --------------------------------------------------------------------------- stroke graphs

def _stroke_graph(on, labels, cost=None):
    """Sparse undirected graph of 8-adjacent ``on`` pixels with equal ``labels``.

    An edge weighs its step length (1 or sqrt(2)), times the mean ``cost`` of its two
    pixels when a per-pixel ``cost`` is given. Returns ``(graph, flat_indices)``; node
    ``i`` is pixel ``flat_indices[i]`` of the batch.
    """
    flat = np.flatnonzero(on)
    node = np.full(on.shape, -1, np.int64)
    node.flat[flat] = np.arange(flat.size)
    rows, cols, lengths = [], [], []
    for dy, dx, length in _HALF_NEIGHBOURS:
        neighbour = _shift(node, -dy, -dx, -1)
        neighbour_label = _shift(labels, -dy, -dx, -1)
        linked = (node >= 0) & (neighbour >= 0) & (neighbour_label == labels)
        rows.append(node[linked])
        cols.append(neighbour[linked])
        weight = np.full(int(linked.sum()), length)
        if cost is not None:
            weight *= 0.5 * (cost[linked] + _shift(cost, -dy, -dx, 0.0)[linked])
        lengths.append(weight)
    graph = sparse.csr_matrix(
        (np.concatenate(lengths), (np.concatenate(rows), np.concatenate(cols))),
        shape=(flat.size, flat.size))
    return graph, flat


def _farthest(graph, stroke, sources, predecessors=False):
    """Distances of every node from its stroke's source, the farthest node per stroke, and
    optionally the shortest-path predecessors towards the sources (-9999 at a source)."""
    result = csgraph.dijkstra(graph, directed=False, indices=sources, min_only=True,
                              return_predecessors=predecessors)
    dist = result[0] if predecessors else result
    farthest = _argmin_per_group(stroke, -dist)
    return (dist, farthest, result[1]) if predecessors else (dist, farthest)


def _stroke_ends(graph):
    """Double-sweep endpoints of every connected stroke of a non-empty stroke graph.

    Returns ``(stroke, b, dist_a, dist_b)``: the stroke index of each node, the far end
    ``b`` of each stroke and geodesic distances of every node from the stroke's two ends
    (``dist_a[b]`` is the stroke length). Exact for tree-shaped strokes, a close
    approximation of the longest path otherwise.
    """
    _, stroke = csgraph.connected_components(graph, directed=False)
    start = np.unique(stroke, return_index=True)[1]
    a = _farthest(graph, stroke, start)[1]
    dist_a, b = _farthest(graph, stroke, a)
    return stroke, b, dist_a, _farthest(graph, stroke, b)[0]


def _path_nodes(pred, ends, num_nodes):
    """Nodes on the predecessor chains from ``ends`` back to their roots.

    Walking a chain is sequential by nature; the loop runs once per step of the longest
    chain and handles every stroke of the batch in each step.
    """
    on_path = np.zeros(num_nodes, bool)
    current = np.asarray(ends)
    while current.size:
        on_path[current] = True
        current = pred[current]
        current = current[current >= 0]
    return on_path


def _centred_strokes(interior, regions, cost):
    """Per region, a minimal path between two far-apart interior pixels (bool ``[N, H, W]``).

    One end is the pixel farthest (Euclidean) from its piece's centroid, a cheap stand-in
    for the first Dijkstra sweep; the other is the farthest from it under ``cost``.
    """
    strokes = np.zeros(interior.shape, bool)
    graph, flat = _stroke_graph(interior, regions, cost)
    if flat.size == 0:
        return strokes
    _, piece = csgraph.connected_components(graph, directed=False)
    _, rows, cols = np.unravel_index(flat, interior.shape)
    pixels = np.bincount(piece)
    centre_row = np.bincount(piece, rows) / pixels
    centre_col = np.bincount(piece, cols) / pixels
    a = _argmin_per_group(piece, -np.hypot(rows - centre_row[piece], cols - centre_col[piece]))
    dist_a, b, pred_a = _farthest(graph, piece, a, predecessors=True)
    # Erosion can split a region (a dumbbell's neck); keep the longest stroke per region.
    chosen = _argmin_per_group(regions.flat[flat[a]], -dist_a[b])
    strokes.flat[flat[_path_nodes(pred_a, b[chosen], flat.size)]] = True
    return strokes


def _widen(strokes, regions, region_widths):
    """Dilate each stroke by a square of its region's width, never leaving its region."""
    stroke_regions = np.where(strokes, regions, 0)
    widths = region_widths[stroke_regions]
    out = strokes.copy()
    for width in np.unique(widths[strokes]):
        source = np.where(strokes & (widths == width), regions, 0)
        # A width-w square: offsets -(w-1)//2 .. w//2 (w = 2 grows down and right).
        offsets = range(-((width - 1) // 2), width // 2 + 1)
        for dy in offsets:
            for dx in offsets:
                shifted = _shift(source, dy, dx, 0)
                out |= (shifted > 0) & (shifted == regions)
    return out


# --------------------------------------------------------------------------- public API

def scribbles_from_mask(mask: ArrayLike, num_classes: int,
                        rng: np.random.Generator | int | None = None,
                        ignore_index: int = IGNORE_INDEX, margin: int = 2, width: int = 1,
                        min_area: int = 1) -> np.ndarray:
    """Simulate one thin scribble per connected region of every class of a dense mask.

    See the module docstring for the method (erode, centred longest path, widen). Every
    region of at least ``min_area`` pixels gets one stroke, background included; regions
    too thin for ``margin`` are eroded less (a one-pixel region gets a one-pixel stroke).
    Strokes only cover pixels of their own region, so they always agree with the mask.

    Args:
        mask: int ``[H, W]`` or batch ``[N, H, W]``; classes ``0..K-1``, ``ignore_index`` or
            ``PAD_INDEX`` on void pixels (never scribbled).
        num_classes: number of classes K.
        rng: ``None``, a seed or a ``numpy.random.Generator``; only draws stroke widths
            when ``width`` is a range.
        ignore_index: the "unlabeled" value, in the mask and in the result.
        margin: distance in pixels (chessboard) kept between strokes and region
            boundaries or the image border, where the region is thick enough.
        width: stroke width in pixels, or an inclusive ``(low, high)`` range drawn per stroke.
        min_area: regions with fewer pixels get no stroke.

    Returns:
        int32 weak label of the mask's shape: the class on stroke pixels, ``PAD_INDEX``
        where the mask has it, ``ignore_index`` elsewhere.

    >>> import numpy as np
    >>> mask = np.zeros((10, 20), np.int32); mask[3:8, 4:17] = 1
    >>> weak = scribbles_from_mask(mask, num_classes=2, margin=1)
    >>> for row in weak:
    ...     print("".join("-" if v == 255 else str(v) for v in row))
    --------------------
    ---000000000000000--
    --0---------------0-
    -0----------------0-
    -0---1---------1--0-
    -0----111111111---0-
    -0----------------0-
    -0----------------0-
    -0----------------0-
    --------------------
    """
    num_classes = _check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index, num_classes)
    margin = _check_int(margin, "margin", 0)
    min_area = _check_int(min_area, "min_area", 1)
    low_width, high_width = _check_width(width)
    masks = _check_label_maps(mask, "mask", num_classes, (ignore_index, PAD_INDEX))
    rng = np.random.default_rng(rng)

    valid = masks < num_classes
    present = np.flatnonzero(np.bincount(masks[valid], minlength=num_classes))
    regions, num_regions = _region_ids(masks, valid, present)
    depth = _capped_depth(masks, valid, margin)
    area = np.bincount(regions.ravel(), minlength=num_regions + 1)
    max_depth = np.zeros(num_regions + 1, np.int32)
    np.maximum.at(max_depth, regions.ravel(), depth.ravel())
    eligible = area >= min_area
    eligible[0] = False
    region_margin = np.minimum(margin, max_depth - 1)
    interior = eligible[regions] & (depth > region_margin[regions])

    # Steps cost 1 / distance-to-boundary, so minimal paths follow the medial axis.
    cost = 1.0 / _boundary_distance(masks, valid) if num_regions else None
    strokes = _centred_strokes(interior, regions, cost)

    if high_width > 1:
        region_widths = rng.integers(low_width, high_width + 1, size=num_regions + 1)
        strokes = _widen(strokes, regions, region_widths)
    weak = np.where(strokes, masks, ignore_index).astype(np.int32)
    weak[masks == PAD_INDEX] = PAD_INDEX
    return weak if np.ndim(mask) == 3 else weak[0]


def shorten_scribbles(weak_label: ArrayLike, ratio: float, ignore_index: int = IGNORE_INDEX,
                      click_radius: int = 0) -> np.ndarray:
    """Shorten every scribble from both ends to ``ratio`` of its geodesic length.

    A scribble is a connected region (8-connectivity) of one class in the weak label.
    Its two ends ``a, b`` come from a double sweep of geodesic distances inside it; a
    pixel stays when its distance to both ends is at least ``(1 - ratio) / 2`` of the
    length ``d(a, b)``, so a thin stroke keeps its middle ``ratio`` part. Each scribble
    also keeps its *click*: a pixel at the middle (``d(p, a) = d(p, b)`` within a pixel),
    the deepest one inside thick strokes, plus the scribble's pixels within
    ``click_radius`` of it. Ratio 0 keeps only the click, ratio 1 returns the input
    unchanged, and a smaller ratio always keeps a subset of what a larger one keeps.

    Args:
        weak_label: int ``[H, W]`` or ``[N, H, W]``; classes in ``[0, 254)``,
            ``ignore_index`` on unlabeled pixels, ``PAD_INDEX`` on padding (kept).
        ratio: number in ``[0, 1]``.
        ignore_index: the "unlabeled" value.
        click_radius: radius in pixels of the click disk (0 = one pixel).

    Returns:
        int32 weak label of the same shape.

    >>> import numpy as np
    >>> line = np.full((3, 23), 255, np.int32); line[1, 1:22] = 2   # length 20
    >>> half = shorten_scribbles(line, 0.5)
    >>> np.flatnonzero(half[1] == 2).tolist()                     # 11 pixels, 10 px long
    [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    """
    ratio = _check_fraction(ratio, "ratio")
    click_radius = _check_int(click_radius, "click_radius", 0)
    if not isinstance(ignore_index, numbers.Integral):
        raise ValueError(f"ignore_index must be an integer; got {ignore_index!r}.")
    labels = _check_label_maps(weak_label, "weak_label", MAX_CLASSES, (ignore_index, PAD_INDEX))
    seeds = (labels != ignore_index) & (labels != PAD_INDEX)
    out = labels.copy()
    if ratio == 1.0 or not seeds.any():
        return out if np.ndim(weak_label) == 3 else out[0]
    graph, flat = _stroke_graph(seeds, labels)
    stroke, b, dist_a, dist_b = _stroke_ends(graph)
    keep = np.zeros(flat.size, bool)
    if ratio > 0.0:
        cut = (1.0 - ratio) / 2.0 * dist_a[b][stroke]
        keep = np.minimum(dist_a, dist_b) >= cut - _TOLERANCE
    # The click: in the cross-section within a pixel of the middle, the pixel deepest
    # inside the scribble, then the one nearest the middle. Depth matters for thick
    # strokes, whose ends are corners: there the exact middle may lie on an edge.
    offset = np.abs(dist_a - dist_b)
    depth = _boundary_distance(labels, seeds).flat[flat]
    click = _argmin_per_group(stroke, offset, -depth, offset, slacks=(1.0,))
    _, rows, cols = np.unravel_index(flat, labels.shape)
    near_click = (rows - rows[click][stroke]) ** 2 + (cols - cols[click][stroke]) ** 2
    keep |= near_click <= click_radius ** 2
    out.flat[flat[~keep]] = ignore_index
    return out if np.ndim(weak_label) == 3 else out[0]


def _class_counts(mask, num_classes):
    """``(masks [N, H, W], counts [N, K], image_pixels [N])``; void pixels are not counted."""
    num_classes = _check_num_classes(num_classes)
    masks = _check_label_maps(mask, "mask", num_classes, (IGNORE_INDEX, PAD_INDEX))
    valid = masks < num_classes
    image_of_pixel = np.broadcast_to(np.arange(masks.shape[0])[:, None, None], masks.shape)
    counts = np.bincount(image_of_pixel[valid] * num_classes + masks[valid],
                         minlength=masks.shape[0] * num_classes)
    image_pixels = (masks != PAD_INDEX).sum(axis=(1, 2))
    return masks, counts.reshape(masks.shape[0], num_classes), image_pixels


def tags_from_mask(mask: ArrayLike, num_classes: int) -> np.ndarray:
    """Multi-hot float32 image tags: 1 for every class present in the mask.

    ``IGNORE_INDEX`` and ``PAD_INDEX`` pixels are skipped. A batch ``[N, H, W]`` gives
    ``[N, K]``, one mask ``[H, W]`` gives ``[K]``.

    >>> import numpy as np
    >>> tags_from_mask(np.array([[0, 2], [255, 2]]), 4).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    _, counts, _ = _class_counts(mask, num_classes)
    tags = (counts > 0).astype(np.float32)
    return tags if np.ndim(mask) == 3 else tags[0]


def size_bits_from_mask(mask: ArrayLike, num_classes: int, threshold: float = 0.1) -> np.ndarray:
    """CCNN size bits: 1 for every class covering more than ``threshold`` of the image.

    The image is every pixel that is not ``PAD_INDEX`` (unlabeled pixels are part of the
    image but count for no class). Shapes as in :func:`tags_from_mask`.

    >>> import numpy as np
    >>> mask = np.zeros((10, 10), np.int32); mask[0, :5] = 1; mask[5:, :] = 2
    >>> size_bits_from_mask(mask, 3).tolist()      # class 1 covers 5%
    [1.0, 0.0, 1.0]
    """
    threshold = _check_fraction(threshold, "threshold")
    # Compared in float64: a float32 fraction rounds 1/1 and 0.9999999999999999 together.
    bits = (_class_fractions(mask, num_classes) > threshold).astype(np.float32)
    return bits


def class_sizes_from_mask(mask, num_classes):
    """float32 fraction of the image each class covers (the image: every non-padding pixel).

    Unlabeled pixels (``IGNORE_INDEX``) are part of the image and count for no
    class. Shapes as in :func:`tags_from_mask`.

    >>> import numpy as np
    >>> mask = np.zeros((5, 4), np.int32); mask[0, :2] = 1; mask[4] = 254
    >>> class_sizes_from_mask(mask, 3).round(3).tolist()     # 16 image pixels
    [0.875, 0.125, 0.0]
    """
    return _class_fractions(mask, num_classes).astype(np.float32)


def _class_fractions(mask, num_classes):
    _, counts, image_pixels = _class_counts(mask, num_classes)
    fractions = counts / np.maximum(image_pixels, 1)[:, None]
    return fractions if np.ndim(mask) == 3 else fractions[0]


def boxes_from_mask(mask, num_classes, max_boxes, background=0):
    """Bounding boxes of a dense mask: one per connected component of each foreground class.

    Components are 8-connected; when there are more than ``max_boxes`` the
    largest (by pixels) are kept. Boxes are ``(y0, x0, y1, x1)`` in normalized
    image coordinates: a box covers pixel rows ``y0 * H .. y1 * H`` (edges), so a
    component spanning rows ``r0..r1`` gives ``y0 = r0 / H``, ``y1 = (r1 + 1) / H``.

    Returns ``(boxes float32 [max_boxes, 4], classes int32 [max_boxes])``; unused
    rows are zeros with class -1.

    >>> import numpy as np
    >>> mask = np.zeros((4, 8), np.int32); mask[1:3, 0:2] = 2; mask[0, 6:] = 2
    >>> boxes, classes = boxes_from_mask(mask, 3, max_boxes=3)
    >>> boxes.tolist()[:2], classes.tolist()
    ([[0.25, 0.0, 0.75, 0.25], [0.0, 0.75, 0.25, 1.0]], [2, 2, -1])
    """
    from scipy import ndimage

    if np.ndim(mask) != 2:
        raise ValueError(f"boxes_from_mask expects one mask [H, W]; got shape {np.shape(mask)}.")
    num_classes = _check_num_classes(num_classes)
    mask = _check_label_maps(mask, "mask", num_classes, (IGNORE_INDEX, PAD_INDEX))[0]
    max_boxes = _check_int(max_boxes, "max_boxes", 1)
    height, width = mask.shape
    found = []   # (pixels, class, box)
    for label in range(num_classes):
        if label == background:
            continue
        components, count = ndimage.label(mask == label, structure=np.ones((3, 3)))
        for index, (rows, cols) in enumerate(ndimage.find_objects(components), start=1):
            pixels = int((components[rows, cols] == index).sum())
            found.append((pixels, label, (rows.start / height, cols.start / width,
                                          rows.stop / height, cols.stop / width)))
    found.sort(key=lambda item: -item[0])   # stable: ties keep class order
    boxes = np.zeros((max_boxes, 4), np.float32)
    classes = np.full((max_boxes,), -1, np.int32)
    for row, (_, label, box) in enumerate(found[:max_boxes]):
        boxes[row], classes[row] = box, label
    return boxes, classes
