"""Model checkpoints and resumable training state, written atomically (temporary file, then rename)."""

import json
import os

import keras
import numpy as np

from keras_regseg.utils.files import atomic_write, write_json

__all__ = ["AtomicModelCheckpoint", "BrokenBackupError", "ResumableBackup", "seed_states"]


class BrokenBackupError(ValueError):
    """The backup of an interrupted run names files that are missing or unreadable."""


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model as ``.keras`` after every epoch, never leaving a partial file.

    Keras's own ``ModelCheckpoint`` writes in place, so a kill during the
    write leaves a corrupt file where the last good one was.

    ``network`` is the model to save when the fitted model wraps it (methods
    with their own ``train_step``); by default the fitted model itself.
    """

    def __init__(self, path, network=None):
        super().__init__()
        self.path = path
        self.network = network

    def on_epoch_end(self, epoch, logs=None):
        atomic_write(self.path, (self.network or self.model).save)


class ResumableBackup(keras.callbacks.Callback):
    """Training state after every epoch, so that rerunning an interrupted run continues it.

    Replaces ``keras.callbacks.BackupAndRestore``, which overwrites its weights
    file in place and then its metadata: a kill inside the first write leaves
    a corrupt file that stops every restart, and a kill between the two
    replays an epoch on weights that already include it. Here each epoch's
    state goes to new files, each written under a temporary name and renamed::

        backup/epoch-0003.weights.h5   model and optimizer variables
        backup/epoch-0003.seeds.npz    seed-generator states (dropout masks), which
                                       Model.save_weights leaves out
        backup/state.json              {"epoch": 3, "weights": ..., "seeds": ...,
                                        "states": {...}}

    ``state.json`` is replaced last and only ever names complete files; the
    files of older epochs are deleted after it. The trainer removes the folder
    once the final model is saved.

    ``states``: objects with more state than their variables (such as the
    trust region's :class:`~keras_regseg.methods.trust_region_stage_a.StageA`);
    others in the list are ignored. Each has a ``state_key``,
    ``resumable_state(backup_dir) -> dict`` (JSON; it may write files into
    ``backup_dir``, atomically, and name them in the dict's ``"files"``, which
    are then kept) and ``restore_resumable_state(backup_dir, state)``, called
    in ``on_train_begin`` of a resumed run, before its first epoch starts.
    Optimizer variables (the step counter the learning-rate schedule reads
    included) are in the weights file. ADM and CCNN keep nothing else between
    steps: ADM's latent labelings and CCNN's dual are solved afresh for every
    batch, and their metric trackers restart each epoch.
    """

    def __init__(self, backup_dir, states=()):
        super().__init__()
        self.backup_dir = backup_dir
        self.state_path = os.path.join(backup_dir, "state.json")
        self.states = [s for s in states if hasattr(s, "resumable_state")]
        keys = [s.state_key for s in self.states]
        if len(set(keys)) != len(keys):
            raise ValueError(f"the resumable states have the same state_key: {keys}.")

    def completed_epochs(self):
        """Number of epochs the backup holds (0 without a backup)."""
        state = self._read_state()
        return state["epoch"] if state else 0

    def _read_state(self):
        """The backup's state, None without one; ``BrokenBackupError`` when it cannot be used."""
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise self._broken(f"{self.state_path} is unreadable ({error})") from None
        if not isinstance(state, dict) or not {"epoch", "weights", "seeds"} <= set(state):
            raise self._broken(f"{self.state_path} lacks the keys epoch, weights and seeds")
        names = [state["weights"], state["seeds"],
                 *(name for extra in state.get("states", {}).values()
                   for name in extra.get("files", ()))]
        for name in names:
            if not os.path.isfile(os.path.join(self.backup_dir, os.path.basename(str(name)))):
                raise self._broken(f"{self.state_path} names {name}, which is missing")
        return state

    def _broken(self, problem):
        return BrokenBackupError(
            f"{problem}: the backup of the interrupted run cannot be resumed. Delete the folder "
            f"{self.backup_dir} to restart the run from its beginning (the epochs it holds are "
            "lost; checkpoints/last.keras keeps the last finished epoch's network).")

    def on_train_begin(self, logs=None):
        state = self._read_state()
        if state is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
            with np.load(os.path.join(self.backup_dir, state["seeds"])) as seeds:
                for index, variable in enumerate(seed_states(self.model)):
                    variable.assign(seeds[str(index)])
        except (OSError, ValueError, KeyError) as error:
            raise self._broken(f"{state['weights']} or {state['seeds']} cannot be read "
                               f"({type(error).__name__}: {str(error)[:200]})") from None
        saved = state.get("states", {})
        for holder in self.states:
            if holder.state_key in saved:
                holder.restore_resumable_state(self.backup_dir, saved[holder.state_key])
        # How keras.callbacks.BackupAndRestore makes fit start at the next epoch.
        self.model._initial_epoch = state["epoch"]

    def on_train_end(self, logs=None):
        # fit never resets it: a later fit of the same network (phase 2) would skip epochs.
        self.model._initial_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        stem = f"epoch-{epoch + 1:04d}"
        weights, seeds = f"{stem}.weights.h5", f"{stem}.seeds.npz"
        states = {str(i): keras.ops.convert_to_numpy(v)
                  for i, v in enumerate(seed_states(self.model))}
        atomic_write(os.path.join(self.backup_dir, weights), self.model.save_weights,
                     suffix=".weights.h5")
        atomic_write(os.path.join(self.backup_dir, seeds), lambda tmp: np.savez(tmp, **states))
        extra = {holder.state_key: holder.resumable_state(self.backup_dir)
                 for holder in self.states}
        write_json(self.state_path, {"epoch": epoch + 1, "weights": weights, "seeds": seeds,
                                     "states": extra})
        keep = {weights, seeds, "state.json", *(n for s in extra.values() for n in s["files"])}
        for name in os.listdir(self.backup_dir):  # older epochs, temporary files of killed runs
            if name not in keep:
                os.remove(os.path.join(self.backup_dir, name))


def seed_states(model):
    """The state variables of the model's seed generators (in ``variables``, not in ``weights``)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]
