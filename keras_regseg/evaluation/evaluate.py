"""Evaluation routines: run a prediction function over a dataset and score it.

``predict_fn`` maps float32 images ``[B, H, W, C]`` to logits or
probabilities ``[B, H, W, K]`` (a Keras model's ``predict_on_batch``, or
``lambda x: model(x, training=False)``); only the argmax over the last axis
is used.

- :func:`evaluate_volumes`: 3D volumes (ACDC), WSL4MIS protocol, 3D Dice and HD95.
- :func:`evaluate_images`: 2D images with dense labels, mIoU, pixel accuracy, trimap.

>>> import numpy as np
>>> def oracle(images):                     # predicts "class 1 where the image is bright"
...     return np.concatenate([0.5 - images, images - 0.5], axis=-1)
>>> image = np.zeros((2, 8, 8), "float32"); image[:, 2:6, 2:6] = 1
>>> volume = {"id": "v", "image": image, "label": (image > 0.5).astype(int)}
>>> r = evaluate_volumes(oracle, [volume], input_size=16, num_classes=2, progress=False)
>>> r["mean_dice"], r["hd95"]
(1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import zoom
from tqdm.auto import tqdm

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.evaluation.boundary import TrimapAccumulator
from keras_regseg.evaluation.confusion import ConfusionAccumulator
from keras_regseg.evaluation.volume import volume_metrics

__all__ = ["evaluate_images", "evaluate_volumes", "predict_labels", "predict_volume",
           "same_size_batches"]


def predict_labels(predict_fn: Callable[[np.ndarray], np.ndarray], images: ArrayLike,
                   batch_size: int = 16) -> np.ndarray:
    """Argmax labels int32 ``[N, H, W]`` of ``predict_fn`` over images ``[N, H, W, C]``.

    >>> predict_labels(lambda x: np.concatenate([x, 1 - x], -1),
    ...                np.array([[[[0.2], [0.9]]]], "float32")).tolist()
    [[[1, 0]]]
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C]; got shape {images.shape}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    labels = np.empty(images.shape[:3], np.int32)
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        scores = np.asarray(predict_fn(batch))
        if scores.ndim != 4 or scores.shape[:3] != batch.shape[:3]:
            raise ValueError(f"predict_fn must return [B, H, W, K] = {batch.shape[:3]} + (K,); "
                             f"got shape {scores.shape} for input {batch.shape}.")
        labels[start:start + batch.shape[0]] = np.argmax(scores, axis=-1)
    return labels


def _resize_slices(volume, height, width):
    """Nearest-neighbour zoom of every slice of ``[Z, H, W]`` to ``[Z, height, width]``.

    One ``scipy.ndimage.zoom`` call with factor 1 on the slice axis gives the
    same slices as WSL4MIS's per-slice ``zoom(slice, (h / H, w / W), order=0)``
    (order-0 zoom is separable and factor 1 maps every slice to itself).
    """
    z, h, w = volume.shape
    resized = zoom(volume, (1, height / h, width / w), order=0)
    if resized.shape != (z, height, width):
        raise RuntimeError(f"zoom gave shape {resized.shape}, expected {(z, height, width)}.")
    return resized


def predict_volume(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                   input_size: tuple[int, int], batch_size: int = 16) -> np.ndarray:
    """Predicted labels ``[Z, H, W]`` of a volume ``[Z, H, W]``, the WSL4MIS way.

    Each slice is zoomed (nearest) to ``input_size x input_size``, predicted,
    argmaxed and zoomed (nearest) back to its native size.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"a volume image must be [Z, H, W]; got shape {image.shape}.")
    slices = _resize_slices(image, input_size, input_size)[..., None]
    labels = predict_labels(predict_fn, slices, batch_size)
    return _resize_slices(labels, *image.shape[1:])


def _class_key(k, class_names):
    return class_names[k] if class_names is not None else k


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate_volumes(predict_fn: Callable[[np.ndarray], np.ndarray],
                     volumes: Iterable[Mapping[str, np.ndarray]], input_size: tuple[int, int],
                     num_classes: int, spacing: Sequence[float] | None = None, batch_size: int = 16,
                     progress: bool = True, class_names: Sequence[str] | None = None,
                     absent_class: str = "wsl4mis") -> dict:
    """Per-volume 3D Dice and HD95 of classes ``1..K-1`` (WSL4MIS / DMPLS protocol).

    Args:
        predict_fn: float32 ``[B, input_size, input_size, 1]`` -> ``[B, ., ., K]`` scores.
        volumes: iterable of dicts ``{"id", "image" [Z, H, W] float32, "label" [Z, H, W] int}``;
            an optional ``"spacing"`` (per axis, ordered Z, H, W) overrides ``spacing``.
        input_size: slices are predicted at ``input_size x input_size`` (256 for ACDC).
        num_classes: K (class 0 is background and not scored).
        spacing: voxel size for HD95 (one number or ``(z, y, x)``); None gives voxels.
        batch_size: slices per ``predict_fn`` call.
        progress: show a tqdm bar.
        class_names: optional K names used as keys; class indices otherwise.
        absent_class: ``"wsl4mis"`` or ``"skip"``, see
            :func:`keras_regseg.evaluation.volume.volume_metrics`.

    Returns:
        ``{"mean_dice", "dice_per_class", "hd95", "hd95_per_class", "num_volumes", "volumes"}``.
        Per-class values are means over volumes; ``mean_dice`` and ``hd95`` are
        the means of those over classes (for WSL4MIS, where every volume scores
        every class, the same as the mean over volumes of per-volume means).
        ``volumes`` holds one row per volume:
        ``{"id", "dice": {class: v}, "hd95": {class: v}, "mean_dice", "mean_hd95"}``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background plus classes); got {num_classes}.")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names; expected {num_classes}.")
    keys = [_class_key(k, class_names) for k in range(1, num_classes)]
    rows = []
    for volume in tqdm(volumes, desc="volumes", unit="vol", disable=not progress):
        label = np.asarray(volume["label"])
        image = np.asarray(volume["image"])
        if label.shape != image.shape:
            raise ValueError(f"volume {volume.get('id')!r}: label shape {label.shape} does not "
                             f"match image shape {image.shape}.")
        prediction = predict_volume(predict_fn, image, input_size, batch_size)
        try:
            scores = volume_metrics(prediction, label, num_classes,
                                    volume.get("spacing", spacing), absent_class)
        except ValueError as error:
            raise ValueError(f"volume {volume.get('id')!r}: {error}") from None
        rows.append({
            "id": volume.get("id"),
            "dice": dict(zip(keys, scores["dice"])),
            "hd95": dict(zip(keys, scores["hd95"])),
            "mean_dice": _mean_or_none(scores["dice"]),
            "mean_hd95": _mean_or_none(scores["hd95"]),
        })
    if not rows:
        raise ValueError("volumes is empty; nothing to evaluate.")
    dice_per_class = {k: _mean_or_none([r["dice"][k] for r in rows]) for k in keys}
    hd95_per_class = {k: _mean_or_none([r["hd95"][k] for r in rows]) for k in keys}
    return {
        "mean_dice": _mean_or_none(dice_per_class.values()),
        "dice_per_class": dice_per_class,
        "hd95": _mean_or_none(hd95_per_class.values()),
        "hd95_per_class": hd95_per_class,
        "num_volumes": len(rows),
        "volumes": rows,
    }


