"""Train a keras_regseg UNet with your own ``model.fit`` on your own ``tf.data`` pipeline.

The data here is made up (bright disks on a dark background, one scribble per
region); replace it with your images and scribbles. Run:

    python examples/fit_your_own_data.py
"""

import keras
import numpy as np
import tensorflow as tf

import keras_regseg as krs

IGNORE = krs.data.spec.IGNORE_INDEX


def make_data(count=32, size=32, seed=0):
    """Images with a bright disk, and scribbles: one stroke in the disk, one in the background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((count, size, size, 1), np.float32)
    scribbles = np.full((count, size, size), IGNORE, np.int32)
    masks = np.zeros((count, size, size), np.int32)
    for i in range(count):
        cy, cx, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(5, 9))]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        masks[i] = disk
        images[i, ..., 0] = 0.2 + 0.6 * disk + rng.normal(0, 0.05, (size, size))
        scribbles[i, cy, cx - r // 2:cx + r // 2] = 1       # a stroke inside the disk
        scribbles[i, 1, 2:size - 2] = 0                      # a stroke in the background
    return np.clip(images, 0, 1), scribbles, masks


def main(epochs=20):
    images, scribbles, masks = make_data()
    # Losses read the label map from channel 0 of y_true; regularized losses also
    # read the image from the other channels, so pack both.
    targets = krs.losses.pack_targets(scribbles, images)
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(32, seed=0).batch(8)

    model = krs.models.UNet(num_classes=2, input_channels=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=krs.losses.PartialCrossEntropy(), jit_compile=False)
    model.fit(dataset, epochs=epochs, verbose=2)

    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    accuracy = float((predicted == masks).mean())
    disk_iou = float(((predicted == 1) & (masks == 1)).sum() / ((predicted == 1) | (masks == 1)).sum())
    print(f"against the dense masks the network never saw: pixel accuracy {accuracy:.3f}, "
          f"disk IoU {disk_iou:.3f}")
    return disk_iou


if __name__ == "__main__":
    main()
