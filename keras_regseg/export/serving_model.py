"""The network as served: any image size in, probabilities and labels out.

:func:`serving_model` wraps a trained network (or a method's model holding one,
such as a trust-region or CCNN model) in a Keras model that every export
format shares: float32 images ``[B, H, W, C]`` in ``[0, 1]`` of any height and
width are padded at the bottom and right to the network's ``size_divisor``
(:func:`~keras_regseg.ops.padding.pad_to_multiple`), and the outputs are
cropped back:

- ``"probabilities"``: float32 ``[B, H, W, K]``, softmax of the logits;
- ``"labels"``: int32 ``[B, H, W]``, their argmax.

>>> import numpy as np
>>> from keras_regseg.models import UNet
>>> serving = serving_model(UNet(num_classes=3, filters=(4, 8), dropout=0.0))
>>> out = serving(np.zeros((1, 5, 7, 1), "float32"))
>>> tuple(out["probabilities"].shape), out["labels"].dtype.name
((1, 5, 7, 3), 'int32')
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_regseg.ops.padding import pad_to_multiple

__all__ = ["input_signature", "network_of", "serving_model", "ServingHead"]


def network_of(model: keras.Model) -> keras.Model:
    """The segmentation network inside ``model``: a method's wrapper model (trust
    region, ADM, CCNN) holds it as ``.network``; a plain network is itself."""
    inner = getattr(model, "network", None)
    return inner if isinstance(inner, keras.Model) else model


class ServingHead(keras.layers.Layer):
    """Pad to the network's stride, run it, crop back, softmax and argmax."""

    def __init__(self, network, size_divisor=1, **kwargs):
        super().__init__(**kwargs)
        self.network, self.size_divisor = network, int(size_divisor)

    def call(self, images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        padded = pad_to_multiple(images, self.size_divisor)
        logits = tf.cast(self.network(padded, training=False), tf.float32)
        logits = logits[:, :height, :width, :]
        return {"probabilities": tf.nn.softmax(logits, axis=-1),
                "labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}


def serving_model(model: keras.Model) -> keras.Model:
    """A Keras model ``images -> {"probabilities", "labels"}`` around ``model``'s network.

    Raises ``ValueError`` when the network does not take ``[B, H, W, C]``
    images with a known channel count.
    """
    network = network_of(model)
    shape = getattr(network, "input_shape", None)
    if shape is None or len(shape) != 4 or shape[-1] is None:
        raise ValueError(f"cannot export {type(model).__name__}: its network must take images "
                         f"[B, H, W, C] with a known C; got input shape {shape}.")
    size_divisor = int(getattr(network, "size_divisor", 1))
    if size_divisor < 1:
        raise ValueError(f"model.size_divisor must be a positive int; got {size_divisor}.")
    images = keras.Input((None, None, shape[-1]), name="images")
    return keras.Model(images, ServingHead(network, size_divisor, name="serving")(images),
                       name="keras_regseg_serving")


def input_signature(serving):
    """The one input of a :func:`serving_model`, any batch, height and width."""
    channels = serving.input_shape[-1]
    return [tf.TensorSpec([None, None, None, channels], tf.float32, name="images")]
