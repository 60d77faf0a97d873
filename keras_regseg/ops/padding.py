"""Padding images to a multiple of a network's stride (training, inference and export alike)."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["pad_to_multiple"]


def pad_to_multiple(images: tf.Tensor, size_divisor: int) -> tf.Tensor:
    """Pad ``[B, H, W, C]`` images at the bottom/right so H and W are multiples of ``size_divisor``.

    Reflects the image as far as it can (``size - 1`` pixels along an axis)
    and pads the rest, if any, with zeros. Works inside a graph with unknown
    sizes, without control flow (LiteRT's converter loses the channel count
    through a ``tf.cond``), and keeps the static batch and channel dimensions (a
    convolution whose input channels are unknown is compiled with XLA by Keras,
    which neither TFLite nor ONNX converters nor TF Serving on CPU accept).
    ``size_divisor <= 1`` returns the images unchanged.

    >>> x = tf.reshape(tf.range(9.0), [1, 3, 3, 1])
    >>> pad_to_multiple(x, 4)[0, :, :, 0].numpy().tolist()
    [[0.0, 1.0, 2.0, 1.0], [3.0, 4.0, 5.0, 4.0], [6.0, 7.0, 8.0, 7.0], [3.0, 4.0, 5.0, 4.0]]
    >>> pad_to_multiple(x[:, :1], 4)[0, :, :, 0].numpy().tolist()  # 1 row: too short to reflect
    [[0.0, 1.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    >>> graph = tf.function(lambda x: pad_to_multiple(x, 16))
    >>> graph.get_concrete_function(tf.TensorSpec([None, None, None, 3])).output_shapes
    TensorShape([None, None, None, 3])
    """
    if size_divisor <= 1:
        return images
    static = images.shape
    for axis in (1, 2):
        size = tf.shape(images)[axis]
        # Non-negative operands only: ONNX's Mod (from tf2onnx) takes the sign of the dividend.
        pad = (size_divisor - size % size_divisor) % size_divisor
        reflected = tf.minimum(pad, size - 1)
        along = tf.one_hot(axis, 4, dtype=tf.int32)[:, None]
        images = tf.pad(images, along * tf.stack([0, reflected])[None, :], mode="REFLECT")
        images = tf.pad(images, along * tf.stack([0, pad - reflected])[None, :])
    if static[-1] is not None:
        # A reshape to a constant channel count: converters (LiteRT) lose it through tf.pad.
        shape = tf.shape(images)
        images = tf.reshape(images, tf.stack([shape[0], shape[1], shape[2], static[-1]]))
    images.set_shape([static[0], None, None, static[-1]])
    return images
