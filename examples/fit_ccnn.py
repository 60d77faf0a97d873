"""CCNN in your own ``model.fit``: scribbles plus each image's rough class sizes.

Targets are a dict: ``seeds`` (scribbles, kept exactly) and ``sizes`` (each
class's fraction of the image, held within 10 %); ``tags``, ``size_bits``,
``box_masks``/``box_classes`` work the same way (see ``CCNNModel``).
Run: ``python examples/fit_ccnn.py``
"""

import keras
import numpy as np
import tensorflow as tf

import keras_regseg as krs
from toy_data import disk_iou, make_data


def main(epochs=20):
    images, scribbles, masks = make_data()
    sizes = np.stack([(masks == k).mean(axis=(1, 2)) for k in (0, 1)], -1).astype(np.float32)
    targets = {"seeds": scribbles, "sizes": sizes}   # rough sizes would do: size_margin
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(32, seed=0).batch(8)
    model = krs.methods.CCNNModel(krs.models.UNet(num_classes=2, input_channels=1),
                                  downscale=4, size_margin=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
    model.fit(dataset, epochs=epochs, verbose=2)
    iou = disk_iou(np.argmax(model.network.predict(images, verbose=0), -1), masks)
    print(f"disk IoU against the dense masks: {iou:.3f}")
    return iou


if __name__ == "__main__":
    main()
