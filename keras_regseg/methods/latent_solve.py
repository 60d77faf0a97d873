"""The numpy side of ADM's latent step and of trust-region stage A.

:func:`solve_labelings` turns a batch of network probabilities into labelings
by alpha-expansion (:class:`keras_regseg.solvers.SolverPool`) and never stops
training on a bad image:

- non-finite probabilities (NaN, inf): a ``RuntimeWarning`` naming the image
  id; the image gets no labeling (all :data:`IGNORE_INDEX` except its seeds),
  so the loss sees its seeds only;
- a probability map whose height/width differ from the image's: resized
  (bilinear) to the image, with a warning naming the image;
- a solver failure (a crashed worker, an error in GCO): the starting labeling
  (argmax over the allowed labels, seeds imposed) and a warning;
- an image without seeds or with one seeded class: the solver's own rule
  (every class allowed; the prediction and the Potts term decide).

One :class:`SolverPool` per process is shared by every replica and every
stage-A round (:func:`shared_pool`); :func:`close_shared_pool` stops it (the
:class:`CloseSolverPool` callback does so at the end of ``fit``). The pool's
workers are fresh ``python -c`` processes, never forks of a TensorFlow process.

Units: the solver minimizes ``unary_weight * sum -log p + potts_weight * sum
w_pq [x_p != x_q]`` with Boykov-Jolly weights ``w_pq`` in ``[0, 1]`` (sigma^2 =
mean squared neighbour difference of the image, ``1/sqrt 2`` on diagonals),
the weights of ``shared/REFERENCE.md``, so the authors' ratios carry over.
"""

from __future__ import annotations

import threading
import typing
import warnings
from collections.abc import Sequence

import keras
import numpy as np
from scipy import ndimage

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.solvers import SolverPool, starting_solution

__all__ = ["close_shared_pool", "CloseSolverPool", "resize_probabilities", "seeds_only",
           "shared_pool", "solve_labelings", "WORKER_NICENESS"]

_POOL = None
_POOL_LOCK = threading.Lock()


WORKER_NICENESS = 5
"""How much lower than training the shared pool's workers run (``nice`` levels)."""


def shared_pool(processes: int | None = None) -> SolverPool:
    """The process-wide :class:`SolverPool`, started on first use.

    ``processes`` only matters for the call that starts it (default: one
    worker per available CPU). Its workers run at a lower CPU priority
    (:data:`WORKER_NICENESS`): a solve that training waits for (ADM) gets the
    idle cores anyway, and one overlapped with training (trust-region stage A)
    yields to the training step.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SolverPool(processes=processes, niceness=WORKER_NICENESS)
        return _POOL


def close_shared_pool() -> None:
    """Stop the shared pool's workers (a later :func:`shared_pool` starts new ones)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None


class CloseSolverPool(keras.callbacks.Callback):
    """Stops the shared solver pool when ``fit`` ends, so no worker outlives training."""

    def on_train_end(self, logs=None):
        close_shared_pool()


