"""A training run killed with SIGKILL at any moment resumes, by rerunning the same command,
to exactly the result of an uninterrupted run with the same seed.

Every run here is ``python train.py`` in a subprocess on tiny synthetic data
with ``--seed`` and ``--deterministic``. The uninterrupted reference runs in
the background while the interrupted chain runs (start-up, mostly imports, is
much of each run's time).

The network has dropout, so its random state must survive a resume too.
Run with ``-s`` to see where each kill landed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_regseg.models  # noqa: F401  (registers the network classes for load_model)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EPOCHS = 5
CONFIG = f"""\
data: {{name: synthetic, size: 32, num_train: 8, num_val: 2}}
model: {{name: unet, options: {{filters: [4, 8], dropout: 0.2}}}}
training: {{iterations: {2 * EPOCHS}, steps_per_epoch: 2, batch_size: 2, num_grid_images: 1}}
"""
SEED = "11"
RUN_TIMEOUT_S = 300

# Pauses the k-th Model.save_weights call (the k-th backup of a run) for good, after writing
# the whole file ("whole") or half of it ("half"), and touches a marker file: the test then
# kills the process at that exact point. Whatever file the backup writes (a temporary file
# in an atomic implementation) is the one cut.
PAUSING_TRAIN = r"""
import os, sys, time
import keras
marker, mode = os.environ["PAUSE_MARKER"], os.environ["PAUSE_MODE"]
pause_at = int(os.environ["PAUSE_AT"])
original = keras.Model.save_weights
calls = []
def save_weights(self, filepath, *args, **kwargs):
    calls.append(filepath)
    original(self, filepath, *args, **kwargs)
    if len(calls) == pause_at:
        if mode == "half":
            with open(filepath, "r+b") as f:
                f.truncate(os.path.getsize(filepath) // 2)
        open(marker, "w").close()
        time.sleep(3600)
keras.Model.save_weights = save_weights
sys.argv[0] = "train.py"
from keras_regseg.cli.train import main
sys.exit(main())
"""


def train_args(config, output):
    return ["--config", str(config), "--output", str(output), "--seed", SEED, "--deterministic"]


def launch(args, log, program=None, extra_env=None):
    """Start ``train.py`` (or ``program``, Python source) with ``args``, output to ``log``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(extra_env or {}))
    prefix = ["-c", program] if program else [os.path.join(ROOT, "train.py")]
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *prefix, *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def finish(process, log):
    """Wait for a run to end by itself; its exit status must be 0."""
    try:
        status = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert status == 0, f"training exited with {status}; last output:\n{tail(log)}"


