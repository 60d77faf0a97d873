"""Robust trust region, stage A: proposals near the network's prediction (eq. 16).

For each un-augmented training image::

    s = argmin_s  potts_weight * sum_pq w_pq [s_p != s_q] + lambda * sum_{p unlabeled} -log f_p[s_p]

with the seeds as hard constraints (the pCE term), labels restricted to the
classes among the image's seeds (all of them when fewer than two), 8-grid,
at most 5 alpha-expansion cycles. ``lambda * KL(s || f)`` of eq. 16 is
``lambda * sum -log f[s]`` for a one-hot ``s``; ``w_pq`` are the Boykov-Jolly
weights in ``[0, 1]`` of ``shared/REFERENCE.md``.

Units. The authors' values are ``potts = 100`` and ``lambda = 0.05`` (full
scribbles) with an integer scaling of ``10000 / potts``; we read lambda as
relative to one unit of Potts weight, i.e. the solver's unary weight is
``lambda * potts_weight`` (:func:`solver_weights`); the Potts weight then
only scales the energy. Taking ``lambda = 0.05`` against ``potts = 100``
literally makes stage A ignore the network: on the synthetic shapes
(64x64, a pCE+TR-trained UNet with 97.7 % pixel accuracy) those proposals
were 91.0 % accurate, the same for any network, and alpha-expansion took
10-30x longer; with ``lambda * potts = 5`` they were 98.5 % accurate (and
97.8 % from a degraded 82.9 % network), in about 8 ms per image.

:func:`proposal_dataset` is the ``tf.data`` pipeline of one round: batches
of un-augmented images -> the current network's softmax (in the graph) ->
``tf.numpy_function`` calling the shared solver pool. :class:`StageA` (a
callback) runs a round before training and then every ``every`` epochs,
and keeps the proposals in a :class:`ProposalStore`, which the stage-B
pipeline reads by sample id and augments together with image and seeds.

Rounds after the first run in a background thread while training goes on
(``overlap=True``): the solver works in its worker processes and the GIL is
free while the thread waits on them, so stage A costs little wall-clock time;
until a round finishes, stage B uses the previous round's proposals (the
first round is waited for). A round that fails leaves the previous proposals
in place, with a warning.
"""

import threading
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.inference import pad_to_multiple
from keras_regseg.methods import latent_solve

TR_POTTS_WEIGHT = 100.0
"""The authors' Potts weight (Pascal VOC)."""

TR_LAMBDA = 0.05
"""The authors' trust-region weight for full scribbles (0.1 for shortened ones)."""

TR_EVERY = 5
"""Epochs of stage B per stage-A round (M)."""


def solver_weights(lambda_weight=TR_LAMBDA, potts_weight=TR_POTTS_WEIGHT):
    """``(unary_weight, potts_weight)`` of the solver for the paper's lambda and Potts weight.

    lambda is per unit of Potts weight (module docstring).

    >>> solver_weights(0.05, 100.0)
    (5.0, 100.0)
    """
    return float(lambda_weight) * float(potts_weight), float(potts_weight)


class ProposalStore:
    """The latest proposal of each training sample, by sample id (thread-safe).

    >>> store = ProposalStore()
    >>> store.update({"a": np.ones((2, 2), np.int32)})
    >>> store.get("a").tolist(), store.get("b") is None, len(store)
    ([[1, 1], [1, 1]], True, 1)
    """

    def __init__(self):
        self._maps = {}
        self._lock = threading.Lock()
        self.rounds = 0

    def __len__(self):
        return len(self._maps)

    def get(self, sample_id):
        return self._maps.get(sample_id)

    def update(self, proposals):
        """Replace the proposals of the given ids (a dict id -> int label map)."""
        with self._lock:
            merged = dict(self._maps)
            merged.update({str(k): np.asarray(v, np.uint8) for k, v in proposals.items()})
            self._maps = merged  # one reference swap: readers see a whole round or none
            self.rounds += 1

    def _lookup(self, sample_id, seeds):
        proposal = self._maps.get(sample_id.decode())
        if proposal is None or proposal.shape != seeds.shape:
            # No proposal yet (or from another image size): seeds only, the robust loss is pCE.
            return latent_solve.seeds_only(seeds, 254)
        return proposal.astype(np.int32)

    def lookup(self, sample):
        """A ``tf.data`` map helper: the proposal of a sample dict (``id``, ``weak_label``)."""
        proposal = tf.numpy_function(self._lookup, [sample["id"], sample["weak_label"]], tf.int32,
                                     stateful=True, name="trust_region_proposal")
        proposal.set_shape(sample["weak_label"].shape)
        return proposal


