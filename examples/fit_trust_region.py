"""The robust trust region in your own ``model.fit``.

``trust_region_pieces`` gives the three pieces: the stage-B model to fit, the
stage-A callback (graph cuts near the current prediction, before training and
then every ``every`` epochs) and the proposal store the data pipeline reads the
proposals from (they are augmented with the images). Stage A reads the
training images by index, so the data is a source (here from arrays).
Run: ``python examples/fit_trust_region.py``
"""

import keras
import numpy as np

import keras_regseg as krs
from toy_data import disk_iou, make_data


def main(epochs=20):
    images, scribbles, masks = make_data()
    source = krs.data.InMemorySource(images, scribbles, num_classes=2)
    network = krs.models.UNet(num_classes=2, input_channels=1)
    model, stage_a, store = krs.methods.trust_region_pieces(network, source, every=2,
                                                            progress=False)
    dataset = krs.data.make_training_dataset(
        source, batch_size=8, seed=0, proposals=store.lookup,
        target=krs.data.DictTargets(("seeds", "proposals")))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
    model.fit(dataset, epochs=epochs, steps_per_epoch=4, verbose=2,
              callbacks=[stage_a, krs.methods.CloseSolverPool()])
    iou = disk_iou(np.argmax(network.predict(images, verbose=0), -1), masks)
    print(f"disk IoU against the dense masks: {iou:.3f}")
    return iou


if __name__ == "__main__":
    main()
