"""Score a network on a run's validation data (per epoch, and once at the end)."""

from keras_regseg.evaluation import evaluate_images, evaluate_volumes


def evaluate_run(predict, data, quick=False):
    """Metrics of ``predict`` on ``data`` (a :class:`TrainingData`) as a flat dict.

    Volumetric data (ACDC) gives ``mean_dice``, per-class Dice and HD95 by the
    WSL4MIS protocol; 2D data gives ``miou``, ``pixel_accuracy`` and, unless
    ``quick``, per-class IoU and trimap boundary accuracy. ``quick`` is the
    per-epoch variant: the headline numbers only, no progress bar.
    """
    if data.volumes is not None:
        result = evaluate_volumes(predict, data.volumes, input_size=data.input_size,
                                  num_classes=data.num_classes, progress=not quick,
                                  class_names=data.train.class_names)
        keys = ("mean_dice", "hd95") if quick else None
    else:
        samples = (data.validation.load(i) for i in range(len(data.validation)))
        result = evaluate_images(predict, samples, num_classes=data.num_classes,
                                 boundary_widths=() if quick else (8, 16), progress=not quick)
        keys = ("miou", "pixel_accuracy") if quick else None
    flat = flatten(result)
    if keys:
        flat = {k: flat[k] for k in keys if k in flat}
    return flat


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
