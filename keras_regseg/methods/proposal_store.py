"""The trust region's proposals: one label map per training sample, by round.

Stage A (:class:`~keras_regseg.methods.trust_region_stage_a.StageA`) writes a
round of proposals here; the stage-B pipeline reads each sample's proposal by
its id (:meth:`ProposalStore.lookup`, a ``tf.data`` map helper) and warps it
with the image and seeds.
"""

import threading

import numpy as np
import tensorflow as tf

from keras_regseg.constants import MAX_CLASSES
from keras_regseg.methods import latent_solve

__all__ = ["ProposalStore"]


class ProposalStore:
    """The proposals of the training samples by sample id, one version per stage-A round.

    Thread-safe. :meth:`update` adds a round (the previous round's maps with
    the given ids replaced); :meth:`get` reads the latest round. While a
    schedule is set (:meth:`start_schedule`, by :class:`StageA` during
    ``fit``), :meth:`lookup` serves each sample the round its training step
    belongs to, waiting for that round if ``tf.data`` prefetches ahead of it:
    which proposals a step trains on then never depends on timing, so that a
    run is reproducible and a resumed run repeats the uninterrupted one.
    Samples without a proposal (or with one of another size) get their seeds
    only, so the robust loss is pCE on them.

    >>> store = ProposalStore()
    >>> store.update({"a": np.ones((2, 2), np.int32)})
    >>> store.get("a").tolist(), store.get("b") is None, len(store), store.rounds
    ([[1, 1], [1, 1]], True, 1, 1)
    >>> store.update({"b": np.zeros((2, 2), np.int32)})
    >>> store.maps(1).keys() == {"a"}, sorted(store.maps())
    (True, ['a', 'b'])
    """

    KEEP = 2
    """Rounds kept: the one the current epoch trains on and the next."""

    def __init__(self):
        self._versions = {}           # round number (1, 2, ...) -> {sample id: uint8 map}
        self._condition = threading.Condition()
        self._round_of_step = None    # step -> round number, while a schedule is set
        self.rounds = 0

    def __len__(self):
        return len(self.maps())

    def get(self, sample_id):
        """The latest proposal of ``sample_id`` (``None`` if it has none)."""
        return self.maps().get(sample_id)

    def maps(self, round_number=None):
        """``{id: map}`` of a round (default: the latest; the oldest kept if it is gone)."""
        versions = self._versions
        if not versions:
            return {}
        if round_number is None or round_number not in versions:
            kept = sorted(versions)
            if round_number is None or round_number > kept[-1]:
                return versions[kept[-1]]
            return versions[kept[0]]
        return versions[round_number]

    def update(self, proposals):
        """Add a round: the latest maps with the given ids (dict id -> int label map) replaced."""
        merged = dict(self.maps())
        merged.update({str(k): np.asarray(v, np.uint8) for k, v in proposals.items()})
        self._publish(self.rounds + 1, merged)

    def restore(self, round_number, maps):
        """Make ``maps`` round ``round_number``, dropping every other round (a resumed run)."""
        with self._condition:
            self._versions = {}
        self._publish(int(round_number), {str(k): np.asarray(v, np.uint8) for k, v in maps.items()})

    def _publish(self, round_number, maps):
        with self._condition:
            versions = {k: v for k, v in self._versions.items() if k > round_number - self.KEEP}
            versions[round_number] = maps
            self._versions = versions   # one reference swap: readers see a whole round or none
            self.rounds = round_number
            self._condition.notify_all()

    def start_schedule(self, round_of_step):
        """Serve step ``t`` the round ``round_of_step(t)``, waiting for it when needed.

        ``round_of_step`` returns ``None`` while it cannot tell yet (lookups
        wait); call :meth:`start_schedule` again when that changes. Whoever
        starts a schedule stops it when fitting ends, however it ends
        (:meth:`StageA.release <keras_regseg.methods.trust_region_stage_a.StageA.release>`):
        ``tf.data`` waits for its pending lookups when the iterator is deleted,
        so a schedule left running after ``fit`` raised would hang it.
        """
        with self._condition:
            self._round_of_step = round_of_step
            self._condition.notify_all()

    def stop_schedule(self):
        """Serve the latest round again and release every waiting lookup."""
        with self._condition:
            self._round_of_step = None
            self._condition.notify_all()

    def _wanted_round(self, step):
        if step < 0:
            return None
        with self._condition:
            # The round is computed by the stage-A callback at an epoch start (or in the
            # background); tf.data may ask for a later step's sample long before that.
            while self._round_of_step is not None:
                wanted = self._round_of_step(int(step))
                if wanted is not None and self.rounds >= wanted:
                    return wanted
                self._condition.wait()
            return None   # no schedule (any more): the latest round

    def _lookup(self, sample_id, seeds, step=-1):
        proposal = self.maps(self._wanted_round(step)).get(sample_id.decode())
        if proposal is None or proposal.shape != seeds.shape:
            # No proposal yet (or from another image size): seeds only, the robust loss is pCE.
            return latent_solve.seeds_only(seeds, MAX_CLASSES)
        return proposal.astype(np.int32)

    def lookup(self, sample, step=None):
        """A ``tf.data`` map helper: the proposal of a sample dict (``id``, ``weak_label``).

        ``step`` (int64 scalar tensor, optional): the training step the sample
        goes to, as :func:`~keras_regseg.data.pipeline.make_training_dataset`
        passes it; without it, or without a schedule, the latest round.
        """
        step = tf.constant(-1, tf.int64) if step is None else tf.cast(step, tf.int64)
        proposal = tf.numpy_function(self._lookup, [sample["id"], sample["weak_label"], step],
                                     tf.int32, stateful=True, name="trust_region_proposal")
        proposal.set_shape(sample["weak_label"].shape)
        return proposal

    def save(self, path):
        """Write the latest round to ``path`` (``.npz``: ids, maps, round number)."""
        maps = self.maps()
        ids = sorted(maps)
        arrays = {f"map_{i}": maps[k] for i, k in enumerate(ids)}
        with open(path, "wb") as f:
            np.savez(f, ids=np.asarray(ids, dtype=str), round=np.int64(self.rounds), **arrays)

    def load(self, path):
        """Read a round written by :meth:`save` (it becomes the only round kept)."""
        with np.load(path, allow_pickle=False) as saved:
            ids = [str(i) for i in saved["ids"]]
            self.restore(int(saved["round"]), {k: saved[f"map_{i}"] for i, k in enumerate(ids)})
