"""Training-step throughput: keras_regseg's training path versus plain Keras ``model.fit``.

UNet (WSL4MIS architecture), 128x128 grayscale, batch 8, 4 classes. Both sides
train the same architecture on the same in-memory data; keras_regseg goes
through its own pipeline (``make_training_dataset``, packed targets,
``PartialCrossEntropy``), plain Keras through ``from_tensor_slices`` and
``SparseCategoricalCrossentropy(ignore_class=255)``. The two are timed in
alternation, several rounds, and the median images/s of each is reported.

    python benchmarks/throughput.py [--quick] [--json PATH]
"""

import statistics

import common
from step_timer import StepTimer

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.losses import PartialCrossEntropy
from keras_regseg.models import build_model

SIDE, BATCH, CLASSES = 128, 8, 4


def make_data(count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((count, SIDE, SIDE, 1), dtype=np.float32)
    labels = rng.integers(0, CLASSES, (count, SIDE, SIDE)).astype(np.int32)
    weak = np.where(rng.random(labels.shape) < 0.02, labels, 255).astype(np.int32)
    return images, weak


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

    ours = build_model("unet", num_classes=CLASSES, input_channels=1)
    ours.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=PartialCrossEntropy(),
                 jit_compile=False)
    ours_data = make_training_dataset(InMemorySource(images, weak, CLASSES), batch_size=BATCH,
                                      augmentation=None, seed=0)

    plain = build_model("unet", num_classes=CLASSES, input_channels=1)
    plain.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
                  jit_compile=False)
    plain_data = (tf.data.Dataset.from_tensor_slices((images, weak)).shuffle(64, seed=0)
                  .repeat().batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    results = {"keras_regseg": [], "plain_keras": []}
    for _ in range(rounds):   # alternate, so drifting machine load hits both alike
        results["keras_regseg"].append(images_per_second(ours, ours_data, steps, skip=3))
        results["plain_keras"].append(images_per_second(plain, plain_data, steps, skip=3))
    ours_ips = statistics.median(results["keras_regseg"])
    plain_ips = statistics.median(results["plain_keras"])

    common.print_table(["path", "images/s (median)", "rounds"], [
        ["keras_regseg (pipeline + pCE)", ours_ips, len(results["keras_regseg"])],
        ["plain Keras model.fit", plain_ips, len(results["plain_keras"])],
    ])
    print(f"keras_regseg / plain Keras = {ours_ips / plain_ips:.3f} (target >= 0.90)")
    common.write_json(args.json, {
        "keras_regseg_images_per_s": ours_ips, "plain_keras_images_per_s": plain_ips,
        "ratio": ours_ips / plain_ips, "side": SIDE, "batch": BATCH, "steps": steps,
        "rounds": rounds, "quick": args.quick,
    })


if __name__ == "__main__":
    main()
