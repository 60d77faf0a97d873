"""Alpha-expansion (GCO) on the 8-grid contrast-sensitive Potts energy of one image.

Solves ADM's latent step and stage A of the robust trust region: the unary term
is ``unary_weight * -log p`` from the network's probabilities, seeds are hard
constraints, and labels are restricted to the classes present among the seeds
(see :mod:`keras_regseg.solvers.energy` for the energy and its quantization).
Imports numpy and gco only, so that solver worker processes start fast.
"""

from __future__ import annotations

import typing

import gco
import numpy as np

from keras_regseg.solvers import energy as E
from keras_regseg.solvers.energy import PAD_INDEX

__all__ = ["check_energy", "check_max_iterations", "DEFAULT_MAX_ITERATIONS", "ENERGIES",
           "run_expansion", "solve_alpha_expansion", "starting_solution"]

DEFAULT_MAX_ITERATIONS = 5
"""Alpha-expansion cycles over all labels; 5 "converges in most cases" (ADM, TR papers)."""

ENERGIES = ("library", "authors")
"""How a solve weighs and quantizes its energy.

- ``"library"``: ``unary_weight * -log p + potts_weight * w_pq``, seeds exactly hard,
  quantized finely to GCO's integer range (:func:`energy.build_gco_problem`);
- ``"authors"``: the trust-region authors' ``alpha_expansion.cpp``:
  ``unary_weight`` is their ``tr_weight``, the Potts term is normalized by
  ``N_roi / N_pairs``, seeds cost ``10 * potts_weight`` per wrong label, and
  every cost is scaled by ``10000 / potts_weight`` and truncated
  (:func:`energy.build_authors_problem`). The exact energy of a labeling is then
  the library's with Potts weight ``potts_weight * N_roi / N_pairs``.
"""

try:  # the raw C entry point sets one site's label ~2x faster than GCO.init_label_at_site
    from gco.cgco import _cgco as _GCO_C
except ImportError:  # pragma: no cover - depends on the gco-wrapper layout
    _GCO_C = None


def check_energy(energy):
    """``energy`` if it is one of :data:`ENERGIES`, else ``ValueError``."""
    if energy not in ENERGIES:
        raise ValueError(f"energy is {energy!r}; expected one of {', '.join(ENERGIES)}.")
    return energy


def check_max_iterations(max_iterations):
    """``max_iterations`` as GCO's int: a positive count, or -1 for None (until convergence)."""
    if max_iterations is None:
        return -1
    if isinstance(max_iterations, bool) or int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations is {max_iterations!r}; expected a positive integer or None.")
    return int(max_iterations)


def run_expansion(problem, max_iterations=DEFAULT_MAX_ITERATIONS, warm_start=False):
    """Run GCO alpha-expansion on a :class:`~keras_regseg.solvers.energy.GcoProblem`.

    Returns the compact labels (int32 ``[S]``). GCO starts from compact label 0
    everywhere (the most frequent label of the starting labeling), or with
    ``warm_start`` from ``problem.start`` itself. gco-wrapper sets initial labels
    one site per call, so a warm start costs a loop of C calls over the ~20% of
    pixels that differ from label 0 (10 ms at 256x256); on ACDC-like problems
    it reached the same energies as the cold start, and no faster, hence the
    default. The GCO graph is freed even on error.
    """
    num_sites, num_labels = problem.unary.shape
    graph = gco.GCO()
    graph.create_general_graph(num_sites, num_labels)
    try:
        graph.set_data_cost(problem.unary)
        if problem.first.size:
            graph.set_all_neighbors(problem.first, problem.second, problem.edge_costs)
        graph.set_smooth_cost(np.ascontiguousarray(1 - np.eye(num_labels, dtype=np.int32)))
        if warm_start:
            # GCO starts every site at label 0; only the others need a call each
            # (no bulk call exists).
            changed = np.flatnonzero(problem.start).tolist()
            values = problem.start[changed].tolist()
            if _GCO_C is not None:
                handle, set_label = graph.handle, _GCO_C.gcoInitLabelAtSite
                for site, value in zip(changed, values):
                    set_label(handle, site, value)
            else:  # pragma: no cover
                for site, value in zip(changed, values):
                    graph.init_label_at_site(site, value)
        graph.expansion(check_max_iterations(max_iterations))
        return graph.get_labels().astype(np.int32)
    finally:
        graph.destroy_graph()


