"""Mean IoU and Dice as Keras metrics inside ``fit``, for plain networks and method models."""

import keras
import numpy as np
import pytest

from helpers import CLASSES, seed_problem, square_images, stroke_seeds, tiny_network
from keras_regseg.constants import IGNORE_INDEX
from keras_regseg.evaluation.confusion import confusion_matrix, mean_iou, pixel_accuracy
from keras_regseg.losses import PartialCrossEntropy, pack_targets
from keras_regseg.losses.robust_ce import pack_proposal_targets
from keras_regseg.methods.trust_region_model import TrustRegionModel
from keras_regseg.metrics import Dice, MeanIoU, PixelAccuracy, segmentation_metrics


def reference_scores(labels, logits, classes=CLASSES):
    """mIoU from the evaluation module; Dice from the same confusion matrix."""
    cm = confusion_matrix(labels, np.argmax(logits, -1), classes)
    tp, labeled, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    present = (labeled + predicted) > 0
    return mean_iou(cm), float(np.mean(2 * tp[present] / (labeled + predicted)[present]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_the_evaluation_scores_over_batches(seed):
    labels, logits = seed_problem(seed, shape=(4, 6, 7), classes=CLASSES)
    iou, dice = MeanIoU(CLASSES), Dice(CLASSES)
    for half in (slice(0, 2), slice(2, 4)):   # accumulated over two batches
        iou.update_state(labels[half], logits[half])
        dice.update_state(labels[half], logits[half])
    expected_iou, expected_dice = reference_scores(labels, logits)
    assert float(iou.result()) == pytest.approx(expected_iou, abs=1e-6)
    assert float(dice.result()) == pytest.approx(expected_dice, abs=1e-6)
    iou.reset_state()
    assert float(iou.result()) == 0.0


def test_pixel_accuracy_counts_labeled_pixels_only():
    labels, logits = seed_problem(4, shape=(3, 6, 5), classes=CLASSES)
    labels[0, :2] = IGNORE_INDEX
    metric = PixelAccuracy(CLASSES)
    metric.update_state(labels, logits)
    cm = confusion_matrix(labels, np.argmax(logits, -1), CLASSES)
    assert float(metric.result()) == pytest.approx(pixel_accuracy(cm), abs=1e-6)
    assert [m.name for m in segmentation_metrics(CLASSES)] == ["miou", "dice", "pixel_accuracy"]


def test_packed_and_dict_targets_give_the_label_map_scores():
    labels, logits = seed_problem(3, shape=(2, 5, 6), classes=CLASSES)
    images = np.zeros((2, 5, 6, 1), np.float32)
    expected = reference_scores(labels, logits)[0]
    for y_true in (pack_targets(labels, images), {"seeds": labels, "tags": np.ones((2, 3))},
                   pack_proposal_targets(labels, labels, images)):
        metric = MeanIoU(CLASSES)
        metric.update_state(y_true, logits)
        assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    tags_only = MeanIoU(CLASSES)
    tags_only.update_state({"tags": np.ones((2, 3))}, logits)   # no label map: nothing counted
    tags_only.update_state(np.ones((2, 3), np.float32), logits)   # a one-key dict arrived bare
    assert float(tags_only.result()) == 0.0


def fit_and_score(model, y_train, y_val, images):
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False,
                  loss=None if isinstance(model, TrustRegionModel) else PartialCrossEntropy(),
                  metrics=[MeanIoU(CLASSES), Dice(CLASSES)])
    history = model.fit(images, y_train, batch_size=4, epochs=2, verbose=0,
                        validation_data=(images, y_val))
    return history.history


def test_a_plain_network_logs_validation_iou_from_fit():
    images, seeds = square_images(8), stroke_seeds(8)
    dense = np.zeros((8, 16, 16), np.int32)
    dense[:, 4:12, 4:12] = 1
    network = tiny_network()
    history = fit_and_score(network, pack_targets(seeds, images), pack_targets(dense, images),
                            images)
    logits = network.predict(images, verbose=0)
    assert history["val_mean_iou"][-1] == pytest.approx(reference_scores(dense, logits)[0],
                                                        abs=1e-5)
    assert 0.0 < history["val_dice"][-1] <= 1.0 and "mean_iou" in history


def test_a_method_model_logs_the_metrics_of_its_network():
    images, seeds = square_images(8), stroke_seeds(8)
    dense = np.zeros((8, 16, 16), np.int32)
    dense[:, 4:12, 4:12] = 1
    model = TrustRegionModel(tiny_network())
    y_train = pack_proposal_targets(seeds, dense, images)
    y_val = pack_proposal_targets(dense, dense, images)
    history = fit_and_score(model, y_train, y_val, images)
    logits = model.network.predict(images, verbose=0)
    assert history["val_mean_iou"][-1] == pytest.approx(reference_scores(dense, logits)[0],
                                                        abs=1e-5)
    # The training-set figure counts seed pixels only (IGNORE_INDEX elsewhere).
    assert (seeds == IGNORE_INDEX).mean() > 0.9 and 0.0 <= history["mean_iou"][-1] <= 1.0


def test_metrics_survive_serialization():
    metric = MeanIoU(5, name="iou5")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert (type(restored), restored.num_classes, restored.name) == (MeanIoU, 5, "iou5")
    with pytest.raises(ValueError, match="num_classes"):
        Dice(0)
