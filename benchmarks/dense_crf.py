"""Forward + backward time of the dense and grid CRF losses, and the lattice's error against brute force.

Cases: batch 12 at 128x128 and 256x256, grayscale and RGB, K = 4 and 21, one
``tf.function`` computing the loss and its gradient with respect to the logits
(the whole training-time cost of the regularizer), median after warm-up. The
dense loss runs with its defaults (sigma_rgb 15, sigma_xy 100, scale 0.5);
the headline case (256x256, K = 4, grayscale) is also timed at full scale to
compare with the rloss C++ filter (0.19 s full scale, 0.06 s at scale 0.5 on
2 threads), and split into stages there (lattice, filtering, calibration,
the rest of the loss; 21 repeats). Growth: grayscale K = 4 from 64x64 to
512x512 (``--quick``: to 256x256), with the log-log slope of time against
pixels (1 = linear).

Accuracy: the relative error ``|W S - (W S)_exact| / |(W S)_exact|`` of the
operator the loss uses (read from its gradient, ``-2 W S``) against the O(N^2)
Gaussian sum, on 32x32 synthetic images (48x48 without ``--quick``) with
sigma_xy scaled to keep the default's ratio of image size to bandwidth
(128 px filtered / 50 px), grayscale and RGB; the JSON's
``max_relative_error_vs_bruteforce`` is the worst case.

Memory: the peak resident memory that one forward + backward adds to the
process (its high-water mark during the call, reset just before it, minus its
resident memory then; each case in a fresh process: its first call, traced before), at batch 12, 256x256 and 512x512, K = 4 and 21 (``--quick``:
K = 4), with the growth from 256 to 512 (4x the pixels: 4x is linear).

Images are synthetic but photo-like: smooth shading, a blob-shaped object of
another colour, a little noise.

    python benchmarks/dense_crf.py --quick --json /tmp/dense_crf.json
"""

import multiprocessing
import os

import common
import numpy as np
import tensorflow as tf
from scipy import ndimage

from keras_regseg.losses.dense_crf import DenseCRFLoss, dense_crf_energy, dense_crf_features
from keras_regseg.losses.grid_crf import GridCRFLoss
from keras_regseg.losses.permutohedral import PermutohedralLattice, gaussian_filter_bruteforce
from keras_regseg.losses.targets import pack_targets

BATCH = 12


def natural_images(rng, batch, side, channels):
    images = []
    for _ in range(batch):
        shade = ndimage.gaussian_filter(rng.rand(side, side, channels), (side / 16, side / 16, 0))
        shade = (shade - shade.min()) / (np.ptp(shade) + 1e-9)
        blob = ndimage.gaussian_filter(rng.rand(side, side), side / 10) > 0.5
        image = 0.5 * shade + 0.4 * blob[..., None] * rng.rand(channels) + 0.03 * rng.rand(side, side, channels)
        images.append(np.clip(image, 0, 1))
    return np.stack(images).astype(np.float32)


def batch_case(rng, side, channels, classes):
    """``(y_true, logits)`` of a batch: photo-like images, no seeds, random logits."""
    images = natural_images(rng, BATCH, side, channels)
    y_true = pack_targets(np.full((BATCH, side, side), 255), images)
    return y_true, tf.constant(rng.randn(BATCH, side, side, classes).astype(np.float32))


