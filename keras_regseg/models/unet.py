"""The 2D UNet of WSL4MIS (Luo et al., MICCAI 2022) in Keras 3.

Same architecture as ``networks/unet.py`` of HiLab-git/WSL4MIS, whose
``Decoder`` builds every ``UpBlock`` with its default ``bilinear=True``:

- encoder: ``depth`` levels of conv3x3-BN-LeakyReLU, dropout, conv3x3-BN-LeakyReLU,
  levels after the first preceded by a 2x2 max-pool; widths 16/32/64/128/256
  and dropout 0.05/0.1/0.2/0.3/0.5 by default;
- decoder: per level conv1x1 (deep width -> skip width), bilinear x2 upsampling
  (``align_corners=True``, as PyTorch's ``nn.Upsample`` there), concatenation
  ``[skip, upsampled]`` and a conv block without dropout;
- head: conv3x3 to ``num_classes`` logits, computed in float32.

PyTorch defaults are kept where they change training: LeakyReLU slope 0.01,
BatchNorm momentum 0.1 (Keras ``momentum=0.9``) and epsilon 1e-5, and
PyTorch's default convolution initialization.

Input height and width must be multiples of ``size_divisor = 2 ** (depth - 1)``
(16 by default): every max-pool halves the size and the decoder concatenates
the upsampled map with the skip connection, so both must agree exactly.

>>> model = UNet(num_classes=4, input_channels=1, filters=(4, 8), dropout=0.0)
>>> model.size_divisor
2
>>> import numpy as np
>>> model.predict(np.zeros((1, 6, 10, 1), "float32"), verbose=0).shape
(1, 6, 10, 4)
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence

import keras
import tensorflow as tf

__all__ = ["BilinearUpsample2x", "check_image_size", "UNet", "WSL4MIS_DROPOUT", "WSL4MIS_FILTERS"]

WSL4MIS_FILTERS = (16, 32, 64, 128, 256)
WSL4MIS_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


def check_image_size(image_size: Sequence[int] | None,
                     size_divisor: int) -> tuple[int, int] | tuple[None, None]:
    """Validate a fixed ``(height, width)`` for a network that needs multiples of ``size_divisor``.

    Returns ``(height, width)`` as a tuple (``(None, None)`` for ``None``, i.e.
    any size chosen at call time).

    >>> check_image_size((64, 48), 16)
    (64, 48)
    >>> check_image_size((60, 48), 16)
    Traceback (most recent call last):
    ...
    ValueError: image_size (60, 48) is not a multiple of 16 in both dimensions; next valid: (64, 48).
    """
    if image_size is None:
        return (None, None)
    size = tuple(image_size)
    if len(size) != 2 or any(s is not None and (not isinstance(s, int) or s <= 0) for s in size):
        raise ValueError(
            f"image_size must be (height, width) positive ints or None; got {image_size!r}.")
    if any(s is not None and s % size_divisor for s in size):
        up = tuple(s if s is None else -(-s // size_divisor) * size_divisor for s in size)
        raise ValueError(f"image_size {size} is not a multiple of {size_divisor} in both "
                         f"dimensions; next valid: {up}.")
    return size


def _torch_conv(filters, kernel_size, fan_in_channels, name, dtype=None):
    """Conv2D initialized like PyTorch's ``nn.Conv2d`` default (uniform +-1/sqrt(fan_in)).

    Keras' glorot default gives another weight scale; matching PyTorch keeps the
    published WSL4MIS training recipe (learning rate, iterations) valid.
    """
    fan_in = kernel_size * kernel_size * fan_in_channels
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", name=name, dtype=dtype,
        # kaiming_uniform(a=sqrt(5)) == uniform(+-sqrt(3 * (1/3) / fan_in))
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def _conv_block(x, in_channels, filters, dropout, name):
    """conv3x3-BN-LeakyReLU, dropout, conv3x3-BN-LeakyReLU (WSL4MIS ``ConvBlock``)."""
    for i, cin in enumerate((in_channels, filters)):
        if i == 1 and dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = _torch_conv(filters, 3, cin, name=f"{name}_conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn{i + 1}")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.01, name=f"{name}_relu{i + 1}")(x)
    return x


@keras.saving.register_keras_serializable(package="keras_regseg")
class BilinearUpsample2x(keras.layers.Layer):
    """Double height and width by bilinear interpolation with ``align_corners=True``.

    Matches PyTorch's ``nn.Upsample(scale_factor=2, mode="bilinear",
    align_corners=True)`` used by WSL4MIS (Keras' ``UpSampling2D`` uses
    half-pixel centers instead): corner pixels are kept exactly.

    >>> import numpy as np
    >>> x = np.array([0.0, 3.0], "float32").reshape(1, 1, 2, 1)
    >>> BilinearUpsample2x()(x).numpy()[0, 0, :, 0].tolist()
    [0.0, 1.0, 2.0, 3.0]
    """

    def call(self, inputs):
        size = tf.shape(inputs)[1:3] * 2
        resized = tf.raw_ops.ResizeBilinear(
            images=inputs, size=size, align_corners=True, half_pixel_centers=False)
        return tf.cast(resized, inputs.dtype)  # the op always returns float32

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="keras_regseg")
class UNet(keras.Model):
    """WSL4MIS 2D UNet returning float32 logits ``[B, H, W, num_classes]``.

    Args:
        num_classes: number of output classes K.
        input_channels: image channels C (1 for MRI, 3 for RGB).
        filters: widths of the encoder levels, shallow to deep; or one int, the
            width of the first level, doubled at each of ``depth`` levels.
        dropout: dropout rate inside each encoder block: one float for all levels
            or one per level. ``None`` gives WSL4MIS' 0.05/0.1/0.2/0.3/0.5 for 5
            levels (other depths must give it explicitly).
        depth: number of levels when ``filters`` is an int (ignored otherwise).
        image_size: optional fixed ``(height, width)``, both multiples of
            ``size_divisor``; default ``None``: any such size at call time.
        name: model name.

    Attributes:
        size_divisor: ``2 ** (depth - 1)``; input sizes must be multiples of it.

    >>> model = UNet(num_classes=4)  # WSL4MIS defaults, 1 input channel
    >>> model.size_divisor, model.filters
    (16, (16, 32, 64, 128, 256))
    >>> UNet(num_classes=2, filters=8, depth=3, dropout=0.1).filters
    (8, 16, 32)
    """

    def __init__(self, num_classes: int, input_channels: int = 1,
                 filters: Sequence[int] = WSL4MIS_FILTERS, dropout: Sequence[float] | None = None,
                 depth: int = 5, image_size: tuple[int, int] | None = None, name: str = "unet",
                 **kwargs: typing.Any):
        filters = _normalize_filters(filters, depth)
        dropout = _normalize_dropout(dropout, len(filters))
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
        if not isinstance(input_channels, int) or input_channels < 1:
            raise ValueError(f"input_channels must be a positive int; got {input_channels!r}.")
        size_divisor = 2 ** (len(filters) - 1)
        height, width = check_image_size(image_size, size_divisor)

        inputs = keras.Input((height, width, input_channels), name="image")
        skips, x, cin = [], inputs, input_channels
        for level, (f, p) in enumerate(zip(filters, dropout)):
            if level > 0:
                x = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
            x = _conv_block(x, cin, f, p, name=f"down{level}" if level else "in")
            skips.append(x)
            cin = f
        for level in range(len(filters) - 2, -1, -1):
            f = filters[level]
            x = _torch_conv(f, 1, cin, name=f"up{level}_conv1x1")(x)
            x = BilinearUpsample2x(name=f"up{level}_upsample")(x)
            x = keras.layers.Concatenate(name=f"up{level}_concat")([skips[level], x])
            x = _conv_block(x, 2 * f, f, 0.0, name=f"up{level}")
            cin = f
        # float32 head: logits stay float32 under a mixed_float16 policy.
        logits = _torch_conv(num_classes, 3, cin, name="logits", dtype="float32")(x)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)

        self.num_classes = num_classes
        self.input_channels = input_channels
        self.filters = filters
        self.dropout = dropout
        self.image_size = None if image_size is None else (height, width)
        self.size_divisor = size_divisor

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "input_channels": self.input_channels,
            "filters": list(self.filters),
            "dropout": list(self.dropout),
            "image_size": None if self.image_size is None else list(self.image_size),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _normalize_filters(filters, depth):
    if isinstance(filters, int):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int; got {depth!r}.")
        filters = [filters * 2 ** i for i in range(depth)]
    filters = tuple(filters)
    if not filters or any(not isinstance(f, int) or f < 1 for f in filters):
        raise ValueError(f"filters must be a positive int or a non-empty sequence of positive "
                         f"ints; got {filters!r}.")
    return filters


def _normalize_dropout(dropout, depth):
    if dropout is None:
        if depth != len(WSL4MIS_DROPOUT):
            raise ValueError(f"dropout=None means WSL4MIS' rates {WSL4MIS_DROPOUT} for 5 levels; "
                             f"this UNet has {depth} levels: give one rate or {depth} rates.")
        return WSL4MIS_DROPOUT
    if isinstance(dropout, (int, float)):
        dropout = (float(dropout),) * depth
    dropout = tuple(float(p) for p in dropout)
    if len(dropout) != depth or any(not 0.0 <= p < 1.0 for p in dropout):
        raise ValueError(f"dropout must be one rate or {depth} rates in [0, 1); got {dropout!r}.")
    return dropout
