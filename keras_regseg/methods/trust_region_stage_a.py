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
and keeps the proposals in a
:class:`~keras_regseg.methods.proposal_store.ProposalStore`, which the stage-B
pipeline reads by sample id and augments together with image and seeds.

Rounds after the first run in a background thread while training goes on
(``overlap=True``): the solver works in its worker processes and the GIL is
free while the thread waits on them, so stage A costs little wall-clock time.
Such a round predicts with a :class:`NetworkSnapshot` of the network at the
start of its epoch, which still trains on the previous round; the epochs
after it train on it (the first round is waited for). Which round a training
step sees is fixed by the schedule (:class:`StageA`), never by timing: the
store serves each sample the round of its step, so runs are reproducible and
a run killed at any moment resumes, from the backup that holds the round in
use (:meth:`StageA.resumable_state`), to the same result. A round that fails
leaves the previous proposals in place, with a warning.
"""

from __future__ import annotations

import os
import threading
import time
import typing
import warnings

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_regseg.data.pipeline import without_autotune_model
from keras_regseg.constants import IGNORE_INDEX, MAX_CLASSES, PAD_INDEX
from keras_regseg.inference import pad_to_multiple
from keras_regseg.methods.stage_a_diagnostics import RoundDiagnostics
from keras_regseg.methods import latent_solve
from keras_regseg.utils.files import atomic_write

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.data.base import SegmentationSource
    from keras_regseg.methods.proposal_store import ProposalStore
    from keras_regseg.solvers import SolverPool

__all__ = ["epochs_per_round", "grid_proposals", "in_graph_probabilities", "NetworkSnapshot",
           "proposal_dataset", "release_stage_a", "solver_weights", "StageA",
           "TR_EVERY", "TR_LAMBDA", "TR_POTTS_WEIGHT"]

TR_POTTS_WEIGHT = 100.0
"""The authors' Potts weight (Pascal VOC)."""

TR_LAMBDA = 0.05
"""The authors' trust-region weight for full scribbles (0.1 for shortened ones)."""

TR_EVERY = 5
"""Passes over the training data of stage B per stage-A round (M, the paper's epochs)."""


def epochs_per_round(passes, num_images, batch_size, steps_per_epoch):
    """Training epochs between stage-A rounds for ``passes`` passes over the training set.

    The paper counts M in passes over the data, and stage A costs one pass of
    prediction plus one solve per image whatever the epoch length; a training
    epoch here is ``steps_per_epoch`` batches, which can be a fraction or many
    passes. Rounded to whole epochs, at least 1.

    >>> epochs_per_round(5, 1512, 8, 200)     # ACDC fold 1: an epoch is about a pass
    5
    >>> epochs_per_round(5, 10582, 8, 100)    # VOC: an epoch is 8 % of a pass
    66
    >>> epochs_per_round(5, 240, 8, 100)      # synthetic: 3.3 passes an epoch
    2
    """
    return max(1, round(passes * num_images / (batch_size * steps_per_epoch)))


def solver_weights(lambda_weight=TR_LAMBDA, potts_weight=TR_POTTS_WEIGHT):
    """``(unary_weight, potts_weight)`` of the solver for the paper's lambda and Potts weight.

    lambda is per unit of Potts weight (module docstring).

    >>> solver_weights(0.05, 100.0)
    (5.0, 100.0)
    """
    return float(lambda_weight) * float(potts_weight), float(potts_weight)


