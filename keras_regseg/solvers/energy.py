"""The 8-grid contrast-sensitive Potts energy of one image, in floats and as a GCO problem.

For an image with probability map ``p`` (``[H, W, K]``), weak labels ``seeds``
(``[H, W]``: class index on seed pixels, ``IGNORE_INDEX`` on unlabeled ones,
``PAD_INDEX`` outside the image) and a labeling ``x``::

    E(x) = unary_weight * sum_{p unlabeled} -log(max(p_p[x_p], PROBABILITY_FLOOR))
         + potts_weight * sum_{pq in 8-grid} w_pq [x_p != x_q]

with seeds as hard constraints (``E = inf`` when a seed is violated) and padding
pixels left out of both sums. ``w_pq`` are Boykov-Jolly contrast weights
``exp(-||I_p - I_q||^2 / (2 sigma^2)) / dist(p, q)``, sigma^2 the mean squared
difference over all neighbouring pairs inside the image (the same weights as
``keras_regseg.losses.contrast``). This is the energy of ADM's latent step
and of stage A of the robust trust region (see ``shared/REFERENCE.md``).

Edge arrays are flat and follow :func:`grid_pairs`: first every "right" pair,
then "down", "down-right" and "down-left", each in raster order.

GCO works on int32 terms and *aborts the process* (uncaught C++ exception) when
a data or smoothness term exceeds ``GCO_MAX_ENERGYTERM = 10**7``.
:func:`build_gco_problem` therefore scales every problem to fixed integer
budgets below that bound (see :data:`UNARY_BUDGET`); its total energy is summed
by GCO in 64 bits, so no overflow can happen for any finite input.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from keras_regseg.constants import IGNORE_INDEX, MAX_CLASSES, PAD_INDEX  # noqa: F401

__all__ = ["AUTHORS_HARD", "AUTHORS_SCALE", "build_authors_problem", "build_gco_problem",
           "check_edge_weights", "check_inputs", "check_weights", "contrast_edge_weights",
           "EDGE_BUDGET", "edge_weights_from_maps", "GCO_MAX_ENERGYTERM", "GcoProblem",
           "grid_pairs", "negative_log_probabilities", "pair_normalization", "potts_energy",
           "present_labels", "PROBABILITY_FLOOR", "PROBABILITY_TOLERANCE", "start_labeling",
           "UNARY_BUDGET"]

PROBABILITY_FLOOR = 1e-8
"""Probabilities are clipped to ``[PROBABILITY_FLOOR, 1]`` before ``-log``: a zero
probability costs ``-log(1e-8) ~ 18.4`` instead of infinity, so that the network's
confident mistakes stay correctable by the Potts term and energies stay finite."""

PROBABILITY_TOLERANCE = 1e-3
"""Probabilities may leave ``[0, 1]`` by this much (rounding in softmax, float16)."""

GCO_MAX_ENERGYTERM = 10_000_000
"""GCO's own limit on one data or smoothness term; above it GCO calls ``abort``."""

UNARY_BUDGET = 2**23
"""Largest integer data cost of an unlabeled pixel after quantization (8.4e6)."""

EDGE_BUDGET = 2**20
"""Largest integer edge cost after quantization. A seed pixel's penalty for a wrong
label is the sum of its (at most 8) incident edges plus one, so at most
``8 * EDGE_BUDGET + 1 = UNARY_BUDGET + 1``, still below :data:`GCO_MAX_ENERGYTERM`.
Inside one graph-cut move a node's terminal capacity sums one data cost and at
most 8 edges, below ``2 ** 25``: far from int32 overflow."""


def _name(image_id):
    return "<unnamed>" if image_id is None else repr(image_id)


