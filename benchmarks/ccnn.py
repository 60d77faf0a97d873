"""CCNN dual solve time per image, batched, on the coarse output grid.

Cases: coarse grids of 41x41 (a 321 crop at stride 8, the paper's setting) and
64x64, K = 4 (ACDC-like) and K = 21 (Pascal VOC), batch 12, the paper's tag
constraints (suppression, foreground >= 5 %, background in [30 %, 70 %]) at
the default solver settings (tolerance 1e-3, at most 3000 iterations).

Problems: network-like scores made of smooth random class fields (upsampled
6x6 noise, amplitude 3) plus per-image class biases, background favoured by
+4, so that bounds bind in most images: absent classes carry mass to suppress, some tagged
classes have almost none. Tags: background and 1-3 foreground classes for
K = 21, background and 2-3 structures for K = 4.

A timing is one whole solve of a batch (setup, iterations, the latent P
fetched to numpy), median of the repeats after a warm-up (which includes XLA
compilation), divided by the batch size; the builds are timed alternately.
``ms_per_image`` is the default XLA build; ``graph_ms_per_image`` the same
solver as a plain TF graph; ``ms_per_image_50_iterations`` the XLA build made
to run 50 iterations (the paper: its solver "usually converges within fewer
than 50 iterations" and takes under 30 ms per image on one CPU core).

    python benchmarks/ccnn.py --quick --json /tmp/ccnn.json
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from keras_regseg.methods.ccnn_constraints import tag_constraints  # noqa: E402
from keras_regseg.methods.ccnn_dual import solve_dual  # noqa: E402

SIDES = (41, 64)
CLASSES = (4, 21)
BATCH = 12


def network_like_logits(rng, batch, side, classes):
    """Smooth random class score fields ``[B, side, side, K]`` with per-image biases."""
    coarse = rng.normal(size=(batch, 6, 6, classes)).astype(np.float32)
    fields = tf.image.resize(coarse, (side, side), method="bicubic").numpy() * 3.0
    fields += rng.normal(size=(batch, 1, 1, classes)) * 2.0
    fields[..., 0] += 4.0
    return fields.astype(np.float32)


def random_tags(rng, batch, classes):
    """Background plus 1-3 (K = 21) or 2-3 (K = 4) foreground classes per image."""
    tags = np.zeros((batch, classes), np.float32)
    tags[:, 0] = 1.0
    low = 1 if classes > 4 else 2
    for image in range(batch):
        count = rng.integers(low, min(3, classes - 1) + 1)
        tags[image, rng.choice(np.arange(1, classes), size=count, replace=False)] = 1.0
    return tags


def run_case(side, classes, repeats, problems, seed=0):
    """Median ms per image over ``problems`` random batches, XLA and plain graph.

    The two builds are timed alternately, so that a busy machine slows both alike.
    """
    rng = np.random.default_rng(seed)
    builds = {"ms_per_image": {}, "graph_ms_per_image": {"jit_compile": False},
              # Fifty iterations whatever the convergence (the paper's "under 50").
              "ms_per_image_50_iterations": {"max_iterations": 50, "tolerance": 1e-9}}
    times = {key: [] for key in builds}
    iterations, converged = [], []
    for _ in range(problems):
        logits = tf.constant(network_like_logits(rng, BATCH, side, classes))
        constraints = tag_constraints(random_tags(rng, BATCH, classes))
        solves = {key: (lambda options=options: solve_dual(logits, constraints, **options)
                        .latent.numpy()) for key, options in builds.items()}
        for solve in solves.values():   # warm-up, XLA compilation included
            solve()
            solve()
        for _ in range(repeats):
            for key, solve in solves.items():
                times[key].append(common.median_time(solve, 1, warmup=0))
        solution = solve_dual(logits, constraints)
        iterations.append(solution.iterations.numpy())
        converged.append(solution.converged.numpy())
    result = {"side": side, "classes": classes, "batch": BATCH}
    result.update({key: 1000.0 * float(np.median(t)) / BATCH for key, t in times.items()})
    result.update(mean_iterations=float(np.mean(iterations)),
                  max_iterations=int(np.max(iterations)),
                  converged_fraction=float(np.mean(converged)))
    return result


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    repeats, problems = (5, 1) if args.quick else (15, 3)
    cases = [run_case(side, classes, repeats, problems)
             for side in SIDES for classes in CLASSES]
    common.print_table(
        ["side", "K", "batch", "ms/image (XLA)", "ms/image (graph)", "mean it", "max it",
         "converged", "ms/image, 50 it"],
        [[c["side"], c["classes"], c["batch"], c["ms_per_image"], c["graph_ms_per_image"],
          c["mean_iterations"], c["max_iterations"], c["converged_fraction"],
          c["ms_per_image_50_iterations"]] for c in cases])
    print("target: under 3 ms per image batched (paper: under 30 ms per image, one CPU core)")
    common.write_json(args.json, {"cases": cases, "quick": bool(args.quick),
                                  "tolerance": 1e-3, "max_iterations": 3000})


if __name__ == "__main__":
    main()
