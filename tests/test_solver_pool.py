"""SolverPool: same answers as in-process, reused workers, survival of dying workers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.solvers import SolverPool, default_processes, solve_alpha_expansion, starting_solution

SETTINGS = dict(unary_weight=1.0, potts_weight=0.8)


def make_batch(size=6, side=20, classes=3, seed=0):
    """Noisy blobs with a few scribbles: ``(probabilities, images, seeds, ids)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    probabilities, images, seeds = [], [], []
    for _ in range(size):
        truth = np.zeros((side, side), np.int64)
        cy, cx = rng.integers(6, side - 6, 2)
        truth[np.hypot(yy - cy, xx - cx) < 5] = 1
        truth[np.hypot(yy - cy, xx - cx) < 2] = 2
        logits = 2.5 * np.eye(classes)[truth] + rng.normal(size=(side, side, classes))
        probabilities.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
        images.append(truth[..., None] / 2.0 + rng.normal(scale=0.05, size=(side, side, 1)))
        seed_map = np.full((side, side), IGNORE_INDEX)
        seed_map[0, :] = 0
        seed_map[cy, cx - 3 : cx - 2] = 1
        seed_map[cy, cx] = 2
        seeds.append(seed_map)
    ids = [f"img{i}" for i in range(size)]
    probabilities, images = np.stack(probabilities).astype(np.float32), np.stack(images).astype(np.float32)
    return probabilities, images, np.stack(seeds), ids


def in_process(probabilities, images, seeds, ids):
    results = [
        solve_alpha_expansion(p, im, s, image_id=i, **SETTINGS)
        for p, im, s, i in zip(probabilities, images, seeds, ids)
    ]
    return np.stack([r[0] for r in results]), np.array([r[1] for r in results])


@pytest.fixture(scope="module")
def pool():
    with SolverPool(processes=2, **SETTINGS) as pool:
        yield pool


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.fixture(scope="module")
def expected(batch):
    return in_process(*batch)


def gone(pid):
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_pool_matches_in_process_solves_and_reuses_its_workers(pool, batch, expected):
    pids = pool.pids
    assert len(pids) == 2
    for _ in range(2):
        labels, energies = pool.solve_batch(*batch)
        assert labels.dtype == np.int32 and labels.shape == batch[2].shape
        np.testing.assert_array_equal(labels, expected[0])
        np.testing.assert_array_equal(energies, expected[1])
    assert pool.pids == pids and pool.failed_ids == []


def test_workers_do_not_import_tensorflow(pool, batch):
    pool.solve_batch(*batch)
    for pid in pool.pids:
        with open(f"/proc/{pid}/maps") as maps:
            assert "tensorflow" not in maps.read()


def test_settings_can_be_overridden_per_call(pool, batch):
    probabilities, images, seeds, ids = batch
    labels, energies = pool.solve_batch(probabilities, images, seeds, ids, potts_weight=0.0)
    _, start_energy = starting_solution(probabilities[0], images[0], seeds[0], potts_weight=0.0)
    assert energies[0] == pytest.approx(start_energy)
    with pytest.raises(TypeError, match="unknown solver settings"):
        pool.solve_batch(probabilities, images, seeds, ids, lambda_=1.0)


def test_a_worker_that_dies_once_is_replaced_and_the_image_retried(pool, batch, expected):
    restarts = pool.restarts
    pool._exit_for_test = {"img3": 1}
    labels, energies = pool.solve_batch(*batch)
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(energies, expected[1])
    assert pool.restarts == restarts + 1 and pool.failed_ids == [] and len(pool.pids) == 2


def test_an_image_that_kills_its_worker_twice_gets_its_starting_labeling(pool, batch, expected):
    probabilities, images, seeds, ids = batch
    pool._exit_for_test = {"img1": 2}
    with pytest.warns(RuntimeWarning, match="image 'img1'"):
        labels, energies = pool.solve_batch(*batch)
    start, start_energy = starting_solution(probabilities[1], images[1], seeds[1], **SETTINGS)
    np.testing.assert_array_equal(labels[1], start)
    assert energies[1] == start_energy and pool.failed_ids == ["img1"]
    others = [0, 2, 3, 4, 5]
    np.testing.assert_array_equal(labels[others], expected[0][others])
    # The pool goes on working normally afterwards.
    labels, _ = pool.solve_batch(*batch)
    np.testing.assert_array_equal(labels, expected[0])
    assert pool.failed_ids == [] and not any(gone(pid) for pid in pool.pids)


def test_a_worker_killed_between_calls_is_replaced(pool, batch, expected):
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until_gone(victim)
    labels, _ = pool.solve_batch(*batch)
    np.testing.assert_array_equal(labels, expected[0])
    assert victim not in pool.pids


