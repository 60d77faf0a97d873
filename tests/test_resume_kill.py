"""A training run killed with SIGKILL at any moment resumes, by rerunning the same command,
to exactly the result of an uninterrupted run with the same seed.

Every run here is ``python train.py`` in a subprocess on tiny synthetic data
with ``--seed`` and ``--deterministic``. The uninterrupted reference runs in
the background while the interrupted chain runs (start-up, mostly imports, is
much of each run's time).

The network has dropout, so its random state must survive a resume too. The
trust region adds its stage-A proposals and schedule (a run killed inside a
background stage-A round, and one resumed in the middle of an M-epoch cycle);
CCNN keeps nothing between steps but the network and optimizer variables
(its dual is solved afresh for every batch), checked by an in-process resume.
The learning-rate schedule reads the optimizer's step counter, saved with the
weights: the per-epoch ``learning_rate`` of the history must match too.
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


# Hooks for the trust-region chain: records which stage-A round each StageA._solve_round
# call computes (ROUNDS_RECORD), and pauses for good, touching PAUSE_MARKER, at the
# PAUSE_AT-th call of PAUSE_HOOK: "stage_a" (before the round computes anything; with
# overlap the round runs in the background while training goes on) or "after_backup"
# (after ResumableBackup.on_epoch_end has written an epoch's backup).
HOOKED_TRAIN = r"""
import os, sys, time
from keras_regseg.methods.trust_region_stage_a import StageA
from keras_regseg.training.callbacks.checkpoint import ResumableBackup
hook, pause_at = os.environ.get("PAUSE_HOOK", ""), int(os.environ.get("PAUSE_AT", "0"))
calls = {"stage_a": 0, "after_backup": 0}
def pause_if(name):
    calls[name] += 1
    if name == hook and calls[name] == pause_at:
        open(os.environ["PAUSE_MARKER"], "w").close()
        time.sleep(3600)
solve_round = StageA._solve_round
def _solve_round(self):
    with open(os.environ["ROUNDS_RECORD"], "a") as f:
        f.write(f"{self.store.rounds + 1}\n")
    pause_if("stage_a")
    return solve_round(self)
StageA._solve_round = _solve_round
backup_epoch_end = ResumableBackup.on_epoch_end
def on_epoch_end(self, epoch, logs=None):
    backup_epoch_end(self, epoch, logs)
    pause_if("after_backup")
ResumableBackup.on_epoch_end = on_epoch_end
sys.argv[0] = "train.py"
from keras_regseg.cli.train import main
sys.exit(main())
"""
TR_EPOCHS = 5
TR_CONFIG = f"""\
method: trust_region
data: {{name: synthetic, size: 32, num_train: 8, num_val: 2}}
model: {{name: unet, options: {{filters: [4, 8], dropout: 0.2}}}}
training: {{iterations: {2 * TR_EPOCHS}, steps_per_epoch: 2, batch_size: 2, num_grid_images: 1}}
trust_region: {{every: 1, processes: 1, overlap: true}}   # one pass of 8 images = 2 epochs
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


def without_timings(history):
    """The history less wall-clock entries (``stage_a_seconds``), which no two runs share."""
    return {k: v for k, v in history.items() if not k.endswith("_seconds")}


def assert_same_training(output, reference, epochs=EPOCHS):
    final, history, model = read_result(output)
    ref_final, ref_history, ref_model = read_result(reference)
    assert history["epoch"] == list(range(1, epochs + 1))
    assert without_timings(history) == without_timings(ref_history), \
        "per-epoch losses or metrics differ from the uninterrupted run"
    rates = history["learning_rate"]   # the poly schedule continued where it stopped
    assert all(a > b for a, b in zip(rates, rates[1:])), rates
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


def background_reference(config, tmp_path_factory, name):
    """Start the uninterrupted run; return ``(wait, process)``, ``wait()`` -> its folder."""
    output = tmp_path_factory.mktemp(name) / "run"
    log = output.parent / "train.log"
    process = launch(train_args(config, output), log)
    state = {"done": False}

    def wait():
        if not state["done"]:
            finish(process, log)
            state["done"] = True
        return output

    return wait, process


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory):
    """The uninterrupted run: started in the background, awaited when first needed."""
    wait, process = background_reference(config_file, tmp_path_factory, "reference")
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


