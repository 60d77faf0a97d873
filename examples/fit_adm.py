"""ADM in your own ``model.fit``: a graph cut of the regularized loss inside every step.

:class:`ADMModel` wraps the network; its ``train_step`` solves the latent
labeling by alpha-expansion (in worker processes) and trains on pCE plus the
cross-entropy to it. The targets are a dict of the seeds and the image (the
Potts term's edge weights).
Run: ``python examples/fit_adm.py``
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
    model = krs.methods.ADMModel(krs.models.UNet(num_classes=2, input_channels=1))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  jit_compile=False)                     # the solver runs in tf.numpy_function
    model.fit(dataset, epochs=epochs, verbose=2,
              callbacks=[krs.methods.CloseSolverPool()])  # stop the solver workers at the end
    iou = disk_iou(np.argmax(model.network.predict(images, verbose=0), -1), masks)
    print(f"disk IoU against the dense masks: {iou:.3f}")
    return iou


if __name__ == "__main__":
    main()
