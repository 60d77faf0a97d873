"""GD in your own ``model.fit``: partial cross-entropy plus a CRF regularizer.

The regularizer needs the image beside the seeds: the targets are a dict of
both, and :class:`~keras_regseg.methods.LossModel` trains the network on the
loss of that dict (the step ``train.py --method gd`` runs).
Run: ``python examples/fit_gd.py``
"""

import keras
import numpy as np
import tensorflow as tf

import keras_regseg as krs
from toy_data import disk_iou, make_data


def main(epochs=20):
    images, scribbles, masks = make_data()
    targets = {"seeds": scribbles, "image": images}
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(32, seed=0).batch(8)
    loss = krs.losses.WeightedSumLoss([krs.losses.PartialCrossEntropy(),
                                       krs.losses.GridCRFLoss(weight=1.0)])   # or DenseCRFLoss()
    network = krs.models.UNet(num_classes=2, input_channels=1)
    model = krs.methods.LossModel(network, loss)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  metrics=[krs.metrics.MeanIoU(num_classes=2)])
    # Dense masks score the epochs (val_mean_iou); training sees the scribbles only.
    validation = (images, {"dense": masks, "image": images})
    model.fit(dataset, epochs=epochs, verbose=2, validation_data=validation)
    iou = disk_iou(np.argmax(network.predict(images, verbose=0), -1), masks)
    print(f"disk IoU against the dense masks: {iou:.3f}")
    return iou


if __name__ == "__main__":
    main()
