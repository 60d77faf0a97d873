"""Alpha-expansion throughput on ACDC-like problems, in 1 and 2 worker processes.

Each problem is a synthetic cardiac MRI slice (K = 4: background, RV, myocardium,
LV): a bright LV disk inside a darker myocardium ring, an RV crescent beside it,
textured background and noise; a probability map made of blurred one-hot
ground truth plus smooth noise (realistic mistakes near boundaries and a few
spurious blobs); and thin scribbles inside each structure (~1-2% of pixels, as
in the ACDC scribbles). Energy as in trust-region stage A: unary weight 1, Potts
weight 1 on contrast weights, 5 iterations, labels restricted to the seeds'
(a balance at which the solver visibly cleans the noisy argmax).

Prints a per-stage breakdown of one solve and the solves per second of
``SolverPool`` with 0 (in-process), 1 and 2 workers at 128x128 and 256x256
(median and best of the repeats), and, as a calibration, how much faster a
trivially parallel loop runs on 2 processes than on 1 on this machine right now
(other jobs on a shared machine take cores).
Last, the trust-region / pCE epoch-time ratio (``tr_over_pce_epoch_time``,
averaged over M epochs, stage A overlapped with training): measured by
``benchmarks/tr_epoch_time.py`` in a fresh process (TensorFlow stays out of
this one); ``--no-epoch-ratio`` skips it.
``--quick`` uses fewer images and repeats; ``--json PATH`` writes the figures
(``solves_per_s_1_worker`` and ``solves_per_s_2_workers`` are at 128x128).

    python benchmarks/solver.py --quick --json /tmp/solver.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import median_time  # noqa: E402  (warm-up call, then the median)
from keras_regseg.solvers import SolverPool  # noqa: E402
from keras_regseg.solvers import alpha_expansion as A  # noqa: E402
from keras_regseg.solvers import energy as E  # noqa: E402

NUM_CLASSES = 4
SETTINGS = dict(unary_weight=1.0, potts_weight=1.0, max_iterations=5)


def acdc_like_problem(size, rng):
    """One synthetic ACDC-like problem: ``(probabilities [S,S,4], image [S,S,1], seeds [S,S])``."""
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, 2)
    r_lv = rng.uniform(0.08, 0.13)
    r_myo = r_lv + rng.uniform(0.04, 0.06)
    dist = np.hypot(yy - cy, xx - cx)
    truth = np.zeros((size, size), np.int64)
    rv_center = (cy + rng.uniform(-0.04, 0.04), cx - r_myo - rng.uniform(0.02, 0.06))
    rv = (((yy - rv_center[0]) / (1.6 * r_myo)) ** 2 + ((xx - rv_center[1]) / (0.9 * r_myo)) ** 2) < 1
    truth[rv & (dist > r_myo)] = 1
    truth[dist < r_myo] = 2
    truth[dist < r_lv] = 3

    intensity = np.array([0.35, 0.75, 0.25, 0.85])[truth]
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 16) * 2.0
    image = intensity + 0.12 * texture * (truth == 0) + rng.normal(scale=0.05, size=(size, size))
    image = np.clip(image, 0, 1).astype(np.float32)[..., None]

    onehot = np.eye(NUM_CLASSES)[truth]
    logits = 5.0 * ndimage.gaussian_filter(onehot, (size / 128, size / 128, 0))
    white = rng.normal(size=(size, size, NUM_CLASSES))
    smooth_noise = ndimage.gaussian_filter(white, (size / 24, size / 24, 0))
    logits += 1.5 * smooth_noise / smooth_noise.std() + 0.7 * rng.normal(size=logits.shape)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = (probabilities / probabilities.sum(-1, keepdims=True)).astype(np.float32)

    seeds = np.full((size, size), 255, np.int32)
    for label in range(NUM_CLASSES):
        inner = ndimage.binary_erosion(truth == label, iterations=max(2, size // 32))
        rows = np.flatnonzero(inner.any(1))
        if rows.size == 0:
            continue
        for row in rows[:: max(1, rows.size // 2)][:2]:  # one or two horizontal strokes
            seeds[row, inner[row]] = label
    return probabilities, image, seeds


def make_batch(size, count, seed=0):
    rng = np.random.default_rng(seed)
    problems = [acdc_like_problem(size, rng) for _ in range(count)]
    return [np.stack(parts) for parts in zip(*problems)]


_BUSY_LOOP = "x = 0\nfor i in range(4_000_000):\n    x += i"


def machine_parallel_speedup(repeats):
    """Speed-up of 2 over 1 process on a trivially parallel busy loop, on this machine now.

    On a shared machine other jobs take cores: this calibrates what 2 workers can gain.
    """

    def run(processes):
        start = time.perf_counter()
        children = [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]) for _ in range(processes)]
        for child in children:
            child.wait()
        return time.perf_counter() - start

    ratios = [2 * run(1) / run(2) for _ in range(repeats)]
    return statistics.median(ratios)


def cpu_seconds(pids):
    """CPU time (user + system) used so far by the processes ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def breakdown(probabilities, image, seeds, repeats):
    """Median milliseconds per stage of one in-process solve."""
    stages = {}

    def timed(name, function):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            value = function()
            times.append(time.perf_counter() - start)
        stages[name] = 1000 * statistics.median(times)
        return value

    p, im, s = timed("check inputs", lambda: E.check_inputs(probabilities, image, seeds))
    w = timed("contrast weights", lambda: E.contrast_edge_weights(im))
    labels = E.present_labels(s, NUM_CLASSES)
    start = timed("start labeling + energy", lambda: (
        E.start_labeling(p, s, labels),
        E.potts_energy(E.start_labeling(p, s, labels), p, s, w),
    )[0])
    problem = timed("quantized problem", lambda: E.build_gco_problem(p, s, w, labels, start, 1.0, 1.0))
    timed("gco (default, cold start)", lambda: A.run_expansion(problem, 5, warm_start=False))
    timed("gco (warm start)", lambda: A.run_expansion(problem, 5, warm_start=True))
    solved = A._to_image(A.run_expansion(problem, 5), problem, s.shape)
    timed("final energy", lambda: E.potts_energy(solved, p, s, w))
    whole = median_time(lambda: A.solve_alpha_expansion(probabilities, image, seeds), repeats)
    stages["whole solve"] = 1000 * whole
    return stages