def check_inputs(probabilities, image, seeds, image_id=None):
    """Validate one image's solver inputs; return ``(probabilities, image, seeds)`` as numpy.

    ``probabilities``: finite ``[H, W, K]`` in ``[0, 1]`` (up to
    :data:`PROBABILITY_TOLERANCE`); ``image``: finite ``[H, W]`` or ``[H, W, C]``
    (returned as ``[H, W, C]``) or ``None``; ``seeds``: integral ``[H, W]`` with
    values in ``[0, K)``, ``IGNORE_INDEX`` or ``PAD_INDEX`` (returned as int32).
    Raises ``ValueError`` naming ``image_id`` and what was expected.

    >>> p = np.full((2, 3, 2), 0.5, "float32")
    >>> _, im, s = check_inputs(p, np.zeros((2, 3)), np.full((2, 3), 255))
    >>> im.shape, s.dtype.name
    ((2, 3, 1), 'int32')
    >>> check_inputs(p, np.zeros((4, 4, 1)), np.full((2, 3), 255), image_id="a")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image 'a': the probability map is 2x3 but the image is 4x4; expected the same ...
    """
    name = _name(image_id)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 3 or probabilities.shape[-1] < 1:
        raise ValueError(
            f"image {name}: probabilities have shape {probabilities.shape}; expected [H, W, K] with K >= 1."
        )
    if probabilities.shape[-1] > MAX_CLASSES:
        raise ValueError(
            f"image {name}: {probabilities.shape[-1]} classes; at most {MAX_CLASSES} are supported."
        )
    if not np.issubdtype(probabilities.dtype, np.number) or np.iscomplexobj(probabilities):
        raise ValueError(
            f"image {name}: probabilities have dtype {probabilities.dtype}; expected real numbers."
        )
    finite = np.isfinite(probabilities)
    if not finite.all():
        raise ValueError(
            f"image {name}: the probability map holds {int(finite.size - finite.sum())} non-finite "
            "values (NaN or inf); expected finite probabilities in [0, 1]."
        )
    low, high = float(probabilities.min()), float(probabilities.max())
    if low < -PROBABILITY_TOLERANCE or high > 1.0 + PROBABILITY_TOLERANCE:
        raise ValueError(
            f"image {name}: probabilities range over [{low:g}, {high:g}]; expected values in [0, 1] "
            "(softmax outputs, not logits)."
        )
    height, width, num_classes = probabilities.shape

    if image is not None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError(
                f"image {name}: the image has shape {image.shape}; expected [H, W] or [H, W, C]."
            )
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"image {name}: the probability map is {height}x{width} but the image is "
                f"{image.shape[0]}x{image.shape[1]}; expected the same height and width."
            )
        if not np.issubdtype(image.dtype, np.number) or not np.isfinite(image).all():
            raise ValueError(
                f"image {name}: the image holds non-finite or non-numeric values; expected finite pixels."
            )

    seeds = np.asarray(seeds)
    if seeds.shape != (height, width):
        raise ValueError(
            f"image {name}: seeds have shape {seeds.shape}; expected {(height, width)} "
            "(the probability map's height and width)."
        )
    if not np.issubdtype(seeds.dtype, np.integer):
        if not np.issubdtype(seeds.dtype, np.floating) or not np.array_equal(seeds, np.round(seeds)):
            raise ValueError(f"image {name}: seeds must hold integer labels; got dtype {seeds.dtype}.")
    bad = ~(((seeds >= 0) & (seeds < num_classes)) | (seeds == IGNORE_INDEX) | (seeds == PAD_INDEX))
    if bad.any():
        raise ValueError(
            f"image {name}: seed value {seeds[bad].flat[0].item()!r} is neither a class in "
            f"[0, {num_classes}) "
            f"nor IGNORE_INDEX ({IGNORE_INDEX}) nor PAD_INDEX ({PAD_INDEX})."
        )
    return probabilities, image, seeds.astype(np.int32)


def check_weights(unary_weight, potts_weight):
    """Return both weights as floats; ``ValueError`` unless finite and >= 0."""
    values = []
    for label, value in (("unary_weight", unary_weight), ("potts_weight", potts_weight)):
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{label} is {value!r}; expected a finite number >= 0.")
        values.append(value)
    return tuple(values)