def in_graph_probabilities(network):
    """A ``tf.function`` images ``[B, H, W, C]`` -> softmax ``[B, H, W, K]`` usable in ``tf.data``.

    Pads to the network's ``size_divisor`` (edge replication) and crops back,
    as :func:`keras_regseg.inference.make_predict_fn` does. ``network`` may
    be a :class:`NetworkSnapshot`.
    """
    multiple = int(getattr(network, "size_divisor", 1) or 1)

    @tf.function(reduce_retracing=True)
    def probabilities(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        logits = network(pad_to_multiple(images, multiple), training=False)
        return tf.nn.softmax(tf.cast(logits[:, :height, :width], tf.float32), axis=-1)

    return probabilities


class NetworkSnapshot:
    """The network as it was at :meth:`take`, callable while training goes on changing it.

    A background round must predict with the network of the epoch it was
    started at, not with whatever weights training has reached meanwhile.
    The copies are variables of their own, read through ``stateless_call``.

    >>> net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1)])
    >>> snapshot = NetworkSnapshot(net); snapshot.take()
    >>> x = np.ones((1, 4, 4, 1), np.float32); before = net(x).numpy()
    >>> _ = net.layers[0].kernel.assign(net.layers[0].kernel * 2)
    >>> bool(np.allclose(snapshot(x).numpy(), before)), bool(np.allclose(net(x).numpy(), before))
    (True, False)
    """

    def __init__(self, network):
        self.network = network
        self.size_divisor = getattr(network, "size_divisor", 1)
        self._copies = None

    def take(self):
        """Copy the network's current variables."""
        variables = [*self.network.trainable_variables, *self.network.non_trainable_variables]
        if self._copies is None:
            self._copies = [tf.Variable(v.value, trainable=False) for v in variables]
        else:
            for copy, variable in zip(self._copies, variables):
                copy.assign(variable.value)

    def __call__(self, images, training=False):
        if self._copies is None:
            raise RuntimeError("NetworkSnapshot called before take().")
        count = len(self.network.trainable_variables)
        logits, _ = self.network.stateless_call(self._copies[:count], self._copies[count:],
                                                images, training=False)
        return logits


def proposal_dataset(source: SegmentationSource, network: keras.Model, batch_size: int = 8,
                     pool: SolverPool | None = None, initial: ProposalStore | None = None,
                     **settings: typing.Any) -> tf.data.Dataset:
    """One stage-A round as a ``tf.data.Dataset`` of batches.

    Elements: ``{"id": [B], "proposal": int32 [B, H, W], "energy": float32 [B]
    (per pixel), "dense_label": [B, H, W], "argmax": int32 [B, H, W]}`` (the
    network's own labels, for the round's diagnostics). ``batch_size`` must be
    1 when image sizes differ. ``initial`` (optional): ``id -> labeling or
    None``, the labeling each solve starts from (warm start from the previous
    round). ``settings``: ``unary_weight`` (lambda), ``potts_weight``,
    ``max_iterations``, ``energy`` for :func:`latent_solve.solve_labelings`.
    """
    probabilities = in_graph_probabilities(network)
    keys = ("image", "weak_label", "dense_label", "id")
    samples = source.to_tf_dataset().map(lambda s: {k: s[k] for k in keys})

    def solve(probs, images, seeds, ids):
        starts = None if initial is None else [initial(i.decode()) for i in ids]
        labels, energies = latent_solve.solve_labelings(probs, images, seeds, ids, pool=pool,
                                                        initial_labels=starts, **settings)
        inside = np.maximum((seeds != PAD_INDEX).sum(axis=(1, 2)), 1)
        return np.asarray(labels, np.int32), (energies / inside).astype(np.float32)

    def solve_batch(batch):
        proposal, energy = tf.numpy_function(
            solve, [batch["probabilities"], batch["image"], batch["weak_label"], batch["id"]],
            [tf.int32, tf.float32], stateful=True, name="trust_region_stage_a")
        proposal.set_shape(batch["weak_label"].shape)
        energy.set_shape(batch["id"].shape)
        argmax = tf.argmax(batch["probabilities"], axis=-1, output_type=tf.int32)
        return {"id": batch["id"], "proposal": proposal, "energy": energy,
                "dense_label": batch["dense_label"], "argmax": argmax}

    batches = samples.batch(batch_size).map(
        lambda b: dict(b, probabilities=probabilities(b["image"])))
    # The prefetch lets the next batch's prediction overlap this batch's solve.
    return without_autotune_model(batches.prefetch(1).map(solve_batch).prefetch(1))


class StageA(keras.callbacks.Callback):
    """Run stage A before training and every ``every`` epochs (module docstring).

    Args:
      source: the training :class:`~keras_regseg.data.base.SegmentationSource`
        (un-augmented images and their seeds).
      network: the network being trained (predictions are taken from it).
      store: the :class:`~keras_regseg.methods.proposal_store.ProposalStore` the stage-B pipeline reads.
      every: M, epochs per round.
      batch_size: images per prediction/solver batch (1 for images of different sizes).
      unary_weight, potts_weight: the solver's weights of ``-log f`` and of the
        Potts term (see :func:`solver_weights` for the paper's lambda).
      max_iterations: alpha-expansion cycles.
      overlap: run rounds after the first in the background.
      progress: show a progress bar per round.
      pool: a :class:`~keras_regseg.solvers.SolverPool` (default: the shared one).

    Schedule (epochs counted from 0, ``k >= 1``): the first round runs at the
    start of training, from the initial network. Round ``k`` is taken from
    the network at the start of epoch ``kM``. Without ``overlap`` it runs
    there and epochs ``kM .. kM + M - 1`` train on it; with ``overlap`` it
    runs in the background during epoch ``kM`` (on a :class:`NetworkSnapshot`),
    which still trains on round ``k - 1``, and epochs ``kM + 1 .. kM + M`` train
    on it. The store serves every sample the round of its step, so the
    proposals a step sees never depend on timing; a background round is
    awaited at the end of its epoch.

    Resumable state (:meth:`resumable_state`, saved by
    :class:`~keras_regseg.training.callbacks.ResumableBackup` after each
    epoch): the round the next epoch trains on, written once per round as
    ``stage-a-round-NNNN.npz``, the round numbering and the last summary.
    After the end of an epoch no round is in flight, so a run killed at any
    moment (inside a round included) resumes from the last backup and computes
    the same rounds from the same networks as the uninterrupted run.

    Adds to the epoch logs the last finished round's ``stage_a_energy`` (mean
    per-pixel energy of the proposals), ``stage_a_seconds``,
    ``proposal_changed_fraction`` (pixels where the proposal differs from the
    network's argmax) and, where the training images have dense labels,
    ``proposal_accuracy`` / ``proposal_miou`` / ``proposal_boundary_accuracy``
    against them beside the network's own ``network_*`` figures at that moment
    (:class:`~keras_regseg.methods.stage_a_diagnostics.RoundDiagnostics`):
    whether stage A adds information beyond the network, and whether near
    boundaries.

    ``energy`` (``"library"`` or ``"authors"``, see
    :data:`keras_regseg.solvers.alpha_expansion.ENERGIES`) and ``warm_start``
    (start each solve from the image's previous proposal, as the authors'
    code does) shape the solve.

    One round by hand (in training, pass the callback to ``fit``; see
    :func:`~keras_regseg.methods.trust_region_pieces`): each proposal keeps its
    image's seeds and labels the rest.

    >>> import numpy as np
    >>> from keras_regseg.data import InMemorySource
    >>> from keras_regseg.methods import ProposalStore
    >>> from keras_regseg.models import UNet
    >>> from keras_regseg.solvers import SolverPool
    >>> images = np.zeros((2, 16, 16, 1), np.float32); images[:, 4:12, 4:12] = 1.0
    >>> seeds = np.full((2, 16, 16), 255, np.int32); seeds[:, 0, 0] = 0; seeds[:, 8, 8] = 1
    >>> source = InMemorySource(images, seeds, num_classes=2)
    >>> store = ProposalStore()
    >>> with SolverPool(processes=0) as pool:         # 0: solve in this process
    ...     stage_a = StageA(source, UNet(2, depth=3), store, progress=False, pool=pool)
    ...     summary = stage_a.run_round()
    >>> proposal = store.get("0")
    >>> len(store), proposal.shape, int(proposal[0, 0]), int(proposal[8, 8])
    (2, (16, 16), 0, 1)
    """

    state_key = "stage_a"
    """Name of this callback's entry in the backup's ``state.json``."""

    def __init__(self, source: SegmentationSource, network: keras.Model, store: ProposalStore,
                 every: int = TR_EVERY, batch_size: int = 8,
                 unary_weight: float = TR_LAMBDA * TR_POTTS_WEIGHT,
                 potts_weight: float = TR_POTTS_WEIGHT, max_iterations: int = 5,
                 energy: str = "library", warm_start: bool = False, overlap: bool = True,
                 progress: bool = True, pool: SolverPool | None = None):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"every is {every!r}; expected a positive number of epochs.")
        self.source, self.network, self.store = source, network, store
        self.every, self.batch_size = int(every), int(batch_size)
        self.settings = dict(unary_weight=float(unary_weight), potts_weight=float(potts_weight),
                             max_iterations=max_iterations, energy=energy)
        self.warm_start = bool(warm_start)
        self.overlap, self.progress, self.pool = bool(overlap), bool(progress), pool
        self.summary = {}
        self.snapshot = NetworkSnapshot(network)
        self._dataset = None       # the round's pipeline, built (and traced) once
        self._thread = None
        self._schedule = None
        self._first_round = None   # the store's round number that epoch 0 trains on
        self._saved_round = None   # the round whose file this process wrote or restored

    def run_round(self):
        """Compute proposals for every training image now; returns the round's summary."""
        self.snapshot.take()
        return self._solve_round()

    def _solve_round(self):
        started = time.time()
        if self._dataset is None:
            # The snapshot's variables are updated in place (NetworkSnapshot.take), so one
            # pipeline serves every round; building it anew cost 0.5 s of tracing per round.
            initial = self.store.get if self.warm_start else None
            self._dataset = proposal_dataset(self.source, self.snapshot, self.batch_size,
                                             self.pool, initial=initial, **self.settings)
        dataset = self._dataset
        proposals, energies = {}, []
        diagnostics = RoundDiagnostics(self.source.num_classes)
        total = -(-len(self.source) // self.batch_size)
        bar = tqdm(total=len(self.source), desc=f"stage A, round {self.store.rounds + 1}",
                   unit="img", disable=not self.progress, leave=False, mininterval=1.0)
        with bar:
            for batch in dataset.take(total):
                ids = [i.decode() for i in batch["id"].numpy()]
                labels = batch["proposal"].numpy()
                proposals.update(zip(ids, labels))
                energies.extend(batch["energy"].numpy().tolist())
                diagnostics.update(labels, batch["argmax"].numpy(), batch["dense_label"].numpy())
                bar.update(len(ids))
        finite = [e for e in energies if np.isfinite(e)]
        summary = {"stage_a_energy": float(np.mean(finite)) if finite else float("nan"),
                   "stage_a_seconds": time.time() - started, **diagnostics.result()}
        self.summary = summary
        self.store.update(proposals)
        return summary

    def _run_safely(self):
        try:
            self._solve_round()
        except Exception as error:  # noqa: BLE001 - stage A must never end training
            warnings.warn(f"stage A round failed ({type(error).__name__}: {error}); "
                          "stage B keeps the previous proposals.", RuntimeWarning)
            self.store.update({})   # the round exists (as a copy): steps waiting for it go on

    def wait(self):
        """Block until a background round (if any) has finished."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def rounds_started(self, epoch):
        """Rounds after the first started by the beginning of ``epoch``."""
        return epoch // self.every

    def rounds_used(self, epoch):
        """Rounds after the first that ``epoch`` trains on (one less while one runs behind)."""
        if self.overlap:
            return max(epoch - 1, 0) // self.every
        return epoch // self.every

    def on_train_begin(self, logs=None):
        steps = (self.params or {}).get("steps")
        self._schedule = self._round_of_step(int(steps)) if steps else None
        if self._schedule is not None:
            self.store.start_schedule(self._schedule)

    def _round_of_step(self, steps_per_epoch):
        def round_of_step(step):
            if self._first_round is None:   # not known before the first epoch starts: wait
                return None
            return self._first_round + self.rounds_used(step // steps_per_epoch)

        return round_of_step

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_round is None:
            # A fresh run (or a backup without stage-A state): a round from the network as it
            # is now serves this epoch. A restored run has its rounds already.
            if len(self.store) == 0:
                self.snapshot.take()
                self._run_safely()
            self._first_round = self.store.rounds - self.rounds_used(epoch)
            if self._schedule is not None:
                self.store.start_schedule(self._schedule)   # waiting: go on
        self.wait()
        if self.store.rounds >= self._first_round + self.rounds_started(epoch):
            return
        if self.overlap and epoch + 1 >= (self.params or {}).get("epochs", float("inf")):
            return   # a background round here would serve the epochs after the last: none
        self.snapshot.take()   # the network at the start of this epoch
        if self.overlap:
            self._thread = threading.Thread(target=self._run_safely, name="stage-a", daemon=True)
            self._thread.start()
        else:
            self._run_safely()

    def on_epoch_end(self, epoch, logs=None):
        self.wait()   # the next epoch trains on it; the backup saves it
        if logs is not None:
            logs.update(self.summary)

    def on_train_end(self, logs=None):
        self.wait()
        self.release()

    def release(self):
        """Fitting has ended, returned or raised: stop serving rounds by step.

        Keras calls ``on_train_end`` only when ``fit`` returns;
        :meth:`TrustRegionModel.fit
        <keras_regseg.methods.trust_region_model.TrustRegionModel.fit>` and
        the distributed loop call this however fitting ends, so that no
        ``tf.data`` lookup waits for a round that will never come.
        """
        self.store.stop_schedule()
        self._first_round = None   # a later fit starts from the latest round

    def resumable_state(self, directory):
        """Write the round the next epoch trains on into ``directory``; return the state.

        ``{"files": [...]}`` names the files the state needs (the backup keeps them).
        """
        self.wait()
        name = f"stage-a-round-{self.store.rounds:04d}.npz"
        if self._saved_round != self.store.rounds:   # one file per round, not per epoch
            atomic_write(os.path.join(directory, name), self.store.save)
            self._saved_round = self.store.rounds
        return {"files": [name], "proposals": name, "rounds": self.store.rounds,
                "first_round": self._first_round, "every": self.every, "overlap": self.overlap,
                "summary": self.summary}

    def restore_resumable_state(self, directory, state):
        """Take back what :meth:`resumable_state` saved (before the first resumed epoch)."""
        self.store.load(os.path.join(directory, state["proposals"]))
        self.summary, self._saved_round = dict(state["summary"]), self.store.rounds
        if (state["every"], state["overlap"]) == (self.every, self.overlap):
            self._first_round = state["first_round"]
        else:   # the saved round then serves the first resumed epoch (on_epoch_begin)
            warnings.warn(f"the backup's stage A ran every {state['every']} epochs with "
                          f"overlap={state['overlap']}; this run asks for every={self.every}, "
                          f"overlap={self.overlap}: the resumed run follows the new schedule "
                          "from the saved proposals.", RuntimeWarning)


def release_stage_a(callbacks):
    """Call :meth:`StageA.release` on the stage-A callbacks among ``callbacks`` (may be ``None``)."""
    for callback in callbacks or ():
        if isinstance(callback, StageA):
            callback.release()


def grid_proposals(samples, network, pool=None, **settings):
    """Stage-A proposals of a few samples (dicts with ``image``, ``weak_label``), for figures."""
    probabilities = in_graph_probabilities(network)
    labels = []
    for sample in samples:
        probs = probabilities(np.asarray(sample["image"], np.float32)[None]).numpy()
        seeds = np.asarray(sample["weak_label"])[None]
        solved, _ = latent_solve.solve_labelings(probs, sample["image"][None], seeds,
                                                 [sample["id"]], pool=pool, **settings)
        labels.append(np.where(solved[0] == IGNORE_INDEX, PAD_INDEX, solved[0]))
    return labels
