"""The run folder's housekeeping: one run at a time, finished runs kept, no leftovers.

- :class:`RunFolderLock`: an exclusive ``flock`` on ``<output>/.lock`` for the
  whole run; a second run on the same folder fails at once naming the first
  one's PID, instead of the two overwriting each other's checkpoints, plots and
  backup. The lock goes with the process (also after ``kill -9``).
- :func:`finished_metrics`: a folder holding ``model.keras`` and the final
  scores (and no backup of an unfinished run) is a finished run; rerunning its
  command leaves it alone unless told to overwrite it (:func:`clear_run`).
- :func:`remove_temporaries`: ``.tmp-*`` files of writes a kill interrupted
  (see :func:`~keras_regseg.utils.files.atomic_write`), removed under the lock.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with RunFolderLock(folder):
...     try:
...         RunFolderLock(folder).__enter__()
...     except RunFolderBusyError as error:
...         print(str(error).split(";")[0].endswith(f"(PID {os.getpid()}) is training into it"))
True
"""

import fcntl
import json
import os
import shutil

__all__ = ["clear_run", "finished_metrics", "LOCK_NAME", "remove_temporaries", "RUN_FILES",
           "RUN_FOLDERS", "RunFolderBusyError", "RunFolderLock"]

LOCK_NAME = ".lock"
RUN_FILES = ("model.keras", "metrics.json", "config.yaml", "training_curves.png",
             "validation_grid.png")
RUN_FOLDERS = ("checkpoints", "backup", "logs", "pretrain")
"""What a run writes into its folder (:mod:`keras_regseg.training.trainer`); ``--overwrite``
removes these and nothing else."""


class RunFolderBusyError(RuntimeError):
    """Another process is training into the same run folder."""


class RunFolderLock:
    """Hold ``<folder>/.lock`` exclusively while training (see the module doc)."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self._file = None

    def __enter__(self):
        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderBusyError(
                f"{self.folder}: another run (PID {holder}) is training into it; wait for it to "
                "end or choose another --output.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc_info):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def finished_metrics(folder):
    """The final metrics of a finished run in ``folder``, or None when it is not one."""
    metrics_path = os.path.join(folder, "metrics.json")
    if (not os.path.isfile(os.path.join(folder, "model.keras"))
            or os.path.isdir(os.path.join(folder, "backup"))
            or not os.path.isfile(metrics_path)):
        return None
    try:
        with open(metrics_path, encoding="utf-8") as f:
            final = json.load(f).get("final")
    except (ValueError, OSError):
        return None
    return final or None


def clear_run(folder):
    """Remove what a run wrote into ``folder`` (for ``--overwrite``); other files stay."""
    for name in RUN_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)
    for name in RUN_FOLDERS:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def remove_temporaries(folder):
    """Delete the ``.tmp-*`` files (and folders) that killed writes left under ``folder``."""
    removed = []
    for parent, dirs, files in os.walk(folder):
        for name in files + dirs:
            if name.startswith(".") and ".tmp-" in name:
                path = os.path.join(parent, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
                removed.append(path)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return removed