@functools.lru_cache(maxsize=32)
def grid_pairs(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """8-neighbourhood pairs of an ``height x width`` grid as flat pixel indices.

    Returns read-only int32 ``(first, second)``, ``first < second`` everywhere
    (GCO silently drops other pairs): right pairs, then down, down-right and
    down-left (``(i, j + 1)`` with ``(i + 1, j)``), each in raster order.
    Cached per shape.

    >>> first, second = grid_pairs(2, 2)
    >>> list(zip(first.tolist(), second.tolist()))
    [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)]
    """
    index = np.arange(height * width, dtype=np.int32).reshape(height, width)
    firsts = (index[:, :-1], index[:-1, :], index[:-1, :-1], index[:-1, 1:])
    seconds = (index[:, 1:], index[1:, :], index[1:, 1:], index[1:, :-1])
    first = np.concatenate([a.ravel() for a in firsts])
    second = np.concatenate([b.ravel() for b in seconds])
    first.flags.writeable = False
    second.flags.writeable = False
    return first, second


def _boykov_jolly_weights(image, valid=None):
    """Boykov-Jolly weights of the 8-grid, flat and aligned with :func:`grid_pairs`.

    ``w_pq = exp(-||I_p - I_q||^2 / (2 sigma^2)) / dist(p, q)``, sigma^2 = mean of
    ``||I_p - I_q||^2`` over the pairs whose two pixels are ``valid`` (default:
    all); pairs touching an invalid pixel get 0. A constant image (sigma = 0)
    gives ``1 / dist`` everywhere. TensorFlow-free twin of
    ``keras_regseg.losses.contrast.grid_edge_weights_np`` (a test checks that
    they agree); the solver cannot import that module in its workers.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    height, width = image.shape[:2]
    # The weights depend on intensities only through d^2 / sigma^2, which is scale
    # invariant: normalizing first keeps the squares of huge values finite.
    peak = np.abs(image).max(initial=0.0)
    if peak > 0:
        image = image / peak
    squared = _pair_values(image, lambda a, b: np.sum((a - b) ** 2, axis=-1))
    if valid is None:
        inside = np.ones(squared.shape, bool)
    else:
        inside = _pair_values(np.asarray(valid, bool), np.logical_and)
    sigma2 = float(squared[inside].mean()) if inside.any() else 0.0
    if sigma2 > 0:
        with np.errstate(over="ignore", under="ignore"):
            weights = np.exp(-squared / (2.0 * sigma2))
    else:
        weights = np.ones_like(squared)
    straight = height * (width - 1) + (height - 1) * width
    weights[straight:] /= np.sqrt(2.0)
    weights[~inside] = 0.0
    return weights


def edge_weights_from_maps(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Flatten directed weight maps ``[4, H, W]`` into a vector aligned with :func:`grid_pairs`.

    The maps use the layout of ``keras_regseg.losses.contrast``: right, down,
    down-right and down-left, the weight of pair (p, q = p + (dy, dx)) stored at p.

    >>> maps = np.arange(16.0).reshape(4, 2, 2)
    >>> edge_weights_from_maps(maps).tolist()        # right x2, down x2, down-right, down-left
    [0.0, 2.0, 4.0, 5.0, 8.0, 13.0]
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != 4:
        raise ValueError(f"weight maps have shape {maps.shape}; expected [4, H, W].")
    right, down, down_right, down_left = maps
    parts = (right[:, :-1], down[:-1, :], down_right[:-1, :-1], down_left[:-1, 1:])
    return np.concatenate([part.ravel() for part in parts])


def contrast_edge_weights(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Boykov-Jolly 8-grid weights of ``image`` (``[H, W]`` or ``[H, W, C]``) aligned
    with :func:`grid_pairs`; values in ``[0, 1]`` (diagonals at most ``1/sqrt(2)``).
    ``valid`` (bool ``[H, W]``) marks the pixels inside the image: pairs touching
    others get 0 and stay out of sigma.

    >>> w = contrast_edge_weights(np.zeros((2, 2)))        # constant image: 1 / dist
    >>> np.round(w, 3).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.707, 0.707]
    """
    return _boykov_jolly_weights(image, valid)


def check_edge_weights(edge_weights, height, width, image_id=None):
    """Return ``edge_weights`` as float64 after checking length, finiteness and sign."""
    edge_weights = np.asarray(edge_weights, dtype=np.float64)
    expected = grid_pairs(height, width)[0].size
    if edge_weights.shape != (expected,):
        raise ValueError(
            f"image {_name(image_id)}: edge weights have shape {edge_weights.shape}; expected "
            f"({expected},) for a {height}x{width} 8-grid (see grid_pairs)."
        )
    if not np.isfinite(edge_weights).all() or (edge_weights < 0).any():
        raise ValueError(f"image {_name(image_id)}: edge weights must be finite and >= 0.")
    return edge_weights


def present_labels(seeds: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels the solver may use: the classes present among the seeds, or all
    ``num_classes`` when fewer than two are present (the trust-region paper's rule).

    >>> present_labels(np.array([[1, 255], [3, 1]]), 4).tolist()
    [1, 3]
    >>> present_labels(np.array([[2, 255]]), 4).tolist()
    [0, 1, 2, 3]
    """
    seeds = np.asarray(seeds)
    labels = np.unique(seeds[(seeds >= 0) & (seeds < num_classes)]).astype(np.int32)
    if labels.size < 2:
        return np.arange(num_classes, dtype=np.int32)
    return labels


def start_labeling(probabilities: np.ndarray, seeds: np.ndarray,
                   labels: np.ndarray | None = None) -> np.ndarray:
    """The solver's starting point: argmax of ``probabilities`` over ``labels``
    (default all), seeds imposed, ``PAD_INDEX`` on padding. int32 ``[H, W]``.

    >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]]])
    >>> start_labeling(p, np.array([[1, 254]])).tolist()
    [[1, 254]]
    """
    probabilities = np.asarray(probabilities)
    num_classes = probabilities.shape[-1]
    labels = np.arange(num_classes) if labels is None else np.asarray(labels)
    best = labels[np.argmax(probabilities[..., labels], axis=-1)].astype(np.int32)
    seeded = (seeds >= 0) & (seeds < num_classes)
    best[seeded] = seeds[seeded]
    best[seeds == PAD_INDEX] = PAD_INDEX
    return best


def negative_log_probabilities(probabilities):
    """``-log`` of probabilities clipped to ``[PROBABILITY_FLOOR, 1]``, float64 (so >= 0)."""
    return -np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0))


def _pair_values(grid, combine):
    """``combine(a, b)`` over every 8-grid pair of a ``[H, W]`` map, aligned with
    :func:`grid_pairs` (slicing: much faster than gathering pair indices)."""
    pairs = (
        (grid[:, :-1], grid[:, 1:]),
        (grid[:-1, :], grid[1:, :]),
        (grid[:-1, :-1], grid[1:, 1:]),
        (grid[:-1, 1:], grid[1:, :-1]),
    )
    return np.concatenate([combine(a, b).ravel() for a, b in pairs])


def potts_energy(labels: np.ndarray, probabilities: np.ndarray, seeds: np.ndarray,
                 edge_weights: np.ndarray, unary_weight: float = 1.0,
                 potts_weight: float = 1.0) -> float:
    """Exact float energy ``E(labels)`` (module docstring); ``inf`` if a seed is violated.

    ``edge_weights`` are aligned with :func:`grid_pairs` (e.g.
    :func:`contrast_edge_weights`). Padding pixels count in neither term.

    >>> p = np.array([[[0.5, 0.5], [1.0, 0.0]]])
    >>> w = np.array([2.0])                                    # one pair on a 1x2 grid
    >>> float(potts_energy(np.array([[0, 0]]), p, np.array([[255, 255]]), w))
    0.6931471805599453
    >>> float(potts_energy(np.array([[1, 0]]), p, np.array([[255, 255]]), w, potts_weight=0.5))
    1.6931471805599454
    """
    labels = np.asarray(labels)
    seeds = np.asarray(seeds)
    probabilities = np.asarray(probabilities)
    num_classes = probabilities.shape[-1]
    seeded = (seeds >= 0) & (seeds < num_classes)
    if (labels[seeded] != seeds[seeded]).any():
        return np.inf
    free = np.flatnonzero((~seeded) & (seeds != PAD_INDEX))
    free_labels = labels.reshape(-1)[free]
    if free_labels.size and (free_labels.min() < 0 or free_labels.max() >= num_classes):
        raise ValueError(f"labels inside the image must be classes in [0, {num_classes}).")
    picked = probabilities.reshape(-1)[free * num_classes + free_labels]
    unary = float(negative_log_probabilities(picked).sum())
    cut = _pair_values(labels, np.not_equal)
    inside = seeds != PAD_INDEX
    if not inside.all():
        cut &= _pair_values(inside, np.logical_and)
    pairwise = float(np.asarray(edge_weights, dtype=np.float64)[cut].sum())
    return unary_weight * unary + potts_weight * pairwise


@dataclasses.dataclass(frozen=True)
class GcoProblem:
    """One image's energy as GCO input, restricted to ``labels`` and to the sites
    inside the image.

    Attributes: ``unary`` int32 ``[S, L]`` C-contiguous (site x compact label,
    seed penalties included); ``first``/``second``/``edge_costs`` int32 ``[E]``
    (site indices, ``first < second``); ``labels`` int32 ``[L]``: compact label
    -> class, most frequent starting label first (GCO starts every site at
    compact label 0); ``sites`` int ``[S]`` flat pixel indices, or ``None`` when
    every pixel is a site; ``start`` int32 ``[S]`` compact starting labeling;
    ``scale``: integers per unit of (normalized) energy, 0 when every cost
    vanished.
    """

    unary: np.ndarray
    first: np.ndarray
    second: np.ndarray
    edge_costs: np.ndarray
    labels: np.ndarray
    sites: object
    start: np.ndarray
    scale: float


def build_gco_problem(probabilities, seeds, edge_weights, labels, start, unary_weight, potts_weight):
    """Quantize one image's energy into a :class:`GcoProblem`.

    ``labels``: allowed classes (:func:`present_labels`); ``start``: a full
    ``[H, W]`` starting labeling using only those classes (:func:`start_labeling`).
    Both weights are first divided by the larger one (the minimizer is unchanged
    and nothing overflows), unary costs are shifted per pixel to a minimum of 0,
    then one common scale maps the largest unary cost to :data:`UNARY_BUDGET` or
    the largest edge cost to :data:`EDGE_BUDGET`, whichever is tighter. A seed
    pixel costs 0 for its label and ``1 + sum of its incident edge costs`` for any
    other: more than any change of labels around it can save, so every
    expansion move (and so the result) keeps the seeds.

    >>> p = np.full((1, 2, 2), 0.5)
    >>> q = build_gco_problem(p, np.array([[0, 255]]), np.array([1.0]), np.array([0, 1]),
    ...                       np.array([[0, 0]]), 1.0, 1.0)
    >>> q.unary.tolist(), q.edge_costs.tolist()
    ([[0, 1048577], [0, 0]], [1048576])
    """
    probabilities = np.asarray(probabilities)
    height, width, num_classes = probabilities.shape
    labels = np.asarray(labels)
    inside = seeds.ravel() != PAD_INDEX
    first, second = grid_pairs(height, width)
    edge_weights = np.asarray(edge_weights, dtype=np.float64)
    if inside.all():
        sites = None
        flat_probabilities = probabilities.reshape(-1, num_classes)
        flat_seeds, flat_start = seeds.ravel(), start.ravel()
    else:
        sites = np.flatnonzero(inside)
        site_of_pixel = np.cumsum(inside, dtype=np.int32) - 1
        keep = _pair_values(inside.reshape(height, width), np.logical_and)
        first, second = site_of_pixel[first[keep]], site_of_pixel[second[keep]]
        edge_weights = edge_weights[keep]
        flat_probabilities = probabilities.reshape(-1, num_classes)[sites]
        flat_seeds, flat_start = seeds.ravel()[sites], start.ravel()[sites]

    # Compact labels, most frequent starting label first (see GcoProblem).
    compact_of_class = np.full(num_classes, -1, dtype=np.int64)
    compact_of_class[labels] = np.arange(labels.size)
    counts = np.bincount(compact_of_class[flat_start], minlength=labels.size)
    order = np.argsort(-counts, kind="stable")
    labels = labels[order].astype(np.int32)
    compact_of_class[labels] = np.arange(labels.size)
    start_compact = compact_of_class[flat_start].astype(np.int32)

    largest = max(unary_weight, potts_weight)
    unary_share = unary_weight / largest if largest > 0 else 0.0
    potts_share = potts_weight / largest if largest > 0 else 0.0
    unary = unary_share * negative_log_probabilities(flat_probabilities[:, labels])
    unary -= unary.min(axis=1, keepdims=True)
    seeded = (flat_seeds >= 0) & (flat_seeds < num_classes)
    unary[seeded] = 0.0
    costs = potts_share * edge_weights

    max_unary = unary.max(initial=0.0)
    max_cost = costs.max(initial=0.0)
    # A cost so small that its budget ratio overflows (a denormal share of an extreme weight
    # ratio) quantizes to zero anyway: only finite scales count.
    with np.errstate(over="ignore"):
        limits = [UNARY_BUDGET / max_unary] if max_unary > 0 else []
        limits += [EDGE_BUDGET / max_cost] if max_cost > 0 else []
    limits = [limit for limit in limits if np.isfinite(limit)]
    scale = min(limits) if limits else 0.0
    unary_int = np.minimum(np.rint(unary * scale), UNARY_BUDGET).astype(np.int32)
    cost_int = np.minimum(np.rint(costs * scale), EDGE_BUDGET).astype(np.int32)

    num_sites = unary_int.shape[0]
    incident = np.bincount(first, weights=cost_int, minlength=num_sites)
    incident += np.bincount(second, weights=cost_int, minlength=num_sites)
    seed_sites = np.flatnonzero(seeded)
    penalty = (incident[seed_sites] + 1).astype(np.int32)
    unary_int[seed_sites] = penalty[:, None]
    unary_int[seed_sites, compact_of_class[flat_seeds[seed_sites]]] = 0
    return _gco_problem(unary_int, first, second, cost_int, labels, sites, start_compact, scale)


def _gco_problem(unary, first, second, edge_costs, labels, sites, start, scale):
    """A :class:`GcoProblem` whose arrays are the C-contiguous int32 GCO needs."""
    return GcoProblem(
        unary=np.ascontiguousarray(unary, dtype=np.int32),
        first=np.ascontiguousarray(first, dtype=np.int32),
        second=np.ascontiguousarray(second, dtype=np.int32),
        edge_costs=np.ascontiguousarray(edge_costs, dtype=np.int32),
        labels=labels,
        sites=sites,
        start=np.asarray(start, dtype=np.int32),
        scale=float(scale),
    )


AUTHORS_SCALE = 10000.0
"""The trust-region authors' integer scale: every cost is multiplied by ``10000 / potts``."""

