"""Evaluation metrics (mIoU, trimap, 3D Dice / HD95) and evaluation routines."""

from keras_regseg.evaluation.boundary import (
    TrimapAccumulator,
    boundary_mask,
    trimap_bands,
    trimap_metrics,
)
from keras_regseg.evaluation.confusion import (
    ConfusionAccumulator,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    present_classes,
)
from keras_regseg.evaluation.evaluate import (
    evaluate_images,
    evaluate_volumes,
    predict_labels,
    predict_volume,
)
from keras_regseg.evaluation.volume import (
    dice,
    dice_hd95,
    hd95,
    surface_distances,
    symmetric_surface_distances,
    volume_metrics,
)

__all__ = ["boundary_mask", "confusion_matrix", "ConfusionAccumulator", "dice", "dice_hd95",
           "evaluate_images", "evaluate_volumes", "hd95", "iou_per_class", "mean_iou",
           "pixel_accuracy", "predict_labels", "predict_volume", "present_classes",
           "surface_distances", "symmetric_surface_distances", "trimap_bands", "trimap_metrics",
           "TrimapAccumulator", "volume_metrics"]
