"""Solve a batch of alpha-expansion problems in reusable worker processes.

GCO holds the GIL while it runs, so threads give no speed-up: each worker is a
separate Python process. Workers are started with ``subprocess`` running
``python -c "... from keras_regseg.solvers.pool import _serve; ..."`` and talk to the
parent over two pipes (pickled messages, ``multiprocessing.connection``). Unlike
multiprocessing's "spawn" and "forkserver" methods this never re-imports the
parent's ``__main__`` (a training script that imports TensorFlow), so a worker
imports numpy and gco only and starts in a fraction of a second; and unlike
"fork" it never copies a parent's TensorFlow threads.

A worker that dies (killed by a signal, or an abort inside GCO) is noticed by the
end-of-file on its pipe: the pool starts a replacement and retries the image
once; if that fails too, the image gets its starting labeling (argmax with seeds)
and a ``RuntimeWarning``, and its id is listed in ``failed_ids``. Training goes on.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import warnings
import weakref
from multiprocessing.connection import Connection, wait

import numpy as np

import keras_regseg
from keras_regseg.solvers import energy as E
from keras_regseg.solvers.alpha_expansion import (
    DEFAULT_MAX_ITERATIONS,
    check_energy,
    check_max_iterations,
    solve_alpha_expansion,
    starting_solution,
)

__all__ = ["default_processes", "MAX_ATTEMPTS", "SolverPool"]

MAX_ATTEMPTS = 2
"""Tries per image before falling back to its starting labeling (a first try and one retry)."""

_EXIT_CODE_FOR_TEST = 70
_READY = "ready"  # a worker's first message: its imports worked


def default_processes() -> int:
    """Worker count for this machine: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# A worker imports keras_regseg.solvers without running keras_regseg/__init__.py, which
# loads TensorFlow (to register the package's Keras classes): solving needs numpy and gco
# only, and TensorFlow would cost each worker seconds of start-up and hundreds of MB.
_WORKER_CODE = (
    "import sys, types; "
    "package = types.ModuleType('keras_regseg'); "
    "package.__path__ = [{package!r}]; package.__file__ = {package!r} + '/__init__.py'; "
    "sys.modules['keras_regseg'] = package; "
    "from keras_regseg.solvers.pool import _serve; _serve({read}, {write}, {niceness})"
)


def _serve(read_fd, write_fd, niceness=0):
    """Worker loop: receive ``(task, kwargs)``, answer ``(task, ok, labels or message, energy)``.

    Ends on ``None`` or when the parent goes away (end-of-file on the pipe).
    ``niceness`` > 0 lowers the worker's CPU priority (see :class:`SolverPool`).
    """
    if niceness:
        os.nice(niceness)
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver, sender = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    sender.send(_READY)
    while True:
        try:
            message = receiver.recv()
        except EOFError:
            return
        if message is None:
            return
        task, kwargs = message
        if kwargs.pop("exit_for_test", False):
            os._exit(_EXIT_CODE_FOR_TEST)
        try:
            labels, energy = solve_alpha_expansion(**kwargs)
            reply = (task, True, labels, energy)
        except Exception as error:  # reported to the parent, which raises it
            reply = (task, False, f"{type(error).__name__}: {error}", None)
        try:
            sender.send(reply)
        except OSError:  # parent gone
            return


