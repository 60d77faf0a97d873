"""Tests of the UNet / DeepLabV3+ networks and the model registry."""

import json

import keras
import numpy as np
import pytest

from keras_regseg.models import DeepLabV3Plus, UNet, build_model, check_image_size
from keras_regseg.models.deeplab import resolve_backbone_weights
from keras_regseg.models.unet import BilinearUpsample2x

TINY_UNET = dict(filters=(4, 8, 16), dropout=(0.1, 0.2, 0.3))
TINY_DEEPLAB = dict(alpha=0.35, aspp_filters=8, atrous_rates=(2, 4), low_level_filters=4,
                    decoder_filters=8)


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _randomize_batchnorm_statistics(model, seed=0):
    """Give BN moving statistics non-default values, so saving them is tested too."""
    rng = np.random.default_rng(seed)
    for w in model.non_trainable_weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))


def wsl4mis_torch_parameter_count(in_chns, class_num, ft=(16, 32, 64, 128, 256)):
    """``sum(p.numel() for p in UNet(in_chns, class_num).parameters())`` of WSL4MIS' PyTorch
    code, worked out from its modules (Conv2d: k*k*cin*cout + cout; BatchNorm2d: 2*c)."""
    def conv(cin, cout, k):
        return k * k * cin * cout + cout

    def conv_block(cin, cout):  # Conv-BN-LeakyReLU-Dropout-Conv-BN-LeakyReLU
        return conv(cin, cout, 3) + 2 * cout + conv(cout, cout, 3) + 2 * cout

    encoder = conv_block(in_chns, ft[0]) + sum(conv_block(ft[i - 1], ft[i]) for i in range(1, 5))
    # UpBlock(in1, in2, out) with bilinear=True: conv1x1(in1 -> in2), ConvBlock(2*in2 -> out)
    decoder = sum(conv(ft[i], ft[i - 1], 1) + conv_block(2 * ft[i - 1], ft[i - 1])
                  for i in range(4, 0, -1))
    return encoder + decoder + conv(ft[0], class_num, 3)


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("in_chns, class_num", [(1, 4), (3, 2)])
def test_unet_parameter_count_matches_wsl4mis(in_chns, class_num):
    model = UNet(num_classes=class_num, input_channels=in_chns)
    assert _trainable_count(model) == wsl4mis_torch_parameter_count(in_chns, class_num)
    # BN moving mean + variance: 2 per channel of every conv block, 2 BNs per block
    bn_channels = 2 * (sum(model.filters) + sum(model.filters[:-1]))
    assert model.count_params() - _trainable_count(model) == 2 * bn_channels


def test_unet_default_is_wsl4mis():
    model = UNet(num_classes=4)
    assert model.filters == (16, 32, 64, 128, 256)
    assert model.dropout == (0.05, 0.1, 0.2, 0.3, 0.5)
    assert model.size_divisor == 16
    dropouts = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    assert [l.rate for l in dropouts] == [0.05, 0.1, 0.2, 0.3, 0.5]  # encoder only
    relus = [l for l in model.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert {l.negative_slope for l in relus} == {0.01}  # PyTorch's default, not Keras' 0.3


def test_unet_conv_initialization_is_pytorch_default():
    """uniform(+-1/sqrt(fan_in)) for kernels and biases: max |w| near the bound, never above."""
    model = UNet(num_classes=4)
    conv = model.get_layer("down3_conv2")  # 3*3*128 fan-in, 147k weights: the max is sharp
    bound = 1.0 / np.sqrt(3 * 3 * 128) * (1 + 1e-6)  # float32 rounding of the limit
    kernel = conv.kernel.numpy()
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.99 * bound
    assert np.std(kernel) == pytest.approx(bound / np.sqrt(3), rel=0.02)
    assert 0 < np.abs(conv.bias.numpy()).max() <= bound


def test_bilinear_upsample_matches_align_corners_bruteforce():
    x = _images((2, 3, 5, 2))
    out = BilinearUpsample2x()(x).numpy()

    def weights(n):  # [2n, n] interpolation matrix, source coordinate i*(n-1)/(2n-1)
        src = np.arange(2 * n) * (n - 1) / (2 * n - 1)
        return np.maximum(0.0, 1.0 - np.abs(src[:, None] - np.arange(n)[None, :]))

    expected = np.einsum("ih,jw,bhwc->bijc", weights(3), weights(5), x)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_unet_shapes_any_multiple_of_divisor():
    model = UNet(num_classes=3, input_channels=2, **TINY_UNET)
    assert model.size_divisor == 4
    for h, w in [(8, 12), (20, 4)]:
        out = model(_images((2, h, w, 2)), training=False)
        assert tuple(out.shape) == (2, h, w, 3)
        assert out.dtype == "float32"


def test_unet_int_filters_and_depth():
    model = UNet(num_classes=2, filters=4, depth=3, dropout=0.0)
    assert model.filters == (4, 8, 16) and model.size_divisor == 4
    assert not [l for l in model.layers if isinstance(l, keras.layers.Dropout)]


def test_fixed_image_size_must_be_divisible():
    with pytest.raises(ValueError, match=r"\(30, 32\) is not a multiple of 16.*\(32, 32\)"):
        UNet(num_classes=2, image_size=(30, 32))
    model = UNet(num_classes=2, image_size=(32, 48), **TINY_UNET)
    assert model.input_shape == (None, 32, 48, 1)
    assert check_image_size(None, 16) == (None, None)
    with pytest.raises(ValueError, match="positive ints"):
        check_image_size((32, -16), 16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dropout=None, filters=(4, 8)), "give one rate or 2 rates"),
    (dict(dropout=(0.1,), filters=(4, 8)), "2 rates in"),
    (dict(dropout=1.0), r"\[0, 1\)"),
    (dict(filters=(4, 0)), "positive"),
])
def test_unet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(num_classes=2, **kwargs)