def tail(log, lines=25):
    with open(log, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def metrics_mtime(output):
    try:
        return os.stat(os.path.join(output, "metrics.json")).st_mtime_ns
    except FileNotFoundError:
        return None


def folder_state(output):
    """Where a run stands on disk: epochs in metrics.json, epoch of the backup, partial files."""
    state = {"epochs_logged": 0, "backup_epoch": None, "partial_files": []}
    try:
        with open(os.path.join(output, "metrics.json")) as f:
            state["epochs_logged"] = len(json.load(f)["history"].get("epoch", []))
    except (FileNotFoundError, ValueError, KeyError):
        pass
    backup = os.path.join(output, "backup")
    if os.path.isdir(backup):
        for name in ("training_metadata.json", "state.json"):
            try:
                with open(os.path.join(backup, name)) as f:
                    state["backup_epoch"] = json.load(f)["epoch"]
            except FileNotFoundError:
                continue
            except (ValueError, KeyError):
                state["backup_epoch"] = "unreadable"
    for folder, _, names in os.walk(output):
        state["partial_files"] += [os.path.relpath(os.path.join(folder, n), output)
                                   for n in names if n.startswith((".tmp", ".partial"))]
    return state


class ProcedureError(RuntimeError):
    """The test could not do what it means to (not a failure of the code under test)."""


def check_running(process, log, what):
    """Pass while the run is alive; a crash fails the test, a finished run is a procedure error."""
    status = process.poll()
    if status is None:
        return
    assert status == 0, f"training exited with {status} before {what}; last output:\n{tail(log)}"
    raise ProcedureError(f"the run finished before {what}; lengthen the run")


def wait_for(condition, process, log, what, timeout=RUN_TIMEOUT_S):
    """Poll until ``condition()`` while the run is alive."""
    deadline = time.time() + timeout
    while not condition():
        check_running(process, log, what)
        if time.time() > deadline:
            raise ProcedureError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sleep_while_running(process, log, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        check_running(process, log, what)
        time.sleep(0.01)
    check_running(process, log, what)


def kill_at(process, output, log, phase, rng):
    """SIGKILL ``process`` at a random moment of ``phase``; return what the folder held then.

    Phases: ``"start-up or restore"`` (a random delay after the launch), ``"epoch end"``
    (just after metrics.json is rewritten, when the figures, checkpoints/last.keras and the
    backup are written) and ``"mid-epoch"`` (after a new backup is complete, in the steps of
    the next epoch).
    """
    launched = (metrics_mtime(output), folder_state(output)["backup_epoch"])
    if phase == "start-up or restore":
        delay = rng.uniform(1.0, 6.0)
    elif phase == "epoch end":
        wait_for(lambda: metrics_mtime(output) != launched[0], process, log, "an epoch end")
        delay = rng.uniform(0.0, 0.3)
    else:
        def new_backup():
            epoch = folder_state(output)["backup_epoch"]
            return isinstance(epoch, int) and epoch != launched[1]

        wait_for(new_backup, process, log, "a new backup")
        delay = rng.uniform(0.0, 0.5)
    sleep_while_running(process, log, delay, f"the {phase} kill")
    process.send_signal(signal.SIGKILL)
    process.wait()
    return dict(phase=phase, delay_s=round(delay, 3), **folder_state(output))


def read_result(output):
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    final = {k: v for k, v in metrics["final"].items() if k != "wall_s"}
    model = keras.saving.load_model(os.path.join(output, "model.keras"), compile=False)
    return final, metrics["history"], model


def assert_same_training(output, reference):
    final, history, model = read_result(output)
    ref_final, ref_history, ref_model = read_result(reference)
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    assert history == ref_history, "per-epoch losses or metrics differ from the uninterrupted run"
    assert final == ref_final
    for weight, ref_weight in zip(model.get_weights(), ref_model.get_weights(), strict=True):
        np.testing.assert_array_equal(weight, ref_weight)
    images = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(images, verbose=0),
                                  ref_model.predict(images, verbose=0))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory):
    """The uninterrupted run: started in the background, awaited when first needed."""
    output = tmp_path_factory.mktemp("reference") / "run"
    log = output.parent / "train.log"
    process = launch(train_args(config_file, output), log)
    state = {"done": False}

    def wait():
        if not state["done"]:
            finish(process, log)
            state["done"] = True
        return output

    yield wait
    if process.poll() is None:
        process.kill()


def test_killed_three_times_at_random_moments_ends_like_an_uninterrupted_run(
        config_file, reference, tmp_path):
    output, log = tmp_path / "run", tmp_path / "train.log"
    rng = random.Random(20240607)
    phases = ["start-up or restore", "mid-epoch", "epoch end"]
    rng.shuffle(phases)
    kills = []
    for phase in phases:
        process = launch(train_args(config_file, output), log)
        kills.append(kill_at(process, output, log, phase, rng))
    finish(launch(train_args(config_file, output), log), log)
    print("\nkills:", *kills, sep="\n  ")
    if not any(isinstance(k["backup_epoch"], int) and k["backup_epoch"] >= 1 for k in kills):
        raise ProcedureError(f"no restart continued from a backup, nothing was resumed: {kills}")
    assert_same_training(output, reference())


def test_killed_inside_backup_writes_ends_like_an_uninterrupted_run(config_file, reference,
                                                                    tmp_path):
    output, log = tmp_path / "run", tmp_path / "train.log"
    for mode, pause_at in (("half", 2), ("whole", 1)):
        marker = tmp_path / f"paused-{mode}"
        env = {"PAUSE_MARKER": str(marker), "PAUSE_MODE": mode, "PAUSE_AT": str(pause_at)}
        process = launch(train_args(config_file, output), log, program=PAUSING_TRAIN,
                         extra_env=env)
        wait_for(marker.exists, process, log, f"the paused backup write ({mode})")
        process.send_signal(signal.SIGKILL)
        process.wait()
        print(f"\nkilled inside a backup write ({mode} file written):", folder_state(output))
    finish(launch(train_args(config_file, output), log), log)
    assert_same_training(output, reference())