class _Worker:
    """One worker process and the parent's ends of its two pipes."""

    def __init__(self, niceness=0):
        to_child = os.pipe()
        from_child = os.pipe()
        env = dict(os.environ)
        # The worker must import the same keras_regseg as the parent, installed or not.
        root = os.path.dirname(os.path.dirname(os.path.abspath(keras_regseg.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(variable, "1")  # one worker per core: no nested thread pools
        code = _WORKER_CODE.format(package=os.path.dirname(os.path.abspath(keras_regseg.__file__)),
                                   read=to_child[0], write=from_child[1], niceness=int(niceness))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(to_child[0], from_child[1]),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            for fd in (*to_child, *from_child):
                os.close(fd)
            raise
        os.close(to_child[0])
        os.close(from_child[1])
        self.sender = Connection(to_child[1], readable=False)
        self.receiver = Connection(from_child[0], writable=False)
        self.ready = False  # set by the worker's first message

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=5.0):
        """Ask the worker to exit, kill it if it does not, and release the pipes."""
        try:
            if self.alive():
                self.sender.send(None)
        except OSError:
            pass
        for connection in (self.sender, self.receiver):
            connection.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _stop_all(workers, owner_pid):
    # A forked child inherits the pool and its exit handlers: only the owner stops workers.
    if os.getpid() != owner_pid:
        return
    for worker in workers:
        worker.stop()
    workers.clear()


def _split_batch(probabilities, images, seeds, ids):
    """The batch as per-image lists ``(probabilities, images, seeds, ids)``.

    Arrays ``[B, ...]`` or lists of per-image arrays (sizes may differ) are
    accepted; per-image shapes are checked later by ``energy.check_inputs``.
    """
    if isinstance(probabilities, (list, tuple)):
        size = len(probabilities)
    else:
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 4:
            raise ValueError(f"probabilities have shape {probabilities.shape}; expected [B, H, W, K].")
        size = probabilities.shape[0]
    for label, value in (("images", images), ("seeds", seeds)):
        if len(value) != size:
            raise ValueError(f"got {len(value)} {label} for a batch of {size} probability maps.")
    ids = [str(i) for i in range(size)] if ids is None else list(ids)
    if len(ids) != size:
        raise ValueError(f"got {len(ids)} ids for a batch of {size} images.")
    return list(probabilities), list(images), list(seeds), ids


class SolverPool:
    """Alpha-expansion for batches of images in ``processes`` reusable workers.

    ``processes``: worker count (default: the CPUs available to this process);
    0 solves in this process (no isolation from crashes). ``niceness`` > 0
    runs the workers at a lower CPU priority: work overlapped with training
    (trust-region stage A in the background) then takes only the cycles
    training leaves idle instead of slowing its steps. The energy settings
    are defaults for every :meth:`solve_batch` call, which may override them.
    Use as a context manager or call :meth:`close`; leftover workers are
    stopped at interpreter exit. Calls from several threads are serialized.

    >>> p = np.zeros((2, 4, 4, 2)); p[..., :2, 0] = 0.9; p[..., 2:, 0] = 0.2; p[..., 1] = 1 - p[..., 0]
    >>> seeds = np.full((2, 4, 4), 255); seeds[:, 0, 0] = 0; seeds[:, 0, 3] = 1
    >>> with SolverPool(processes=1, potts_weight=0.1) as pool:
    ...     labels, energies = pool.solve_batch(p, np.zeros((2, 4, 4)), seeds, ids=["a", "b"])
    >>> labels[0].tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    >>> energies.shape, pool.failed_ids
    ((2,), [])
    """

    def __init__(self, processes: int | None = None, *, unary_weight: float = 1.0,
                 potts_weight: float = 1.0, max_iterations: int = DEFAULT_MAX_ITERATIONS,
                 restrict_labels: bool = True, energy: str = "library", niceness: int = 0):
        self.processes = default_processes() if processes is None else int(processes)
        if self.processes < 0:
            raise ValueError(f"processes is {processes!r}; expected None or an integer >= 0.")
        E.check_weights(unary_weight, potts_weight)
        check_max_iterations(max_iterations)
        self.settings = dict(
            unary_weight=unary_weight,
            potts_weight=potts_weight,
            max_iterations=max_iterations,
            restrict_labels=restrict_labels,
            energy=check_energy(energy),
        )
        self.failed_ids = []  # ids whose solve failed twice in the last call: they got the start labeling
        self.restarts = 0  # workers replaced since the pool started
        self._exit_for_test = {}  # test hook: image id -> number of tries on which the worker exits
        self._lock = threading.Lock()
        self._workers = []
        self._closer = weakref.finalize(self, _stop_all, self._workers, os.getpid())
        self.niceness = int(niceness)
        if self.niceness < 0:
            raise ValueError(f"niceness is {niceness!r}; expected an integer >= 0 (a lower "
                             "priority; raising it needs privileges).")
        self._workers.extend(_Worker(self.niceness) for _ in range(self.processes))

    @property
    def pids(self):
        """Process ids of the current workers."""
        return [worker.process.pid for worker in self._workers]

    def close(self):
        """Stop the workers. Idempotent."""
        self._closer()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def solve_batch(self, probabilities, images, seeds, ids=None, initial_labels=None, **settings):
        """Solve every image of a batch; see ``solve_alpha_expansion`` for one image.

        Args:
          probabilities: ``[B, H, W, K]`` softmax, or a list of ``[H, W, K]``
            maps whose sizes may differ (e.g. whole un-augmented images).
          images: ``[B, H, W]`` or ``[B, H, W, C]``, or a list of images.
          seeds: ``[B, H, W]`` weak labels (``IGNORE_INDEX``, ``PAD_INDEX`` as
            usual), or a list of label maps.
          ids: ``B`` names for messages (default ``"0"``, ``"1"``, ...).
          initial_labels: optional per-image labelings to start from (a list
            whose entries may be ``None``: that image starts from the argmax).
          **settings: overrides of ``unary_weight``, ``potts_weight``,
            ``max_iterations``, ``restrict_labels``, ``energy`` for this call.

        Returns ``(labels, energies float64 [B])``: labels int32 ``[B, H, W]``,
        or a list of ``[H, W]`` maps when ``probabilities`` is a list. Bad input
        raises ``ValueError`` naming the image before any work starts.
        """
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise TypeError(
                f"unknown solver settings {sorted(unknown)}; expected some of {sorted(self.settings)}."
            )
        settings = {**self.settings, **settings}
        E.check_weights(settings["unary_weight"], settings["potts_weight"])
        check_max_iterations(settings["max_iterations"])
        check_energy(settings["energy"])
        as_list = isinstance(probabilities, (list, tuple))
        batch_shape = None if as_list else np.shape(probabilities)
        probabilities, images, seeds, ids = _split_batch(probabilities, images, seeds, ids)
        for i, image_id in enumerate(ids):
            E.check_inputs(probabilities[i], images[i], seeds[i], image_id)
        if initial_labels is None:
            initial_labels = [None] * len(ids)
        if len(initial_labels) != len(ids):
            raise ValueError(f"initial_labels has {len(initial_labels)} entries for {len(ids)} images.")
        tasks = [
            dict(probabilities=probabilities[i], image=images[i], seeds=seeds[i], image_id=ids[i],
                 initial_labels=initial_labels[i], **settings)
            for i in range(len(ids))
        ]
        with self._lock:
            if not self._closer.alive:
                raise RuntimeError("this SolverPool is closed; create a new one.")
            self.failed_ids = []
            if self.processes == 0:
                results = [solve_alpha_expansion(**task) for task in tasks]
            else:
                results = self._solve_in_workers(tasks)
        energies = np.array([r[1] for r in results], dtype=np.float64)
        if as_list:
            return [r[0] for r in results], energies
        labels = np.stack([r[0] for r in results]) if results else np.zeros((0, *batch_shape[1:3]), np.int32)
        return labels.astype(np.int32), energies

    def _replace(self, index):
        self._workers[index].stop(timeout=0.1)
        self._workers[index] = _Worker(self.niceness)
        self.restarts += 1

    def _fallback(self, task):
        image_id = task["image_id"]
        warnings.warn(
            f"alpha-expansion failed {MAX_ATTEMPTS} times on image {image_id!r} (its worker died); "
            "using the starting labeling (argmax with seeds) instead.",
            RuntimeWarning,
            stacklevel=4,
        )
        self.failed_ids.append(image_id)
        kwargs = {k: v for k, v in task.items() if k not in ("max_iterations",)}
        return starting_solution(**kwargs)

    def _solve_in_workers(self, tasks):
        busy = {}  # worker index -> task index
        try:
            return self._dispatch(tasks, busy)
        except BaseException:
            # Interrupted (e.g. KeyboardInterrupt): busy workers would later answer
            # tasks of this call; replace them so that the next call starts clean.
            for index in busy:
                self._replace(index)
            raise

    def _dispatch(self, tasks, busy):
        results = [None] * len(tasks)
        errors = {}
        attempts = [0] * len(tasks)
        queue = collections.deque(range(len(tasks)))
        while queue or busy:
            for index in range(len(self._workers)):
                if not queue:
                    break
                if index in busy:
                    continue
                if not self._workers[index].alive():  # died while idle: not the task's fault
                    self._replace(index)
                task = queue.popleft()
                message = dict(tasks[task])
                image_id = message["image_id"]
                if self._exit_for_test.get(image_id, 0) > 0:
                    self._exit_for_test[image_id] -= 1
                    message["exit_for_test"] = True
                attempts[task] += 1
                busy[index] = task
                try:
                    self._workers[index].sender.send((task, message))
                except OSError:  # the pipe broke: the worker is gone; its end-of-file will tell
                    pass
            receivers = {self._workers[index].receiver: index for index in busy}
            for receiver in wait(list(receivers)):
                index = receivers[receiver]
                worker = self._workers[index]
                try:
                    reply = receiver.recv()
                except (EOFError, OSError):
                    if not worker.ready:  # a broken environment, not a bad image: fail loudly
                        raise RuntimeError(
                            f"a solver worker (pid {worker.process.pid}) exited with code "
                            f"{worker.process.wait()} before it was ready; see its error output above."
                        ) from None
                    task = busy.pop(index)
                    self._replace(index)
                    if attempts[task] < MAX_ATTEMPTS:
                        queue.appendleft(task)
                    else:
                        results[task] = self._fallback(tasks[task])
                    continue
                if reply == _READY:
                    worker.ready = True
                    continue
                task = busy.pop(index)
                reply_task, ok, payload, energy = reply
                if reply_task != task:  # cannot happen: one task per worker at a time
                    raise RuntimeError(f"worker {index} answered task {reply_task} instead of {task}.")
                if ok:
                    results[task] = (payload, energy)
                else:
                    errors[task] = payload
        if errors:
            task = min(errors)
            raise RuntimeError(f"solver failed on image {tasks[task]['image_id']!r}: {errors[task]}")
        return results