# ---------------------------------------------------------------- trust region


@pytest.fixture(scope="module")
def tr_config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tr.yaml"
    path.write_text(TR_CONFIG)
    return path


def read_rounds(path):
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_trust_region_killed_inside_stage_a_and_mid_cycle_ends_like_an_uninterrupted_run(
        tr_config_file, tmp_path_factory, tmp_path):
    """Stage A every 2 epochs, in the background: rounds 1 and 2 start at epochs 0 and 2
    (counted from 0) and epochs 0-2, 3-4 train on them; a round 3 at epoch 4 would serve
    no epoch and is not run."""
    reference_done, reference_process = background_reference(tr_config_file, tmp_path_factory,
                                                              "tr_reference")
    output, log = tmp_path / "run", tmp_path / "train.log"
    try:
        chain = [("stage_a", 2), ("after_backup", 1), ("", 0)]
        rounds, backups = [], []
        for number, (hook, pause_at) in enumerate(chain):
            marker, record = tmp_path / f"paused-{number}", tmp_path / f"rounds-{number}"
            env = {"PAUSE_HOOK": hook, "PAUSE_AT": str(pause_at), "PAUSE_MARKER": str(marker),
                   "ROUNDS_RECORD": str(record)}
            process = launch(train_args(tr_config_file, output), log, program=HOOKED_TRAIN,
                             extra_env=env)
            if hook:
                wait_for(marker.exists, process, log, f"the pause at {hook} #{pause_at}")
                process.send_signal(signal.SIGKILL)
                process.wait()
                backups.append(folder_state(output)["backup_epoch"])
            else:
                finish(process, log)
            rounds.append(read_rounds(record))
        print("\nstage-A rounds computed per run:", rounds, "backups at the kills:", backups)
        # Killed inside round 2 (the background round of epoch 2) after 2 epochs; the rerun
        # computed round 2 again from the restored network and was killed after epoch 3's
        # backup; the last run trained epochs 3-4 on the restored round 2. Round 3 (epoch 4,
        # the last) would serve no later epoch: no run computes it.
        assert backups == [2, 3]
        assert rounds == [[1, 2], [2], []]
        assert_same_training(output, reference_done(), epochs=TR_EPOCHS)
        history = read_result(output)[1]
        assert history["stage_a_energy"][2] != history["stage_a_energy"][1]   # round 2 logged
    finally:
        if reference_process.poll() is None:
            reference_process.kill()


# Without on_train_end (fit left by an exception), samples that tf.data prefetched and that
# wait for a stage-A round must be let go: tf.data waits for them when the iterator is
# deleted, so the run would hang instead of ending with its exception.
RELEASE_SCRIPT = r"""
import gc, json, sys, threading, time
import keras
sys.path.insert(0, sys.argv[1])
from test_trust_region import tiny_network, tiny_source
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.methods.trust_region_model import TrustRegionModel
from keras_regseg.methods.proposal_store import ProposalStore
from keras_regseg.methods.trust_region_stage_a import StageA
from keras_regseg.solvers import SolverPool

source, network, store = tiny_source(count=8), tiny_network(), ProposalStore()
stage_a = StageA(source, network, store, every=1, batch_size=4, overlap=True, progress=False,
                 pool=SolverPool(processes=0))
solve, never = stage_a._solve_round, threading.Event()
def paused_after_the_first():    # round 2 (epoch 1, in the background) never finishes
    return solve() if store.rounds == 0 else never.wait()
stage_a._solve_round = paused_after_the_first
report = {}

class Stopped(Exception):
    pass

class StopWhileLookupsWait(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            deadline = time.time() + 30
            while not store._condition._waiters and time.time() < deadline:
                time.sleep(0.05)
            report["lookups_waiting"] = len(store._condition._waiters)
            report["raised_at"] = time.time()
            raise Stopped()

model = TrustRegionModel(network, epsilon=0.3)
model.compile(optimizer=keras.optimizers.SGD(0.01))
dataset = make_training_dataset(source, batch_size=2, seed=0, proposals=store.lookup)
try:
    model.fit(dataset, epochs=3, steps_per_epoch=1, verbose=0,
              callbacks=[stage_a, StopWhileLookupsWait()])
except Stopped:
    pass
gc.collect()   # the iterator is gone here
report["exit_s"] = time.time() - report.pop("raised_at")
print(json.dumps(report))
"""