def test_deeplab_shapes_any_size():
    model = DeepLabV3Plus(num_classes=3, input_channels=1, **TINY_DEEPLAB)
    assert model.size_divisor == 16
    for h, w in [(32, 48), (37, 45)]:
        out = model(_images((1, h, w, 1)), training=False)
        assert tuple(out.shape) == (1, h, w, 3)
        assert out.dtype == "float32"
    four_channels = DeepLabV3Plus(num_classes=2, input_channels=4, **TINY_DEEPLAB)
    assert tuple(four_channels(_images((1, 32, 32, 4))).shape) == (1, 32, 32, 2)


def test_deeplab_scales_input_to_minus_one_one():
    model = DeepLabV3Plus(num_classes=2, input_channels=3, **TINY_DEEPLAB)
    probe = keras.Model(model.input, model.get_layer("to_minus1_1").output)
    x = _images((1, 32, 32, 3))
    np.testing.assert_allclose(probe(x).numpy(), 2 * x - 1, atol=1e-6)


def test_deeplab_gray_input_is_repeated_to_rgb():
    """A gray image and the same image repeated to RGB give the same backbone features."""
    gray = DeepLabV3Plus(num_classes=2, input_channels=1, **TINY_DEEPLAB)
    rgb = DeepLabV3Plus(num_classes=2, input_channels=3, **TINY_DEEPLAB)
    rgb.set_weights(gray.get_weights())  # same architecture after the gray_to_rgb layer
    x = _images((1, 32, 32, 1))
    np.testing.assert_allclose(gray(x, training=False).numpy(),
                               rgb(np.repeat(x, 3, axis=-1), training=False).numpy(), atol=1e-5)


def test_deeplab_backbone_weights_from_local_file(tmp_path):
    source = keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=0.35,
                                            include_top=False, weights=None)
    source.get_layer("Conv1").kernel.assign(_images(source.get_layer("Conv1").kernel.shape))
    path = str(tmp_path / "mobilenet.weights.h5")
    source.save_weights(path)
    model = DeepLabV3Plus(num_classes=2, backbone_weights=path, **TINY_DEEPLAB)
    backbone = model.get_layer("mobilenetv2_features")
    np.testing.assert_array_equal(backbone.get_layer("Conv1").kernel.numpy(),
                                  source.get_layer("Conv1").kernel.numpy())
    assert model.get_config()["backbone_weights"] is None  # saved models carry the weights