def same_size_batches(samples, batch_size):
    """Group consecutive samples with equal image shapes into lists of <= batch_size."""
    batch = []
    for sample in samples:
        if batch and (len(batch) == batch_size
                      or np.shape(sample["image"]) != np.shape(batch[0]["image"])):
            yield batch
            batch = []
        batch.append(sample)
    if batch:
        yield batch


def evaluate_images(predict_fn: Callable[[np.ndarray], np.ndarray],
                    samples: Iterable[Mapping[str, np.ndarray]], num_classes: int,
                    batch_size: int = 8, boundary_widths: Sequence[int] | None = (8, 16),
                    connectivity: int = 4, progress: bool = True) -> dict:
    """mIoU, IoU per class, pixel accuracy and trimap metrics over 2D samples.

    Args:
        predict_fn: float32 ``[B, H, W, C]`` -> ``[B, H, W, K]`` scores.
        samples: iterable of sample dicts (see :mod:`keras_regseg.data.spec`) with
            ``"image"`` and ``"dense_label"``; numpy arrays or eager tensors. Images
            may differ in size: consecutive samples of equal size share a batch.
        num_classes: K.
        boundary_widths: trimap band widths in pixels; empty to skip the trimap.
        connectivity: 4 or 8, neighbourhood defining boundary pixels.

    Returns:
        ``{"miou", "iou_per_class", "pixel_accuracy", "pixels", "trimap": {w: {...}},
        "num_images", "num_skipped"}``. Samples whose ``dense_label`` holds no class
        (all ``IGNORE_INDEX`` or ``PAD_INDEX``: no ground truth) are skipped and
        counted in ``num_skipped``.
    """
    confusion = ConfusionAccumulator(num_classes)
    trimap = TrimapAccumulator(num_classes, boundary_widths, connectivity) \
        if len(boundary_widths) else None
    evaluated = 0
    with_labels = _LabeledSamples(samples)
    for batch in tqdm(same_size_batches(with_labels, batch_size), desc="batches",
                      disable=not progress):
        images = np.stack([s["image"] for s in batch])
        labels = np.stack([s["dense_label"] for s in batch])
        predictions = predict_labels(predict_fn, images, batch_size)
        confusion.update(labels, predictions)
        if trimap is not None:
            trimap.update(labels, predictions)
        evaluated += len(batch)
    skipped = with_labels.skipped
    if evaluated == 0:
        raise ValueError(f"no sample with a dense label to evaluate ({skipped} skipped).")
    result = confusion.result()
    result["trimap"] = trimap.result() if trimap is not None else {}
    result["num_images"] = evaluated
    result["num_skipped"] = skipped
    return result


class _LabeledSamples:
    """Iterate over samples as numpy dicts, dropping (and counting) those without ground truth."""

    def __init__(self, samples):
        self.samples = samples
        self.skipped = 0

    def __iter__(self):
        for sample in self.samples:
            label = np.asarray(sample["dense_label"])
            if np.isin(label, (IGNORE_INDEX, PAD_INDEX)).all():
                self.skipped += 1
                continue
            image = np.asarray(sample["image"], np.float32)
            if image.ndim != 3 or image.shape[:2] != label.shape:
                raise ValueError(
                    f"sample {_sample_id(sample)!r}: image shape {image.shape} does not match "
                    f"dense_label shape {label.shape}; expected [H, W, C] and [H, W].")
            yield {"image": image, "dense_label": label}


def _sample_id(sample):
    sample_id = sample.get("id")
    sample_id = np.asarray(sample_id).item() if sample_id is not None else None
    return sample_id.decode() if isinstance(sample_id, bytes) else sample_id
