"""Train a keras_regseg UNet with your own ``model.fit`` on your own ``tf.data`` pipeline.

The data here is made up (bright disks on a dark background, one scribble per
region); replace it with your images and scribbles. Run:

    python examples/fit_your_own_data.py
"""

import keras
import numpy as np
import tensorflow as tf

import keras_regseg as krs
from toy_data import disk_iou, make_data


def main(epochs=20):
    images, scribbles, masks = make_data()
    # compile(loss=...) takes targets shaped like the network's output: the seeds and
    # the image (which regularized losses read) packed into one tensor. The dict form,
    # {"seeds": ..., "image": ...}, trains through krs.methods.LossModel (fit_gd.py).
    targets = krs.losses.pack_targets(scribbles, images)
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(32, seed=0).batch(8)

    model = krs.models.UNet(num_classes=2, input_channels=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=krs.losses.PartialCrossEntropy(), jit_compile=False)
    model.fit(dataset, epochs=epochs, verbose=2)

    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    accuracy = float((predicted == masks).mean())
    iou = disk_iou(predicted, masks)
    print(f"against the dense masks the network never saw: pixel accuracy {accuracy:.3f}, "
          f"disk IoU {iou:.3f}")
    return iou


if __name__ == "__main__":
    main()