def test_deeplab_imagenet_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="_0.35_224_no_top.h5 in the Keras cache"):
        DeepLabV3Plus(num_classes=2, backbone_weights="imagenet", **TINY_DEEPLAB)
    cached = (tmp_path / "models"
              / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert resolve_backbone_weights("imagenet", 0.35) == str(cached)
    with pytest.raises(ValueError, match="alpha in"):
        resolve_backbone_weights("imagenet", 0.6)
    with pytest.raises(FileNotFoundError, match="no weights file at"):
        resolve_backbone_weights(str(tmp_path / "missing.h5"), 1.0)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        DeepLabV3Plus(num_classes=2, input_channels=4, backbone_weights="imagenet")


@pytest.mark.parametrize("cls, kwargs", [(UNet, TINY_UNET), (DeepLabV3Plus, TINY_DEEPLAB)])
def test_logits_float32_under_mixed_precision(cls, kwargs):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = cls(num_classes=3, input_channels=1, **kwargs)
        out = model(_images((1, 32, 32, 1)), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == "float16"  # the policy did apply to the body
    assert out.dtype == "float32" and model.output.dtype == "float32"
    assert np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize("cls, kwargs", [(UNet, TINY_UNET), (DeepLabV3Plus, TINY_DEEPLAB)])
def test_keras_file_round_trip_safe_mode(cls, kwargs, tmp_path):
    model = cls(num_classes=3, input_channels=1, **kwargs)
    _randomize_batchnorm_statistics(model)
    x = _images((2, 32, 32, 1))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is cls
    assert loaded.get_config() == model.get_config()
    assert loaded.size_divisor == model.size_divisor
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  model(x, training=False).numpy())


@pytest.mark.parametrize("cls, kwargs", [(UNet, TINY_UNET), (DeepLabV3Plus, TINY_DEEPLAB)])
def test_config_round_trip(cls, kwargs):
    model = cls(num_classes=5, input_channels=1, image_size=(32, 16), name="net", **kwargs)
    config = json.loads(json.dumps(model.get_config()))  # configs must be JSON-able
    clone = cls.from_config(config)
    assert clone.get_config() == model.get_config()
    assert clone.name == "net" and clone.input_shape == (None, 32, 16, 1)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    x = _images((1, 32, 16, 1))
    np.testing.assert_array_equal(clone(x, training=False).numpy(),
                                  model(x, training=False).numpy())


def test_build_model():
    model = build_model("unet", num_classes=3, input_channels=2, **TINY_UNET)
    assert isinstance(model, UNet) and model.input_shape == (None, None, None, 2)
    assert model.output_shape == (None, None, None, 3) and model.filters == (4, 8, 16)
    model = build_model("deeplabv3plus", 2, 3, **TINY_DEEPLAB)
    assert isinstance(model, DeepLabV3Plus) and model.aspp_filters == 8


def test_build_model_errors():
    with pytest.raises(ValueError, match="'resnet'; known names: deeplabv3plus, unet"):
        build_model("resnet", 2, 1)
    with pytest.raises(TypeError, match=r"unknown arguments \['alpha'\]; UNet accepts"):
        build_model("unet", 2, 1, alpha=0.5)


def strided_encoder(channels=1, strides=(4, 4)):
    inputs = keras.Input((None, None, channels))
    low = keras.layers.Conv2D(8, 3, strides=strides[0], padding="same", name="low")(inputs)
    high = keras.layers.Conv2D(16, 3, strides=strides[1], padding="same", name="high")(low)
    return keras.Model(inputs, [low, high], name="my_encoder")


def test_deeplab_takes_your_own_encoder_and_saves_it(tmp_path):
    keras.utils.set_random_seed(0)
    model = DeepLabV3Plus(3, input_channels=1, encoder=strided_encoder(), aspp_filters=8,
                          low_level_filters=4, decoder_filters=8)
    assert model.get_layer("my_encoder").get_layer("high").kernel.shape == (3, 3, 8, 16)
    x = np.random.default_rng(0).random((2, 48, 32, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    assert before.shape == (2, 48, 32, 3)
    model.save(tmp_path / "custom.keras")
    loaded = keras.saving.load_model(tmp_path / "custom.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, atol=1e-6)
    with pytest.raises(ValueError, match="stride-4 features, stride-16 features"):
        DeepLabV3Plus(3, input_channels=1, encoder=strided_encoder(strides=(2, 2)))
    with pytest.raises(ValueError, match=r"does not take \[B, H, W, 1\] images"):
        DeepLabV3Plus(3, input_channels=1, encoder=strided_encoder(channels=3))