def measure_pools(size, count, repeats):
    """Rows ``(size, workers, ms/image, solves/s, best solves/s, CPU ms/image)`` for
    pools of 0 (in-process), 1 and 2 workers on ``count`` problems of ``size``."""
    batch = make_batch(size, count)
    # Repeats alternate between the pools so that all see the same load on a
    # shared machine: the ratio between them is what this measures best.
    pools = {processes: SolverPool(processes, **SETTINGS) for processes in (0, 1, 2)}
    times = {processes: [] for processes in pools}
    cpu = {processes: 0.0 for processes in pools}
    try:
        for pool in pools.values():
            pool.solve_batch(*batch)  # warm-up: worker start-up, imports, caches
        for _ in range(repeats):
            for processes, pool in pools.items():
                cpu_start = time.process_time() + cpu_seconds(pool.pids)
                start = time.perf_counter()
                pool.solve_batch(*batch)
                times[processes].append(time.perf_counter() - start)
                cpu[processes] += time.process_time() + cpu_seconds(pool.pids) - cpu_start
    finally:
        for pool in pools.values():
            pool.close()
    # CPU time counts the parent and the workers: if it stays flat from 1 to 2
    # workers, the pool adds no work and 2 free cores give close to 2x.
    rows = []
    for processes, samples in times.items():
        seconds, cpu_ms = statistics.median(samples), 1000 * cpu[processes] / (count * repeats)
        rows.append((size, processes, 1000 * seconds / count, count / seconds, count / min(samples), cpu_ms))
    return rows


def print_table(rows):
    columns = ("size", 6), ("workers", 8), ("ms/image", 10), ("solves/s", 10), ("best solves/s", 14)
    columns += (("CPU ms/image", 13),)
    print("\n" + " ".join(f"{name:>{width}}" for name, width in columns))
    for size, processes, ms, rate, best, cpu_ms in rows:
        label = "in-proc" if processes == 0 else str(processes)
        print(f"{size:>6} {label:>8} {ms:10.1f} {rate:10.1f} {best:14.1f} {cpu_ms:13.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (< 1 min)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--no-epoch-ratio", action="store_true",
                        help="skip the trust-region / pCE epoch-time ratio (minutes of training)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    counts = {128: 12 if args.quick else 24, 256: 4 if args.quick else 12}

    results = {"settings": dict(SETTINGS, classes=NUM_CLASSES, repeats=repeats, images=counts)}
    probabilities, images, seeds = make_batch(128, 1, seed=123)
    stages = breakdown(probabilities[0], images[0], seeds[0], repeats)
    results["breakdown_ms_128"] = stages
    print("one 128x128 solve, median ms per stage:")
    for name, ms in stages.items():
        print(f"  {name:<30}{ms:8.2f}")

    rows = [row for size, count in counts.items() for row in measure_pools(size, count, repeats)]
    for size, processes, _, rate, best, cpu_ms in rows:
        results[f"solves_per_s_{size}_{processes}_workers"] = rate
        results[f"best_solves_per_s_{size}_{processes}_workers"] = best
        results[f"cpu_ms_per_image_{size}_{processes}_workers"] = cpu_ms
    results["solves_per_s_1_worker"] = results["solves_per_s_128_1_workers"]
    results["solves_per_s_2_workers"] = results["solves_per_s_128_2_workers"]
    for size in counts:
        results[f"speedup_2_over_1_worker_{size}"] = (
            results[f"solves_per_s_{size}_2_workers"] / results[f"solves_per_s_{size}_1_workers"]
        )
    results["machine_parallel_speedup"] = machine_parallel_speedup(repeats)
    results["load_average_1min"] = os.getloadavg()[0]

    print_table(rows)
    for size in counts:
        print(f"speed-up 2 vs 1 worker at {size}x{size}: {results[f'speedup_2_over_1_worker_{size}']:.2f}x")
    print(
        f"the same machine now runs a trivially parallel loop "
        f"{results['machine_parallel_speedup']:.2f}x faster on 2 processes than on 1"
    )
    print(
        f"(machine: {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable, "
        f"load average {results['load_average_1min']:.1f} at the end)"
    )
    if not args.no_epoch_ratio:
        results.update(epoch_time_ratio(args.quick))
        print(f"trust-region / pCE epoch time (stage A overlapped): "
              f"{results['tr_over_pce_epoch_time']:.3f}x; stage A blocking: "
              f"{results['tr_blocking_over_pce_epoch_time']:.3f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def epoch_time_ratio(quick):
    """The figures of ``tr_epoch_time.py`` (run in a subprocess: it imports TensorFlow)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tr_epoch_time.py")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ratio.json")
        subprocess.run([sys.executable, script, "--json", path] + (["--quick"] if quick else []),
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as handle:
            figures = json.load(handle)
    return {"tr_over_pce_epoch_time": figures["tr_over_pce_epoch_time"],
            "tr_blocking_over_pce_epoch_time": figures["tr_blocking_over_pce_epoch_time"],
            "epoch_time": figures}


if __name__ == "__main__":
    main()
