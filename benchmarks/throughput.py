"""Training-step throughput: the methods' training steps, and the library against plain Keras.

UNet (WSL4MIS architecture), 128x128 grayscale, batch 8, 4 classes, the size of
the ACDC benchmark. Every keras_regseg row is the step ``train.py`` runs: the
method's model from its registry record (pCE; GD with the grid or the dense CRF
loss at their defaults) on the library's pipeline (``make_training_dataset``,
dict targets). Plain Keras trains the same architecture with
``SparseCategoricalCrossentropy(ignore_class=255)`` on ``from_tensor_slices``.
The images are photo-like (smooth shading, a blob, a little noise: the dense
CRF's lattice grows with the spread of intensities, which noise would
inflate). Rows are timed in alternation, several rounds; the median images/s
of each is reported, with each regularizer's step overhead over pCE (rloss
reports +58% for its dense CRF loss on a GPU).

    python benchmarks/throughput.py [--quick] [--json PATH]
"""

import statistics
import types

import common
from dense_crf import natural_images
from step_timer import StepTimer

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.methods import registry
from keras_regseg.methods.gd import GDConfig
from keras_regseg.models import build_model

SIDE, BATCH, CLASSES = 128, 8, 4
ROWS = {   # row -> (registry method, its config section)
    "pce": ("pce", None),
    "grid_gd": ("gd", GDConfig(regularizer="grid")),
    "dense_gd": ("gd", GDConfig(regularizer="dense")),
}


def make_data(count, seed=0):
    rng = np.random.RandomState(seed)
    images = natural_images(rng, count, SIDE, 1)
    labels = rng.randint(0, CLASSES, (count, SIDE, SIDE))
    weak = np.where(rng.rand(*labels.shape) < 0.02, labels, 255).astype(np.int32)
    return images, weak


def method_model(row, images, weak):
    """``(model, dataset)`` of a row as ``train.py`` builds them."""
    method, section = ROWS[row]
    network = build_model("unet", num_classes=CLASSES, input_channels=1)
    setup = registry.get(method).setup(types.SimpleNamespace(gd=section), network)
    setup.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=False)
    dataset = make_training_dataset(InMemorySource(images, weak, CLASSES), batch_size=BATCH,
                                    augmentation=None, seed=0, target=setup.targets)
    return setup.model, dataset


def plain_keras_model(images, weak):
    model = build_model("unet", num_classes=CLASSES, input_channels=1)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
                  jit_compile=False)
    dataset = (tf.data.Dataset.from_tensor_slices((images, weak)).shuffle(64, seed=0)
               .repeat().batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    return model, dataset


def images_per_second(model, dataset, steps, skip):
    """Median images/s of ``steps`` batches of ``model.fit`` (first ``skip`` batches dropped)."""
    timer = StepTimer(skip)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    # Per-batch time includes waiting for the input pipeline, as in a real run.
    return BATCH / statistics.median(timer.times)


def main():
    args = common.parser(__doc__.split("\n")[0]).parse_args()
    steps, rounds = (12, 2) if args.quick else (30, 3)
    keras.utils.set_random_seed(0)
    images, weak = make_data(64)
    runs = {row: method_model(row, images, weak) for row in ROWS}
    runs["plain_keras"] = plain_keras_model(images, weak)

    results = {row: [] for row in runs}
    for _ in range(rounds):   # alternate, so drifting machine load hits every row alike
        for row, (model, dataset) in runs.items():
            results[row].append(images_per_second(model, dataset, steps, skip=3))
    speed = {row: statistics.median(values) for row, values in results.items()}
    overhead = {row: speed["pce"] / speed[row] - 1.0 for row in ("grid_gd", "dense_gd")}

    common.print_table(["training step", "images/s (median)", "step time vs pCE"], [
        ["keras_regseg pCE (pipeline + pCE)", speed["pce"], "-"],
        ["keras_regseg Grid-GD", speed["grid_gd"], f"{overhead['grid_gd']:+.0%}"],
        ["keras_regseg Dense-GD", speed["dense_gd"], f"{overhead['dense_gd']:+.0%}"],
        ["plain Keras model.fit (CE)", speed["plain_keras"], "-"],
    ])
    print(f"keras_regseg pCE / plain Keras = {speed['pce'] / speed['plain_keras']:.3f} "
          "(target >= 0.90); Dense-GD overhead target <= +30%")
    common.write_json(args.json, {
        "keras_regseg_images_per_s": speed["pce"], "plain_keras_images_per_s": speed["plain_keras"],
        "ratio": speed["pce"] / speed["plain_keras"],
        "images_per_s": speed, "step_overhead_vs_pce": overhead,
        "side": SIDE, "batch": BATCH, "steps": steps, "rounds": rounds, "quick": args.quick,
    })


if __name__ == "__main__":
    main()