def _to_image(compact, problem, shape):
    """Compact site labels -> class map ``[H, W]`` with ``PAD_INDEX`` off the image."""
    classes = problem.labels[compact]
    if problem.sites is None:
        return classes.reshape(shape).astype(np.int32)
    labels = np.full(shape[0] * shape[1], PAD_INDEX, dtype=np.int32)
    labels[problem.sites] = classes
    return labels.reshape(shape)


class _Prepared(typing.NamedTuple):
    """Checked inputs of one solve, with its allowed labels and starting labeling."""

    probabilities: np.ndarray
    seeds: np.ndarray
    edge_weights: np.ndarray
    labels: np.ndarray
    start: np.ndarray
    start_energy: float
    unary_weight: float
    potts_weight: float


def _prepare(
    probabilities, image, seeds, unary_weight, potts_weight, restrict_labels, edge_weights, image_id,
    energy="library", initial_labels=None,
):
    """Check one image's inputs; return a :class:`_Prepared`.

    With ``energy="authors"`` the Potts weight becomes ``potts_weight * N_roi /
    N_pairs`` (the exact energy of :data:`ENERGIES`). ``initial_labels`` (a
    labeling, e.g. the previous stage-A round's) replaces the argmax as the
    starting labeling wherever it holds an allowed class.
    """
    probabilities, image, seeds = E.check_inputs(probabilities, image, seeds, image_id)
    unary_weight, potts_weight = E.check_weights(unary_weight, potts_weight)
    if check_energy(energy) == "authors":
        potts_weight = potts_weight * E.pair_normalization(seeds)
    height, width, num_classes = probabilities.shape
    if edge_weights is None:
        if image is None:
            raise ValueError(f"image {image_id!r}: give an image or edge_weights; got neither.")
        edge_weights = E.contrast_edge_weights(image, valid=seeds != PAD_INDEX)
    else:
        edge_weights = E.check_edge_weights(edge_weights, height, width, image_id)
    labels = E.present_labels(seeds, num_classes) if restrict_labels else np.arange(num_classes)
    start = E.start_labeling(probabilities, seeds, labels)
    if initial_labels is not None:
        start = _initial_start(initial_labels, start, seeds, labels, image_id)
    start_energy = E.potts_energy(start, probabilities, seeds, edge_weights, unary_weight, potts_weight)
    return _Prepared(
        probabilities, seeds, edge_weights, labels, start, start_energy, unary_weight, potts_weight
    )


def _initial_start(initial_labels, start, seeds, labels, image_id):
    """``initial_labels`` where they hold an allowed class off the seeds, ``start`` elsewhere."""
    initial = np.asarray(initial_labels)
    if initial.shape != start.shape:
        raise ValueError(f"image {image_id!r}: initial labels have shape {initial.shape}; "
                         f"expected {start.shape} (the image's).")
    free = (seeds == E.IGNORE_INDEX) & np.isin(initial, labels)
    return np.where(free, initial, start).astype(np.int32)


def starting_solution(probabilities: np.ndarray, image: np.ndarray, seeds: np.ndarray, *,
                      unary_weight: float = 1.0, potts_weight: float = 1.0,
                      restrict_labels: bool = True, edge_weights: np.ndarray | None = None,
                      energy: str = "library", initial_labels: np.ndarray | None = None,
                      image_id: str | bytes | None = None) -> tuple[np.ndarray, float]:
    """The solver's starting point and its energy: ``(labels, energy)`` as returned by
    :func:`solve_alpha_expansion`, for the argmax over the allowed labels with seeds
    imposed. The fallback when a solve cannot be done.

    >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]]])
    >>> labels, energy = starting_solution(p, np.zeros((1, 2)), np.array([[255, 255]]), potts_weight=0)
    >>> labels.tolist(), round(energy, 4)                  # -log 0.9 - log 0.8
    ([[0, 1]], 0.3285)
    """
    prepared = _prepare(
        probabilities, image, seeds, unary_weight, potts_weight, restrict_labels, edge_weights,
        image_id, energy, initial_labels,
    )
    return prepared.start, prepared.start_energy