def _decode_id(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def resize_probabilities(probabilities, height, width):
    """Bilinear resize of ``[h, w, K]`` probabilities to ``[height, width, K]``, renormalized.

    >>> p = np.zeros((2, 2, 2)); p[..., 0] = 1.0
    >>> resize_probabilities(p, 4, 3).shape
    (4, 3, 2)
    """
    h, w, _ = probabilities.shape
    zoomed = ndimage.zoom(probabilities, (height / h, width / w, 1), order=1,
                          grid_mode=True, mode="nearest")[:height, :width]
    zoomed = np.clip(zoomed, 0.0, None)
    return zoomed / np.maximum(zoomed.sum(-1, keepdims=True), 1e-12)


def seeds_only(seeds, num_classes):
    """The "no labeling" answer: seed classes kept, PAD_INDEX kept, IGNORE_INDEX elsewhere."""
    seeds = np.asarray(seeds, np.int32)
    keep = ((seeds >= 0) & (seeds < num_classes)) | (seeds == PAD_INDEX)
    return np.where(keep, seeds, IGNORE_INDEX).astype(np.int32)


def solve_labelings(probabilities: np.ndarray | Sequence[np.ndarray],
                    images: np.ndarray | Sequence[np.ndarray],
                    seeds: np.ndarray | Sequence[np.ndarray],
                    ids: Sequence[str | bytes] | None = None, pool: SolverPool | None = None,
                    initial_labels: Sequence[np.ndarray | None] | None = None,
                    **settings: typing.Any) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """Alpha-expansion labelings of a batch, robust to bad images (module docstring).

    Args:
      probabilities: ``[B, h, w, K]`` softmax (or a list of ``[h, w, K]``).
      images: ``[B, H, W, C]`` (or a list); the labelings have the images' size.
      seeds: ``[B, H, W]`` weak labels (``IGNORE_INDEX``, ``PAD_INDEX`` as usual).
      ids: names for warnings (bytes or str; default ``"0"``, ``"1"``, ...).
      pool: a :class:`SolverPool` (default: :func:`shared_pool`).
      initial_labels: optional per-image labelings to start from (entries may
        be ``None``), e.g. the previous stage-A round's proposals.
      **settings: ``unary_weight``, ``potts_weight``, ``max_iterations``,
        ``restrict_labels``, ``energy`` for this call.

    Returns ``(labels int32 list or [B, H, W], energies float64 [B])``; an
    image without a labeling has energy NaN.

    >>> p = np.full((1, 2, 3, 2), 0.5); p[0, 0, 0] = np.nan
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     labels, energies = solve_labelings(p, np.zeros((1, 2, 3, 1)), np.full((1, 2, 3), 255),
    ...                                        ids=["img7"], pool=SolverPool(processes=0))
    >>> labels.tolist(), "img7" in str(caught[0].message)
    ([[[255, 255, 255], [255, 255, 255]]], True)
    """
    pool = pool or shared_pool()
    size = len(probabilities)
    ids = [str(i) for i in range(size)] if ids is None else [_decode_id(i) for i in ids]
    results = [None] * size
    todo = []
    for i in range(size):
        prob = np.asarray(probabilities[i], np.float32)
        seed = np.asarray(seeds[i])
        num_classes = prob.shape[-1]
        bad = int(np.size(prob) - np.isfinite(prob).sum())
        if bad:
            warnings.warn(f"image {ids[i]!r}: the probability map holds {bad} non-finite values "
                          "(NaN or inf); this image gets no latent labeling (seeds only).",
                          RuntimeWarning, stacklevel=2)
            results[i] = (seeds_only(seed, num_classes), np.nan)
            continue
        if prob.shape[:2] != seed.shape:
            warnings.warn(f"image {ids[i]!r}: the probability map is {prob.shape[0]}x"
                          f"{prob.shape[1]} but the image is {seed.shape[0]}x{seed.shape[1]}; "
                          "resizing the probabilities (bilinear) to the image.",
                          RuntimeWarning, stacklevel=2)
            prob = resize_probabilities(prob, *seed.shape)
        todo.append((i, prob))
    if todo:
        index = [i for i, _ in todo]
        batch = ([p for _, p in todo], [np.asarray(images[i]) for i in index],
                 [np.asarray(seeds[i]) for i in index], [ids[i] for i in index])
        initial = None if initial_labels is None else [_usable(initial_labels[i], seeds[i])
                                                       for i in index]
        try:
            labels, energies = pool.solve_batch(*batch, initial_labels=initial, **settings)
        except Exception as error:  # noqa: BLE001 - a solver problem must never end training
            warnings.warn(f"alpha-expansion failed on a batch ({type(error).__name__}: {error}); "
                          "using the starting labelings (argmax with seeds).", RuntimeWarning,
                          stacklevel=2)
            labels, energies = _starting_labelings(*batch, settings)
        for i, lab, energy in zip(index, labels, energies):
            results[i] = (np.asarray(lab, np.int32), float(energy))
    labels = [r[0] for r in results]
    energies = np.array([r[1] for r in results], np.float64)
    if not isinstance(probabilities, (list, tuple)) and len({lab.shape for lab in labels}) <= 1:
        labels = np.stack(labels) if labels else np.zeros((0,) + np.shape(seeds)[1:3], np.int32)
    return labels, energies


def _usable(initial, seeds):
    """A previous labeling of the same size as ``seeds``, as int32, or ``None``."""
    if initial is None or np.shape(initial) != np.shape(seeds):
        return None
    return np.asarray(initial, np.int32)


def _starting_labelings(probabilities, images, seeds, ids, settings):
    """Per image, the solver's starting point, or seeds only if even that fails."""
    keep = {k: v for k, v in settings.items() if k in ("unary_weight", "potts_weight",
                                                        "restrict_labels", "energy")}
    labels, energies = [], []
    for prob, image, seed, image_id in zip(probabilities, images, seeds, ids):
        try:
            lab, energy = starting_solution(prob, image, seed, image_id=image_id, **keep)
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"image {image_id!r}: no labeling ({error}).", RuntimeWarning, stacklevel=3)
            lab, energy = seeds_only(seed, prob.shape[-1]), np.nan
        labels.append(lab)
        energies.append(energy)
    return labels, energies
