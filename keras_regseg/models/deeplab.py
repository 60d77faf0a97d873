"""DeepLabV3+ with a MobileNetV2 backbone (Chen et al., ECCV 2018) in Keras 3.

- backbone: ``keras.applications.MobileNetV2`` cut at ``block_13_expand_relu``
  (output stride 16: the stride-32 blocks are dropped, the usual way to run
  DeepLab on MobileNetV2 without dilated backbone convolutions); low-level
  features from ``block_3_expand_relu`` (stride 4);
- ASPP: 1x1 conv, 3x3 convs with atrous rates 6/12/18, image pooling, each
  conv-BN-ReLU, concatenated and projected by a 1x1 conv, then dropout;
- decoder: low-level features reduced by a 1x1 conv, concatenated with the ASPP
  output upsampled to stride 4, two 3x3 conv-BN-ReLU, 1x1 conv to logits,
  bilinear upsampling to the input size, in float32.

Images come in ``[0, 1]`` and are scaled to MobileNetV2's ``[-1, 1]`` inside
the model. One-channel images are repeated to three channels so that the
backbone always has ImageNet's input layout (and can take its weights).

Any input size of at least 32 pixels works; multiples of ``size_divisor``
(16, the output stride) keep the feature grid aligned with the pixels.

>>> import numpy as np
>>> model = DeepLabV3Plus(num_classes=3, input_channels=1, alpha=0.35,
...                       aspp_filters=16, low_level_filters=8, decoder_filters=16)
>>> model.predict(np.zeros((1, 32, 48, 1), "float32"), verbose=0).shape
(1, 32, 48, 3)
"""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_regseg.models.unet import check_image_size

__all__ = ["check_encoder", "DeepLabV3Plus", "HIGH_LEVEL_LAYER", "IMAGENET_ALPHAS",
           "LOW_LEVEL_LAYER", "OUTPUT_STRIDE", "ResizeToMatch", "resolve_backbone_weights"]

OUTPUT_STRIDE = 16
LOW_LEVEL_LAYER = "block_3_expand_relu"  # stride 4
HIGH_LEVEL_LAYER = "block_13_expand_relu"  # stride 16
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@keras.saving.register_keras_serializable(package="keras_regseg")
class ResizeToMatch(keras.layers.Layer):
    """Bilinearly resize ``inputs[0]`` to the height and width of ``inputs[1]``.

    Sizes are read at run time, so the model takes any input size.

    >>> import numpy as np
    >>> small, big = np.ones((1, 2, 3, 5), "float32"), np.zeros((1, 8, 12, 1), "float32")
    >>> ResizeToMatch()([small, big]).shape
    TensorShape([1, 8, 12, 5])
    """

    def call(self, inputs):
        x, reference = inputs
        resized = tf.image.resize(x, tf.shape(reference)[1:3], method="bilinear")
        return tf.cast(resized, x.dtype)  # tf.image.resize returns float32

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def _conv_bn_relu(x, filters, kernel_size, name, dilation_rate=1):
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                            use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _aspp(x, filters, atrous_rates, dropout):
    branches = [_conv_bn_relu(x, filters, 1, name="aspp_1x1")]
    for rate in atrous_rates:
        branches.append(_conv_bn_relu(x, filters, 3, name=f"aspp_rate{rate}", dilation_rate=rate))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _conv_bn_relu(pooled, filters, 1, name="aspp_pool_proj")
    branches.append(ResizeToMatch(name="aspp_pool_upsample")([pooled, x]))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, filters, 1, name="aspp_proj")
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="aspp_dropout")(x)
    return x