AUTHORS_HARD = 10.0
"""The authors' seed penalty, in units of the Potts weight: ``10 * potts`` for a wrong label."""


def pair_normalization(seeds):
    """``N_roi / N_pairs``: pixels inside the image per 8-grid pair inside it (about 1/4).

    The authors' Potts term is ``potts * w_pq * N_roi / N_pairs``: a mean over
    pairs rescaled to the number of pixels, so its weight does not depend on
    the neighbourhood size.

    >>> round(pair_normalization(np.full((10, 10), 255)), 4)      # 100 pixels, 342 pairs
    0.2924
    """
    inside = np.asarray(seeds) != PAD_INDEX
    pairs = int(_pair_values(inside, np.logical_and).sum())
    return float(inside.sum()) / pairs if pairs else 0.0


def build_authors_problem(probabilities, seeds, edge_weights, labels, start, tr_weight,
                          potts_weight):
    """One image's stage-A energy quantized as the trust-region authors do (``alpha_expansion.cpp``).

    Costs before scaling: ``tr_weight * -log p_p[l]`` for an unlabeled pixel;
    for a seed of class ``y``, ``tr_weight * -log p_p[y]`` plus
    ``AUTHORS_HARD * potts_weight`` for any ``l != y``; for a pair,
    ``potts_weight * w_pq * N_roi / N_pairs`` (:func:`pair_normalization`). All
    are multiplied by ``AUTHORS_SCALE / potts_weight`` and truncated to
    integers (C++'s double -> int conversion), so with the authors' values
    (``tr_weight`` 0.05, potts 100) a pixel costs 5 per nat of ``-log p``
    (probabilities above 0.82 cost 0) and a pair up to 2500. Terms are capped
    below GCO's limit (:data:`GCO_MAX_ENERGYTERM`), which the authors' values
    never reach. Arguments and result as :func:`build_gco_problem`.

    >>> p = np.full((1, 2, 2), 0.5)
    >>> q = build_authors_problem(p, np.array([[0, 255]]), np.array([1.0]), np.array([0, 1]),
    ...                           np.array([[0, 0]]), 0.05, 100.0)
    >>> q.unary.tolist(), q.edge_costs.tolist()    # 100 * 0.05 * log 2 = 3.47; 100 * 100 * 2
    ([[3, 100003], [3, 3]], [20000])
    """
    probabilities = np.asarray(probabilities)
    height, width, num_classes = probabilities.shape
    labels = np.asarray(labels, dtype=np.int32)
    seeds = np.asarray(seeds)
    inside = seeds.ravel() != PAD_INDEX
    first, second = grid_pairs(height, width)
    keep = _pair_values(inside.reshape(height, width), np.logical_and)
    sites = None if inside.all() else np.flatnonzero(inside)
    site_of_pixel = np.cumsum(inside, dtype=np.int32) - 1
    first, second = site_of_pixel[first[keep]], site_of_pixel[second[keep]]
    edge_weights = np.asarray(edge_weights, dtype=np.float64)[keep]
    flat = probabilities.reshape(-1, num_classes)[inside]
    flat_seeds, flat_start = seeds.ravel()[inside], np.asarray(start).ravel()[inside]

    scale = AUTHORS_SCALE / potts_weight if potts_weight > 0 else AUTHORS_SCALE
    nll = negative_log_probabilities(flat)
    unary = tr_weight * nll[:, labels]
    seeded = np.flatnonzero((flat_seeds >= 0) & (flat_seeds < num_classes))
    own = tr_weight * nll[seeded, flat_seeds[seeded]]
    unary[seeded] = own[:, None] + AUTHORS_HARD * potts_weight * (
        labels[None, :] != flat_seeds[seeded, None])
    costs = potts_weight * edge_weights * pair_normalization(seeds)
    cap = GCO_MAX_ENERGYTERM - 1
    unary_int = np.minimum(np.trunc(unary * scale), cap).astype(np.int32)
    cost_int = np.minimum(np.trunc(costs * scale), cap).astype(np.int32)

    compact_of_class = np.full(num_classes, -1, dtype=np.int64)
    compact_of_class[labels] = np.arange(labels.size)
    return _gco_problem(unary_int, first, second, cost_int, labels, sites,
                        compact_of_class[flat_start], scale)
