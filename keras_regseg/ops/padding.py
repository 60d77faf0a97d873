"""Padding images to a multiple of a network's stride (training, inference and export alike)."""

import tensorflow as tf


def pad_to_multiple(images, size_divisor):
    """Pad ``[B, H, W, C]`` images at the bottom/right so H and W are multiples of ``size_divisor``.

    Reflects the image along an axis when it is long enough (``pad < size``),
    otherwise pads that axis with zeros. Works inside a graph with unknown sizes,
    and keeps the static batch and channel dimensions (a convolution whose input
    channels are unknown is compiled with XLA by Keras, which neither TFLite nor
    ONNX converters nor TF Serving on CPU accept). ``size_divisor <= 1``
    returns the images unchanged.

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
        pad = (-size) % size_divisor
        paddings = tf.one_hot(axis, 4, dtype=tf.int32)[:, None] * tf.stack([0, pad])[None, :]
        images = tf.cond(pad < size,
                         lambda: tf.pad(images, paddings, mode="REFLECT"),
                         lambda: tf.pad(images, paddings))
    images.set_shape([static[0], None, None, static[-1]])
    return images