def resolve_backbone_weights(weights, alpha):
    """Return the file MobileNetV2 weights load from, or ``None`` for random init.

    ``"imagenet"`` is looked up in the Keras cache (``$KERAS_HOME/models``, by
    default ``~/.keras/models``) and never downloaded, so an offline machine
    fails at once instead of hanging; put the file
    ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_<alpha>_224_no_top.h5``
    there yourself. Any other value must be an existing weights file
    (``.h5`` or ``.weights.h5``) of a ``MobileNetV2(include_top=False)`` with
    the same ``alpha``.

    >>> resolve_backbone_weights(None, 1.0) is None
    True
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        if alpha not in IMAGENET_ALPHAS:
            raise ValueError(f"ImageNet MobileNetV2 weights exist for alpha in {IMAGENET_ALPHAS}; "
                             f"got alpha={alpha}.")
        fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224_no_top.h5"
        candidates = [os.path.join(home, "models", fname) for home in _keras_cache_homes()]
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            f"backbone_weights='imagenet' needs {fname} in the Keras cache; looked in "
            f"{candidates}. keras_regseg does not download it: copy it there, or pass the "
            f"path of a local weights file instead.")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone_weights: no weights file at {path!r}; expected None, "
                                f"'imagenet' or the path of a MobileNetV2 .h5/.weights.h5 file.")
    return path


def _keras_cache_homes():
    """Where ``keras.utils.get_file`` keeps downloads: the Keras home, or /tmp/.keras
    when the home is not writable (Keras' own fallback)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    existing = home if os.path.exists(home) else os.path.dirname(home)
    if os.access(existing, os.W_OK):
        return [home]
    return [home, os.path.join("/tmp", ".keras")]


def _backbone_features(alpha, channels, weights_path):
    """MobileNetV2 sub-model returning (stride-4, stride-16) feature maps."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(None, None, channels), alpha=alpha, include_top=False,
        weights=weights_path)
    outputs = [backbone.get_layer(LOW_LEVEL_LAYER).output,
               backbone.get_layer(HIGH_LEVEL_LAYER).output]
    return keras.Model(backbone.input, outputs, name="mobilenetv2_features")


def check_encoder(encoder, channels):
    """Raise ``ValueError`` unless ``encoder`` maps ``channels``-channel images to features
    of strides 4 and 16 (tried on a 64 x 64 image)."""
    if not isinstance(encoder, keras.Model):
        raise ValueError(f"encoder must be a keras.Model; got {type(encoder).__name__}.")
    try:
        features = encoder(tf.zeros([1, 64, 64, channels]))
    except Exception as error:  # noqa: BLE001 - reported with what was expected
        raise ValueError(f"encoder {encoder.name!r} does not take [B, H, W, {channels}] "
                         f"images: {type(error).__name__}: {error}") from None
    sides = ([tuple(f.shape[1:3]) for f in features]
             if isinstance(features, (list, tuple)) else None)
    if sides != [(16, 16), (4, 4)]:
        raise ValueError(f"encoder {encoder.name!r} must return [stride-4 features, stride-16 "
                         f"features]: on a 64 x 64 image, sides 16 and 4; got "
                         f"{sides if sides else type(features).__name__}.")


@keras.saving.register_keras_serializable(package="keras_regseg")
class DeepLabV3Plus(keras.Model):
    """DeepLabV3+ / MobileNetV2 returning float32 logits ``[B, H, W, num_classes]``.

    Args:
        num_classes: number of output classes K.
        input_channels: image channels C; 1 is repeated to RGB, 3 is used as is,
            other values need ``backbone_weights=None``.
        alpha: MobileNetV2 width multiplier.
        backbone_weights: ``None`` (random), ``"imagenet"`` (must already be in the
            Keras cache, see :func:`resolve_backbone_weights`) or a weights file path.
            Only the initial values: ``get_config`` reports ``None`` because saved
            models carry all weights, and loading one must not need the file.
        aspp_filters: width of the ASPP branches and projection.
        atrous_rates: dilation rates of the 3x3 ASPP branches.
        low_level_filters: width the stride-4 features are reduced to.
        decoder_filters: width of the decoder convolutions.
        dropout: dropout rate after the ASPP projection.
        image_size: optional fixed ``(height, width)``, multiples of 16.
        encoder: your own backbone instead of MobileNetV2: a ``keras.Model``
            taking the images as this model does (``[B, H, W, input_channels]``
            in ``[0, 1]``; its own preprocessing inside) and returning
            ``[stride-4 features, stride-16 features]``. ``alpha`` and
            ``backbone_weights`` then do not apply (the encoder has its weights).
        name: model name.

    >>> import numpy as np
    >>> inputs = keras.Input((None, None, 1))
    >>> low = keras.layers.Conv2D(8, 3, strides=4, padding="same")(inputs)
    >>> high = keras.layers.Conv2D(16, 3, strides=4, padding="same")(low)
    >>> model = DeepLabV3Plus(2, input_channels=1, encoder=keras.Model(inputs, [low, high]),
    ...                       aspp_filters=8, low_level_filters=4, decoder_filters=8)
    >>> model.predict(np.zeros((1, 32, 48, 1), "float32"), verbose=0).shape
    (1, 32, 48, 2)

    Attributes:
        size_divisor: 16, the output stride.
    """

    def __init__(self, num_classes: int, input_channels: int = 3, alpha: float = 1.0,
                 backbone_weights: str | None = None, aspp_filters: int = 256,
                 atrous_rates: Sequence[int] = (6, 12, 18), low_level_filters: int = 48,
                 decoder_filters: int = 256, dropout: float = 0.1,
                 image_size: tuple[int, int] | None = None, encoder: keras.Model | None = None,
                 name: str = "deeplabv3plus", **kwargs: typing.Any):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
        if not isinstance(input_channels, int) or input_channels < 1:
            raise ValueError(f"input_channels must be a positive int; got {input_channels!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
        if isinstance(encoder, dict):   # from get_config
            encoder = keras.saving.deserialize_keras_object(encoder)
        height, width = check_image_size(image_size, OUTPUT_STRIDE)
        inputs = keras.Input((height, width, input_channels), name="image")
        if encoder is not None:
            check_encoder(encoder, input_channels)
            low, high = encoder(inputs)
        else:
            backbone_channels = 3 if input_channels in (1, 3) else input_channels
            if backbone_channels != 3 and backbone_weights is not None:
                raise ValueError(f"backbone_weights need 1- or 3-channel images; got "
                                 f"input_channels={input_channels}.")
            weights_path = resolve_backbone_weights(backbone_weights, alpha)
            x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
            if input_channels == 1:
                x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
            low, high = _backbone_features(alpha, backbone_channels, weights_path)(x)
        x = _aspp(high, aspp_filters, atrous_rates, dropout)
        low = _conv_bn_relu(low, low_level_filters, 1, name="decoder_low_level")
        x = ResizeToMatch(name="decoder_upsample")([x, low])
        x = keras.layers.Concatenate(name="decoder_concat")([x, low])
        x = _conv_bn_relu(x, decoder_filters, 3, name="decoder_conv1")
        x = _conv_bn_relu(x, decoder_filters, 3, name="decoder_conv2")
        # float32 head: logits stay float32 under a mixed_float16 policy.
        x = keras.layers.Conv2D(num_classes, 1, name="logits_stride4", dtype="float32")(x)
        logits = ResizeToMatch(name="logits", dtype="float32")([x, inputs])
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)

        self.num_classes = num_classes
        self.input_channels = input_channels
        self.alpha = alpha
        self.aspp_filters = aspp_filters
        self.atrous_rates = tuple(atrous_rates)
        self.low_level_filters = low_level_filters
        self.decoder_filters = decoder_filters
        self.dropout = dropout
        self.image_size = None if image_size is None else (height, width)
        self.encoder = encoder
        self.size_divisor = OUTPUT_STRIDE

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "input_channels": self.input_channels,
            "alpha": self.alpha,
            "backbone_weights": None,
            "aspp_filters": self.aspp_filters,
            "atrous_rates": list(self.atrous_rates),
            "low_level_filters": self.low_level_filters,
            "decoder_filters": self.decoder_filters,
            "dropout": self.dropout,
            "image_size": None if self.image_size is None else list(self.image_size),
            "encoder": (None if self.encoder is None
                        else keras.saving.serialize_keras_object(self.encoder)),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