def test_a_trust_region_fit_left_by_an_exception_lets_waiting_lookups_go():
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT, tests], capture_output=True,
                            text=True, timeout=120, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["lookups_waiting"] >= 1   # a prefetched epoch-2 sample waited for round 2
    assert report["exit_s"] < 15            # released within a second or so of fit's end


# ---------------------------------------------------------------- CCNN

CCNN_CONFIG = f"""\
method: ccnn
data: {{name: synthetic, size: 32, num_train: 8, num_val: 2}}
model: {{name: unet, options: {{filters: [4, 8], dropout: 0.2}}}}
training: {{iterations: 6, steps_per_epoch: 2, batch_size: 2, num_grid_images: 1}}
ccnn: {{downscale: 8, max_iterations: 50}}
"""


def test_ccnn_killed_after_a_backup_ends_like_an_uninterrupted_run(tmp_path_factory, tmp_path):
    """CCNN solves its dual afresh for every batch: weights, optimizer and seeds are its state."""
    config = tmp_path / "ccnn.yaml"
    config.write_text(CCNN_CONFIG)
    reference_done, reference_process = background_reference(config, tmp_path_factory,
                                                              "ccnn_reference")
    output, log, marker = tmp_path / "run", tmp_path / "train.log", tmp_path / "paused"
    try:
        env = {"PAUSE_HOOK": "after_backup", "PAUSE_AT": "1", "PAUSE_MARKER": str(marker),
               "ROUNDS_RECORD": str(tmp_path / "rounds")}
        process = launch(train_args(config, output), log, program=HOOKED_TRAIN, extra_env=env)
        wait_for(marker.exists, process, log, "the pause after the first backup")
        process.send_signal(signal.SIGKILL)
        process.wait()
        state = json.loads((output / "backup" / "state.json").read_text())
        assert state["epoch"] == 1 and state["states"] == {}   # nothing beyond the variables
        finish(launch(train_args(config, output), log), log)
        assert_same_training(output, reference_done(), epochs=3)
    finally:
        if reference_process.poll() is None:
            reference_process.kill()


def test_stage_a_state_round_trip_and_a_changed_schedule(tmp_path):
    """What StageA saves comes back; a backup made with another schedule serves the first
    resumed epoch (with a warning) instead of leaving its steps waiting for a round."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_trust_region import tiny_network, tiny_source

    from keras_regseg.methods.proposal_store import ProposalStore

    from keras_regseg.methods.trust_region_stage_a import StageA
    from keras_regseg.solvers import SolverPool

    source, network = tiny_source(count=4), tiny_network()
    with SolverPool(processes=0) as pool:
        def stage_a(every, store=None):
            return StageA(source, network, store or ProposalStore(), every=every, batch_size=4,
                          overlap=False, progress=False, pool=pool)

        saved = stage_a(every=2)
        saved.on_epoch_begin(0)                       # round 1, from the initial network
        saved.store.update({"0/odd id": np.full((2, 2), 3)})   # round 2
        state = saved.resumable_state(str(tmp_path))
        assert state["files"] == ["stage-a-round-0002.npz"] and state["rounds"] == 2
        assert saved.resumable_state(str(tmp_path)) == state   # one file per round
        json.dumps(state)

        same = stage_a(every=2)
        same.restore_resumable_state(str(tmp_path), state)
        assert same.store.rounds == 2 and same.summary == saved.summary
        assert same.store.maps().keys() == saved.store.maps().keys()
        for key, proposal in saved.store.maps().items():
            np.testing.assert_array_equal(same.store.get(key), proposal)
        assert same._first_round == 1

        other = stage_a(every=1)
        with pytest.warns(RuntimeWarning, match="ran every 2 epochs"):
            other.restore_resumable_state(str(tmp_path), state)
        other.on_epoch_begin(3)          # the saved round serves epoch 3 (steps 6, 7) ...
        schedule = other._round_of_step(2)
        assert other.store.rounds == 2 and schedule(6) == schedule(7) == 2
        other.on_epoch_begin(4)          # ... and epoch 4 gets a new one
        assert other.store.rounds == 3 and schedule(8) == 3
