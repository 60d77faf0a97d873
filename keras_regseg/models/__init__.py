"""Segmentation networks returning float32 logits ``[B, H, W, K]``."""

from keras_regseg.models.deeplab import DeepLabV3Plus
from keras_regseg.models.registry import MODELS, build_model
from keras_regseg.models.unet import UNet, check_image_size

__all__ = ["DeepLabV3Plus", "MODELS", "UNet", "build_model", "check_image_size"]