def solve_alpha_expansion(probabilities: np.ndarray, image: np.ndarray, seeds: np.ndarray, *,
                          unary_weight: float = 1.0, potts_weight: float = 1.0,
                          max_iterations: int = DEFAULT_MAX_ITERATIONS,
                          restrict_labels: bool = True, edge_weights: np.ndarray | None = None,
                          warm_start: bool = False, energy: str = "library",
                          initial_labels: np.ndarray | None = None,
                          image_id: str | bytes | None = None) -> tuple[np.ndarray, float]:
    """Minimize the seeded 8-grid Potts energy of one image by alpha-expansion.

    Args:
      probabilities: ``[H, W, K]`` network softmax (finite, in ``[0, 1]``).
      image: ``[H, W]`` or ``[H, W, C]`` pixels for the contrast weights; may be
        ``None`` when ``edge_weights`` are given.
      seeds: ``[H, W]`` weak labels: class on seeds (hard constraints),
        ``IGNORE_INDEX`` unlabeled, ``PAD_INDEX`` outside the image (left out).
      unary_weight: lambda of ``lambda * -log p`` (TR's trust-region weight; ADM's gamma).
      potts_weight: weight of the Potts term (authors: 100 for TR, 80 for ADM).
      max_iterations: expansion cycles (None: until convergence).
      restrict_labels: only the classes present among the seeds (all when fewer
        than two are), as in the trust-region paper.
      edge_weights: optional weights aligned with ``energy.grid_pairs`` (see
        ``energy.edge_weights_from_maps`` for directed maps); default: the
        Boykov-Jolly contrast weights of ``image`` over its non-padding pixels.
      warm_start: start GCO from the starting labeling rather than from its
        most frequent label everywhere (see :func:`run_expansion`). Either way
        the result is no worse than the starting labeling.
      energy: ``"library"`` or ``"authors"`` (see :data:`ENERGIES`).
      initial_labels: ``[H, W]`` labeling to start from instead of the argmax
        (e.g. the previous stage-A round's proposal); implies ``warm_start``.
      image_id: named in error messages.

    Returns:
      ``(labels, energy)``: int32 ``[H, W]`` (``PAD_INDEX`` on padding) and the
      exact float energy of ``labels`` (``energy.potts_energy``). The energy never
      exceeds that of the starting labeling (argmax over the allowed labels with
      seeds imposed): if quantization made GCO's answer worse in exact
      arithmetic, the starting labeling is returned.

    Raises ``ValueError`` naming ``image_id`` on bad input (see ``energy.check_inputs``).

    A weakly confident pixel (1, 1) that prefers class 1 is smoothed away; the
    seeded column 3 keeps class 1 (constant image: edge weights 1 and 1/sqrt(2)):

    >>> p = np.zeros((3, 4, 2)); p[..., 0] = 0.6; p[..., 1] = 0.4; p[1, 1] = (0.4, 0.6)
    >>> seeds = np.full((3, 4), 255); seeds[:, 3] = 1; seeds[0, 0] = 0
    >>> labels, energy = solve_alpha_expansion(p, np.zeros((3, 4)), seeds, potts_weight=0.1)
    >>> labels.tolist()
    [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
    >>> round(energy, 4)            # 7 * -log 0.6 - log 0.4 + 0.1 * (3 + 4 / sqrt(2))
    5.0749
    """
    check_max_iterations(max_iterations)
    q = _prepare(
        probabilities, image, seeds, unary_weight, potts_weight, restrict_labels, edge_weights,
        image_id, energy, initial_labels,
    )
    if q.labels.size < 2 or not (q.seeds != PAD_INDEX).any():
        return q.start, q.start_energy
    if energy == "authors":
        # The authors' Potts weight before the N_roi / N_pairs normalization (q holds it after).
        problem = E.build_authors_problem(
            q.probabilities, q.seeds, q.edge_weights, q.labels, q.start, q.unary_weight,
            float(potts_weight))
    else:
        problem = E.build_gco_problem(
            q.probabilities, q.seeds, q.edge_weights, q.labels, q.start, q.unary_weight,
            q.potts_weight)
    if problem.scale == 0:  # no cost anywhere: every labeling that keeps the seeds is optimal
        return q.start, q.start_energy
    warm_start = warm_start or initial_labels is not None
    solved = _to_image(run_expansion(problem, max_iterations, warm_start), problem, q.seeds.shape)
    energy = E.potts_energy(solved, q.probabilities, q.seeds, q.edge_weights, q.unary_weight, q.potts_weight)
    if not energy <= q.start_energy:
        return q.start, q.start_energy
    return solved, energy
