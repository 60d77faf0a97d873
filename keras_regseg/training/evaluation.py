"""Score a network on a run's validation data (per epoch, and once at the end)."""

import numpy as np

from keras_regseg.evaluation import evaluate_images, evaluate_volumes
from keras_regseg.evaluation.evaluate import same_size_batches
from keras_regseg.losses.potts import potts_energy_np
from keras_regseg.metrics import segmentation_metrics

__all__ = ["evaluate_run", "flatten", "mean_potts_energy", "metric_scores", "name_classes"]


def evaluate_run(predict, data, quick=False):
    """Metrics of ``predict`` on ``data`` (a :class:`TrainingData`) as a flat dict.

    Volumetric data (ACDC) gives ``mean_dice``, per-class Dice and HD95 by the
    WSL4MIS protocol; 2D data gives ``miou``, ``pixel_accuracy`` and, unless
    ``quick``, per-class IoU and trimap boundary accuracy. ``quick`` is the
    per-epoch variant: the headline numbers only, no progress bar; on 2D data
    scored by the Keras metrics compiled into the training model
    (:func:`keras_regseg.metrics.segmentation_metrics`: ``miou``, ``dice``,
    ``pixel_accuracy``), so that ``miou`` and ``val_miou`` in the history are
    the same measure on seeds and on dense validation labels.
    """
    if data.volumes is not None:
        result = evaluate_volumes(predict, data.volumes, input_size=data.input_size,
                                  num_classes=data.num_classes, progress=not quick,
                                  class_names=data.train.class_names)
        keys = ("mean_dice", "hd95") if quick else None
    elif quick:
        return metric_scores(predict, data.validation, segmentation_metrics(data.num_classes))
    else:
        samples = (data.validation.load(i) for i in range(len(data.validation)))
        result = name_classes(evaluate_images(
            predict, samples, num_classes=data.num_classes,
            boundary_widths=(8, 16), progress=True), data.train.class_names)
        keys = None
    flat = flatten(result)
    if keys:
        flat = {k: flat[k] for k in keys if k in flat}
    else:
        flat["potts_energy"] = mean_potts_energy(predict, data.validation)
    return flat


def metric_scores(predict, source, metrics, batch_size=32):
    """``{metric.name: result}`` of Keras ``metrics`` over ``source``'s dense labels.

    Consecutive samples of equal size share a ``predict`` call; the metrics are
    reset first.
    """
    for metric in metrics:
        metric.reset_state()
    for start in range(0, len(source), batch_size):
        samples = [source.load(i) for i in range(start, min(start + batch_size, len(source)))]
        for group in same_size_batches(samples, batch_size):
            logits = predict(np.stack([s["image"] for s in group]))
            labels = np.stack([s["dense_label"] for s in group])
            for metric in metrics:
                metric.update_state(labels, logits)
    return {metric.name: float(metric.result()) for metric in metrics}


def mean_potts_energy(predict, source, batch_size=32):
    """Mean per-pixel grid Potts energy (weight 1) of the predicted labelings of ``source``.

    The energy every method is compared by (ADM paper, Table 1): the 8-grid,
    contrast-sensitive Potts term of the network's hard (argmax) output on
    each image, divided by its number of pixels, averaged over images.
    """
    energies = []
    samples = (source.load(i) for i in range(len(source)))
    for batch in same_size_batches(samples, batch_size):
        images = np.stack([sample["image"] for sample in batch])
        labels = np.argmax(predict(images), axis=-1)
        energies.extend(potts_energy_np(lab, im) / lab.size for lab, im in zip(labels, images))
    return float(np.mean(energies))


def name_classes(result, class_names):
    """``iou_per_class`` / ``dice_per_class`` lists as ``{class name: value}`` (classes
    without a value left out), so that they are printed and logged by name.

    >>> name_classes({"iou_per_class": [0.5, None]}, ("background", "car"))
    {'iou_per_class': {'background': 0.5}}
    """
    names = list(class_names) if class_names else None
    named = dict(result)
    for key in ("iou_per_class", "dice_per_class"):
        if isinstance(result.get(key), list):
            labels = names if names and len(names) == len(result[key]) else [
                f"class_{k}" for k in range(len(result[key]))]
            named[key] = {n: v for n, v in zip(labels, result[key]) if v is not None}
    return named


def flatten(result, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; lists of per-volume rows are dropped."""
    flat = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