def test_bad_input_is_rejected_naming_the_image_before_any_work(pool, batch):
    probabilities, images, seeds, ids = batch
    broken = probabilities.copy()
    broken[4, 2, 3, 1] = np.nan
    with pytest.raises(ValueError, match="image 'img4'.*non-finite"):
        pool.solve_batch(broken, images, seeds, ids)
    mismatch = r"image 'img0': the probability map is 20x20 but the image is 20x18"
    with pytest.raises(ValueError, match=mismatch):
        pool.solve_batch(probabilities, images[:, :, :18], seeds, ids)
    with pytest.raises(ValueError, match="got 5 seeds for a batch of 6"):
        pool.solve_batch(probabilities, images, seeds[:5], ids)
    with pytest.raises(ValueError, match="got 2 ids for a batch of 6"):
        pool.solve_batch(probabilities, images, seeds, ids[:2])
    assert pool.solve_batch(*batch)[0].shape == seeds.shape  # still usable


def test_images_of_different_sizes_go_as_lists(pool, batch, expected):
    probabilities, images, seeds, ids = batch
    crops = [np.s_[:, :], np.s_[2:17, 1:20], np.s_[:12, 5:]]
    parts = [[array[i][crop] for i, crop in enumerate(crops)] for array in (probabilities, images, seeds)]
    labels, energies = pool.solve_batch(*parts, ids=ids[:3])
    assert isinstance(labels, list) and [x.shape for x in labels] == [(20, 20), (15, 19), (12, 15)]
    np.testing.assert_array_equal(labels[0], expected[0][0])
    for i in (1, 2):
        alone = solve_alpha_expansion(parts[0][i], parts[1][i], parts[2][i], **SETTINGS)
        np.testing.assert_array_equal(labels[i], alone[0])
        assert energies[i] == alone[1]


def test_empty_batch(pool):
    labels, energies = pool.solve_batch(np.zeros((0, 5, 6, 2)), np.zeros((0, 5, 6)), np.zeros((0, 5, 6)))
    assert labels.shape == (0, 5, 6) and energies.shape == (0,)


def test_in_process_mode_and_default_size(batch, expected):
    with SolverPool(processes=0, **SETTINGS) as pool:
        labels, energies = pool.solve_batch(*batch)
        assert pool.pids == []
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(energies, expected[1])
    with SolverPool() as pool:
        assert pool.processes == default_processes() == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="processes is -1"):
        SolverPool(processes=-1)


def test_close_stops_the_workers_and_refuses_more_work(batch):
    pool = SolverPool(processes=1)
    pids = pool.pids
    pool.close()
    pool.close()  # idempotent
    assert all(wait_until_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.solve_batch(*batch)


@pytest.mark.parametrize("ending", ["normal exit", "os._exit"])
def test_workers_end_with_their_parent(ending):
    # A normal exit runs the pool's finalizer; after os._exit (no cleanup at all)
    # the workers see end-of-file on their pipe and leave by themselves.
    finish = "sys.exit(0)" if ending == "normal exit" else "os._exit(0)"
    code = textwrap.dedent(
        f"""
        import os, sys
        from keras_regseg.solvers import SolverPool
        pool = SolverPool(processes=2)
        print(*pool.pids, flush=True)
        {finish}
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) == 2 and all(wait_until_gone(pid) for pid in pids)


def test_an_interrupted_call_leaves_no_stale_answers_behind(pool, batch, expected, monkeypatch):
    import keras_regseg.solvers.pool as pool_module

    real_wait = pool_module.wait

    def interrupted_wait(*args, **kwargs):
        monkeypatch.setattr(pool_module, "wait", real_wait)
        raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        pool.solve_batch(*batch)  # two tasks were sent; their answers must not leak
    reverse = [part[::-1] for part in batch]
    labels, energies = pool.solve_batch(*reverse)
    np.testing.assert_array_equal(labels, expected[0][::-1])
    np.testing.assert_array_equal(energies, expected[1][::-1])


def test_workers_that_cannot_start_make_a_loud_error_not_silent_fallbacks(batch, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # every worker exits at once
    with SolverPool(processes=1) as pool:
        with pytest.raises(RuntimeError, match="exited with code 1 before it was ready"):
            pool.solve_batch(*batch)


def test_niceness_lowers_the_workers_priority_and_still_solves(batch, expected):
    with SolverPool(processes=1, niceness=5, **SETTINGS) as nice_pool:
        labels, energies = nice_pool.solve_batch(*batch)
        worker_priority = os.getpriority(os.PRIO_PROCESS, nice_pool.pids[0])
    assert worker_priority == os.getpriority(os.PRIO_PROCESS, 0) + 5
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(energies, expected[1])
    with pytest.raises(ValueError, match="niceness"):
        SolverPool(processes=0, niceness=-1)
