"""Build a segmentation network by name (for configs and the command line).

>>> model = build_model("unet", num_classes=4, input_channels=1, filters=(4, 8), dropout=0.0)
>>> model.output_shape
(None, None, None, 4)
>>> build_model("segformer", 4, 1)
Traceback (most recent call last):
...
ValueError: unknown model name 'segformer'; known names: deeplabv3plus, unet.
"""

from __future__ import annotations

import inspect
import typing

from keras_regseg.models.deeplab import DeepLabV3Plus
from keras_regseg.models.unet import UNet

if typing.TYPE_CHECKING:   # names for the type hints only
    import keras

__all__ = ["build_model", "MODELS"]

MODELS = {"unet": UNet, "deeplabv3plus": DeepLabV3Plus}
"""Model names accepted by :func:`build_model` and their classes."""


def build_model(name: str, num_classes: int, input_channels: int,
                **kwargs: typing.Any) -> keras.Model:
    """Instantiate the network ``name`` with logits for ``num_classes`` classes.

    ``kwargs`` are the constructor arguments of the class (see
    :class:`~keras_regseg.models.UNet`, :class:`~keras_regseg.models.DeepLabV3Plus`);
    an argument the class does not take is an error, not silently ignored.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; known names: {', '.join(sorted(MODELS))}.")
    cls = MODELS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "kwargs", "num_classes", "input_channels")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"build_model({name!r}) got unknown arguments {unknown}; "
                        f"{cls.__name__} accepts {accepted}.")
    return cls(num_classes=num_classes, input_channels=input_channels, **kwargs)
