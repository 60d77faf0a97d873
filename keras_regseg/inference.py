"""Prediction helpers: any image size in, per-pixel probabilities out.

Networks such as the UNet need sides divisible by ``model.size_divisor``;
:func:`make_predict_fn` pads (by edge replication, so no artificial border is
seen) to the next multiple and crops the result back.

>>> import numpy as np, keras
>>> inputs = keras.Input((None, None, 1)); net = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
>>> predict = make_predict_fn(net)
>>> tuple(predict(np.zeros((2, 5, 7, 1), "float32")).shape)
(2, 5, 7, 3)
"""

import numpy as np
import tensorflow as tf

from keras_regseg.ops.padding import pad_to_multiple

__all__ = ["make_predict_fn"]


def make_predict_fn(model, batch_size=None):
    """A function ``images float32 [B, H, W, C] -> probabilities float32 [B, H, W, K]``.

    Works for any ``H, W`` (padding to ``model.size_divisor`` and cropping
    back) and traces once per channel count, not per image size.
    """
    multiple = int(getattr(model, "size_divisor", 1) or 1)
    channels = model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
                 reduce_retracing=True)
    def probabilities(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        logits = model(pad_to_multiple(images, multiple), training=False)
        return tf.nn.softmax(tf.cast(logits[:, :height, :width], tf.float32), axis=-1)

    def predict(images):
        images = np.asarray(images, np.float32)
        if batch_size is None or len(images) <= batch_size:
            return probabilities(images).numpy()
        return np.concatenate([probabilities(images[i:i + batch_size]).numpy()
                               for i in range(0, len(images), batch_size)])

    return predict