def loss_and_gradient(loss):
    """A ``tf.function`` ``(y_true, logits) -> (loss, d loss / d logits)``."""

    @tf.function
    def forward_backward(y_true, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(y_true, logits)
        return value, tape.gradient(value, logits)

    return forward_backward


def step_time(loss, side, channels, classes, repeats, rng):
    """Median seconds of loss + gradient for one batch."""
    y_true, logits = batch_case(rng, side, channels, classes)
    forward_backward = loss_and_gradient(loss)

    def run():
        value, gradient = forward_backward(y_true, logits)
        gradient.numpy()
        return float(value)

    return common.median_time(run, repeats, warmup=2)


def stage_times(side, scale_factor, repeats, rng):
    """Cumulative median seconds of the dense loss's stages on the headline case (gray, K = 4).

    ``lattice``: building the lattice of the filtered image; ``+ filter``: and
    filtering the K + 1 channels the loss filters (probabilities and the mask);
    ``+ calibration``: and the exact row sums of the calibration; ``whole loss``:
    forward + backward of :class:`DenseCRFLoss` (adds the softmax, the resizing,
    the energy and their gradients).
    """
    y_true, logits = batch_case(rng, side, 1, 4)
    filtered = int(side * scale_factor)
    images = natural_images(rng, BATCH, filtered, 1)
    features = dense_crf_features(tf.constant(images), 15.0, 100.0 * scale_factor)
    values = tf.constant(rng.rand(BATCH, filtered * filtered, 5).astype(np.float32))

    @tf.function
    def lattice_only(features):
        lattice = PermutohedralLattice(features)
        return (lattice.vertex_index, lattice.self_response,
                lattice.forward_neighbour, lattice.backward_neighbour)

    @tf.function
    def with_filter(features, values):
        return PermutohedralLattice(features).filter(values)

    @tf.function
    def with_calibration(features, values):
        lattice = PermutohedralLattice(features)
        filtered_values = lattice.filter(values)
        return filtered_values, lattice.calibration_scale(filtered_values[..., 4:], values[..., 4:])

    forward_backward = loss_and_gradient(DenseCRFLoss(sigma_xy=100.0, scale_factor=scale_factor))
    runs = {"lattice": lambda: lattice_only(features),
            "+ filter": lambda: with_filter(features, values),
            "+ calibration": lambda: with_calibration(features, values),
            "whole loss": lambda: forward_backward(y_true, logits)}
    return {name: common.median_time(lambda: tf.nest.map_structure(np.asarray, run()), repeats, warmup=2)
            for name, run in runs.items()}


def _peak_memory_case(side, classes, queue):
    """(In a fresh process) MB that one dense-loss forward + backward adds to the peak RSS."""
    y_true, logits = batch_case(np.random.RandomState(0), side, 1, classes)
    forward_backward = loss_and_gradient(DenseCRFLoss(sigma_xy=100.0, scale_factor=0.5))
    forward_backward.get_concrete_function(y_true, logits)   # tracing is not the step
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the high-water mark to now
        f.write("5")
    before = _status_kib("VmRSS")
    forward_backward(y_true, logits)[1].numpy()
    queue.put((_status_kib("VmHWM") - before) / 1024.0)


def _status_kib(field):
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory_mb(side, classes):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_memory_case, args=(side, classes, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    return result


def relative_error(side, channels, rng, samples=5):
    """Worst relative error of the loss's W S against the exact Gaussian sum over a few images."""
    sigma_xy, sigma_rgb = 50.0 * side / 128.0, 15.0
    worst = 0.0
    for _ in range(samples):
        images = natural_images(rng, 1, side, channels).astype(np.float64)
        probs = tf.nn.softmax(rng.randn(1, side, side, 4) * 2)
        with tf.GradientTape() as tape:
            tape.watch(probs)
            total = tf.reduce_sum(dense_crf_energy(probs, images, None, sigma_rgb, sigma_xy))
        ws = -0.5 * tape.gradient(total, probs).numpy().reshape(1, -1, 4)
        features = dense_crf_features(tf.constant(images), sigma_rgb, sigma_xy)
        exact = gaussian_filter_bruteforce(features, tf.reshape(probs, [1, -1, 4])).numpy()
        worst = max(worst, float(np.linalg.norm(ws - exact) / np.linalg.norm(exact)))
    return worst


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    rng = np.random.RandomState(0)
    repeats = 3 if args.quick else 11
    # rloss's own settings (the peer measured at them), not the size-relative defaults.
    dense, grid = DenseCRFLoss(sigma_xy=100.0, scale_factor=0.5), GridCRFLoss()

    measured = {}

    def timed(kind, side, channels, classes):
        key = (kind, side, channels, classes)
        if key not in measured:
            loss = {"dense": dense, "grid": grid, "dense_full_scale": DenseCRFLoss(sigma_xy=100.0, scale_factor=1.0)}[kind]
            measured[key] = step_time(loss, side, channels, classes, repeats, rng)
        return measured[key]

    cases, grid_cases = [], []
    for side in (128, 256):
        for channels in (1, 3):
            for classes in (4, 21):
                if args.quick and classes == 21 and side == 256:
                    continue
                row = dict(side=side, batch=BATCH, channels=channels, classes=classes)
                cases.append(dict(row, seconds=timed("dense", side, channels, classes)))
                grid_cases.append(dict(row, seconds=timed("grid", side, channels, classes)))
    full_scale = timed("dense_full_scale", 256, 1, 4)
    # The headline case against rloss, by stage, with more repeats than the grid of cases.
    stages = {str(scale): stage_times(256, scale, 5 if args.quick else 21, rng) for scale in (0.5, 1.0)}

    growth = []
    for side in (64, 128, 256) if args.quick else (64, 128, 256, 512):
        growth.append(dict(side=side, batch=BATCH, channels=1, classes=4, seconds=timed("dense", side, 1, 4),
                           grid_seconds=timed("grid", side, 1, 4)))
    pixels = np.log([g["side"] ** 2 for g in growth])
    slope = float(np.polyfit(pixels, np.log([g["seconds"] for g in growth]), 1)[0])
    grid_slope = float(np.polyfit(pixels, np.log([g["grid_seconds"] for g in growth]), 1)[0])

    memory = [dict(side=side, batch=BATCH, classes=classes, peak_mb=peak_memory_mb(side, classes))
              for classes in ((4,) if args.quick else (4, 21)) for side in (256, 512)]
    memory_growth = {str(classes): memory[i + 1]["peak_mb"] / memory[i]["peak_mb"]
                     for i, classes in zip(range(0, len(memory), 2), (4, 21))}

    error_side = 32 if args.quick else 48
    # Images of their own seed: the same ones whatever was timed before.
    errors = {f"{'rgb' if c == 3 else 'gray'}_{error_side}":
              relative_error(error_side, c, np.random.RandomState(c)) for c in (1, 3)}

    print(f"Dense CRF loss (scale 0.5) and grid CRF loss, forward + backward, batch {BATCH}, median s")
    common.print_table(
        ["side", "channels", "K", "dense s", "grid s"],
        [[c["side"], c["channels"], c["classes"], c["seconds"], g["seconds"]] for c, g in zip(cases, grid_cases)])
    print(f"\ndense, 256x256, gray, K=4 at full scale (scale_factor 1.0): {full_scale:.3f} s")
    print(f"\nStages of the headline case (256x256, gray, K=4, batch {BATCH}), cumulative median s "
          "(rloss C++: 0.06 s at scale 0.5, 0.19 s at 1.0):")
    common.print_table(["scale"] + list(stages["0.5"]), [[k] + list(v.values()) for k, v in stages.items()])
    print("\nGrowth with image size (gray, K=4):")
    common.print_table(["side", "dense s", "grid s"], [[g["side"], g["seconds"], g["grid_seconds"]] for g in growth])
    print(f"log-log slope vs pixels: dense {slope:.2f}, grid {grid_slope:.2f} (1 = linear)")
    print("\nPeak memory added by one forward + backward (gray, scale 0.5):")
    common.print_table(["side", "K", "MB"], [[m["side"], m["classes"], m["peak_mb"]] for m in memory])
    print("growth 256 -> 512 (4x pixels):",
          ", ".join(f"K={k} {v:.2f}x" for k, v in memory_growth.items()))
    print("\nRelative error of W S vs brute force:",
          ", ".join(f"{k} {v:.2%}" for k, v in errors.items()))

    common.write_json(args.json, {
        "cases": cases,
        "grid_cases": grid_cases,
        "max_relative_error_vs_bruteforce": max(errors.values()),
        "relative_error_vs_bruteforce": errors,
        "dense_full_scale_256_gray_k4_seconds": full_scale,
        "headline_stages_cumulative_seconds": stages,
        "rloss_cpp_seconds": {"0.5": 0.06, "1.0": 0.19},
        "growth": growth,
        "growth_loglog_slope": {"dense": slope, "grid": grid_slope},
        "peak_memory": memory,
        "peak_memory_growth_256_to_512": memory_growth,
        "settings": {"sigma_rgb": 15.0, "sigma_xy": 100.0, "scale_factor": 0.5, "calibration_samples": 64,
                     "quick": bool(args.quick)},
        "cpus": len(os.sched_getaffinity(0)),
    })


if __name__ == "__main__":
    main()
