"""Losses of keras_regseg: each returns per-pixel values from logits."""

from keras_regseg.losses.composite import WeightedSumLoss
from keras_regseg.losses.cross_entropy import CrossEntropy, PartialCrossEntropy
from keras_regseg.losses.targets import pack_targets, unpack_targets
