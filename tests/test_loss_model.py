"""LossModel and dict targets: the training step of pCE, full, entropy and GD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import DictTargets, make_training_dataset
from keras_regseg.losses import (DenseCRFLoss, GridCRFLoss, PartialCrossEntropy, WeightedSumLoss,
                                 pack_targets, unpack_targets)
from keras_regseg.losses.entropy import EntropyLoss
from keras_regseg.losses.robust_ce import unpack_proposal_targets
from keras_regseg.methods.loss_model import LossModel


def tiny_network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((None, None, 1)),
                             keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
                             keras.layers.Dropout(0.2),
                             keras.layers.Conv2D(3, 1)])


def source():
    rng = np.random.default_rng(0)
    images = rng.random((8, 24, 24, 1)).astype("float32")
    seeds = rng.integers(0, 3, (8, 24, 24))
    seeds[rng.random((8, 24, 24)) < 0.9] = 255
    return InMemorySource(images, seeds, num_classes=3)


LOSSES = {
    "pce": PartialCrossEntropy,
    "grid": lambda: WeightedSumLoss([PartialCrossEntropy(), GridCRFLoss(weight=1.0)]),
    "dense": lambda: WeightedSumLoss([PartialCrossEntropy(), DenseCRFLoss(sigma_xy=5.0)]),
    "entropy": lambda: WeightedSumLoss([PartialCrossEntropy(), EntropyLoss(0.1)]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_dict_targets_train_as_a_compiled_loss_on_packed_ones(name):
    """The methods moved from compile(loss=...) to LossModel: the same weights after training
    (pCE bit for bit; a loss of several terms may round differently in its own graph)."""
    data = source()
    packed = make_training_dataset(data, batch_size=4, seed=3, augmentation=None)
    as_dict = make_training_dataset(data, batch_size=4, seed=3, augmentation=None,
                                    target=DictTargets(("seeds", "image")))
    compiled = tiny_network()
    compiled.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=LOSSES[name](),
                     jit_compile=False)
    compiled_history = compiled.fit(packed, epochs=2, steps_per_epoch=3, verbose=0)
    model = LossModel(tiny_network(), LOSSES[name]())
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(as_dict, epochs=2, steps_per_epoch=3, verbose=0)
    for expected, got in zip(compiled.get_weights(), model.network.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=0, atol=0 if name == "pce" else 1e-6)
    assert history.history["loss"] == pytest.approx(compiled_history.history["loss"], rel=1e-6)


def test_a_loss_model_reloads_in_safe_mode_and_trains_on(tmp_path):
    data = source()
    dataset = make_training_dataset(data, batch_size=4, seed=0,
                                    target=DictTargets(("seeds", "image")))
    model = LossModel(tiny_network(), LOSSES["grid"]())
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(reloaded.loss_fn, WeightedSumLoss)
    images = data.load(0)["image"][None]
    np.testing.assert_allclose(reloaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)
    reloaded.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    assert int(reloaded.optimizer.iterations) == 4


def test_a_loss_model_refuses_what_is_not_a_loss():
    with pytest.raises(TypeError, match="keras.losses.Loss"):
        LossModel(tiny_network(), "mse")


def test_the_pipeline_gives_the_dict_of_the_keys_asked_for():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (4, 16, 16))
    seeds = np.where(rng.random((4, 16, 16)) < 0.2, masks, 255)
    data = InMemorySource(rng.random((4, 16, 16, 1)).astype("float32"), seeds, num_classes=3,
                          dense_labels=masks)
    images, y = next(iter(make_training_dataset(
        data, batch_size=4, seed=0, shuffle=False, augmentation=None,
        target=DictTargets(("seeds", "dense", "image")))))
    assert sorted(y) == ["dense", "image", "seeds"]
    assert y["seeds"].dtype == tf.int32 and y["dense"].dtype == tf.int32
    np.testing.assert_array_equal(y["seeds"], seeds)
    np.testing.assert_array_equal(y["dense"], masks)
    np.testing.assert_array_equal(y["image"], images)


def test_proposals_come_with_their_target_key():
    data = source()
    lookup = lambda sample, step: tf.zeros(tf.shape(sample["image"])[:2], tf.int32)  # noqa: E731
    with pytest.raises(ValueError, match="'proposals' target"):
        make_training_dataset(data, batch_size=4, target=DictTargets(("seeds",)), proposals=lookup)
    with pytest.raises(ValueError, match="'proposals' target"):
        make_training_dataset(data, batch_size=4, target=DictTargets(("seeds", "proposals")))
    _, y = next(iter(make_training_dataset(data, batch_size=4, seed=0, proposals=lookup,
                                           target=DictTargets(("seeds", "proposals")))))
    seeds, proposals, image = unpack_proposal_targets(y)
    assert image is None and int(tf.reduce_max(proposals)) == 0
    np.testing.assert_array_equal(seeds, y["seeds"])


def test_losses_read_the_dict_and_the_packed_form_alike():
    rng = np.random.default_rng(2)
    seeds = rng.integers(0, 3, (2, 8, 8))
    image = rng.random((2, 8, 8, 1)).astype("float32")
    logits = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    loss = LOSSES["grid"]()
    assert float(loss({"seeds": seeds, "image": image}, logits)) == pytest.approx(
        float(loss(pack_targets(seeds, image), logits)), rel=1e-6)
    labels, none = unpack_targets({"dense": seeds})
    assert none is None and labels.dtype == tf.int32
    with pytest.raises(ValueError, match="expected a label map under 'seeds' or 'dense'"):
        unpack_targets({"image": image})
    with pytest.raises(ValueError, match="GridCRFLoss needs the image in y_true"):
        GridCRFLoss()({"seeds": seeds}, logits)