def in_graph_probabilities(network):
    """A ``tf.function`` images ``[B, H, W, C]`` -> softmax ``[B, H, W, K]`` usable in ``tf.data``.

    Pads to the network's ``size_divisor`` (edge replication) and crops back,
    as :func:`keras_regseg.inference.make_predict_fn` does.
    """
    multiple = int(getattr(network, "size_divisor", 1) or 1)

    @tf.function(reduce_retracing=True)
    def probabilities(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        logits = network(pad_to_multiple(images, multiple), training=False)
        return tf.nn.softmax(tf.cast(logits[:, :height, :width], tf.float32), axis=-1)

    return probabilities


def proposal_dataset(source, network, batch_size=8, pool=None, **settings):
    """One stage-A round as a ``tf.data.Dataset`` of batches.

    Elements: ``{"id": [B], "proposal": int32 [B, H, W], "energy": float32 [B]
    (per pixel), "dense_label": [B, H, W]}``. ``batch_size`` must be 1 when
    image sizes differ. ``settings``: ``unary_weight`` (lambda),
    ``potts_weight``, ``max_iterations`` for :func:`latent_solve.solve_labelings`.
    """
    probabilities = in_graph_probabilities(network)
    keys = ("image", "weak_label", "dense_label", "id")
    samples = source.to_tf_dataset().map(lambda s: {k: s[k] for k in keys})

    def solve(probs, images, seeds, ids):
        labels, energies = latent_solve.solve_labelings(probs, images, seeds, ids, pool=pool,
                                                        **settings)
        inside = np.maximum((seeds != 254).sum(axis=(1, 2)), 1)
        return np.asarray(labels, np.int32), (energies / inside).astype(np.float32)

    def solve_batch(batch):
        proposal, energy = tf.numpy_function(
            solve, [batch["probabilities"], batch["image"], batch["weak_label"], batch["id"]],
            [tf.int32, tf.float32], stateful=True, name="trust_region_stage_a")
        proposal.set_shape(batch["weak_label"].shape)
        energy.set_shape(batch["id"].shape)
        return {"id": batch["id"], "proposal": proposal, "energy": energy,
                "dense_label": batch["dense_label"]}

    batches = samples.batch(batch_size).map(
        lambda b: dict(b, probabilities=probabilities(b["image"])))
    # The prefetch lets the next batch's prediction overlap this batch's solve.
    return batches.prefetch(1).map(solve_batch).prefetch(1)


def pixel_agreement(proposals, dense_labels, num_classes=254):
    """``(agreeing pixels, pixels with a dense label)`` of a batch of proposals."""
    known = (dense_labels >= 0) & (dense_labels < num_classes)
    return int((known & (proposals == dense_labels)).sum()), int(known.sum())


class StageA(keras.callbacks.Callback):
    """Run stage A before training and every ``every`` epochs (module docstring).

    Args:
      source: the training :class:`~keras_regseg.data.base.SegmentationSource`
        (un-augmented images and their seeds).
      network: the network being trained (predictions are taken from it).
      store: the :class:`ProposalStore` the stage-B pipeline reads.
      every: M, epochs per round.
      batch_size: images per prediction/solver batch (1 for images of different sizes).
      unary_weight, potts_weight: the solver's weights of ``-log f`` and of the
        Potts term (see :func:`solver_weights` for the paper's lambda).
      max_iterations: alpha-expansion cycles.
      overlap: run rounds after the first in the background.
      progress: show a progress bar per round.
      pool: a :class:`~keras_regseg.solvers.SolverPool` (default: the shared one).

    Adds to the epoch logs the last finished round's ``stage_a_energy`` (mean
    per-pixel energy of the proposals), ``proposal_accuracy`` (pixel agreement
    with the dense labels, when known) and ``stage_a_seconds``.
    """

    def __init__(self, source, network, store, every=TR_EVERY, batch_size=8,
                 unary_weight=TR_LAMBDA * TR_POTTS_WEIGHT, potts_weight=TR_POTTS_WEIGHT,
                 max_iterations=5,
                 overlap=True, progress=True, pool=None):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"every is {every!r}; expected a positive number of epochs.")
        self.source, self.network, self.store = source, network, store
        self.every, self.batch_size = int(every), int(batch_size)
        self.settings = dict(unary_weight=float(unary_weight), potts_weight=float(potts_weight),
                             max_iterations=max_iterations)
        self.overlap, self.progress, self.pool = bool(overlap), bool(progress), pool
        self.summary = {}
        self._thread = None

    def run_round(self):
        """Compute proposals for every training image now; returns the round's summary."""
        started = time.time()
        dataset = proposal_dataset(self.source, self.network, self.batch_size, self.pool,
                                   **self.settings)
        proposals, energies, agree, known = {}, [], 0, 0
        total = -(-len(self.source) // self.batch_size)
        bar = tqdm(total=len(self.source), desc=f"stage A, round {self.store.rounds + 1}",
                   unit="img", disable=not self.progress, leave=False, mininterval=1.0)
        with bar:
            for batch in dataset.take(total):
                ids = [i.decode() for i in batch["id"].numpy()]
                labels = batch["proposal"].numpy()
                proposals.update(zip(ids, labels))
                energies.extend(batch["energy"].numpy().tolist())
                a, k = pixel_agreement(labels, batch["dense_label"].numpy())
                agree, known = agree + a, known + k
                bar.update(len(ids))
        self.store.update(proposals)
        finite = [e for e in energies if np.isfinite(e)]
        self.summary = {"stage_a_energy": float(np.mean(finite)) if finite else float("nan"),
                        "stage_a_seconds": time.time() - started}
        if known:
            self.summary["proposal_accuracy"] = agree / known
        return self.summary

    def _run_safely(self):
        try:
            self.run_round()
        except Exception as error:  # noqa: BLE001 - stage A must never end training
            warnings.warn(f"stage A round failed ({type(error).__name__}: {error}); "
                          "stage B keeps the previous proposals.", RuntimeWarning)

    def wait(self):
        """Block until a background round (if any) has finished."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def on_train_begin(self, logs=None):
        if len(self.store) == 0:
            self._run_safely()

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 or epoch % self.every:
            return
        self.wait()
        if self.overlap:
            self._thread = threading.Thread(target=self._run_safely, name="stage-a", daemon=True)
            self._thread.start()
        else:
            self._run_safely()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.summary)

    def on_train_end(self, logs=None):
        self.wait()


def grid_proposals(samples, network, pool=None, **settings):
    """Stage-A proposals of a few samples (dicts with ``image``, ``weak_label``), for figures."""
    probabilities = in_graph_probabilities(network)
    labels = []
    for sample in samples:
        probs = probabilities(np.asarray(sample["image"], np.float32)[None]).numpy()
        seeds = np.asarray(sample["weak_label"])[None]
        solved, _ = latent_solve.solve_labelings(probs, sample["image"][None], seeds,
                                                 [sample["id"]], pool=pool, **settings)
        labels.append(np.where(solved[0] == IGNORE_INDEX, 254, solved[0]))
    return labels
