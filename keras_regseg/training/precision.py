"""Mixed precision: the Keras dtype policy of ``training.mixed_precision``.

``"float16"`` and ``"bfloat16"`` compute the network's layers in half
precision with float32 variables (Keras' ``mixed_float16`` /
``mixed_bfloat16`` policies); ``"none"`` is plain ``float32``. The networks
keep a float32 head, the losses and solvers work on float32, and under
``mixed_float16`` ``compile`` wraps the optimizer in a
``keras.optimizers.LossScaleOptimizer`` whose ``scale_loss`` every
``train_step`` of this library calls (float16 gradients would underflow
otherwise; bfloat16 has float32's range and needs no scaling).

The policy is global Keras state read when a layer is built, so it must be
set before the network is built and put back afterwards (or it leaks into
every later model of the process): :func:`precision_policy` does both.

>>> import keras
>>> before = keras.config.dtype_policy().name
>>> with precision_policy("bfloat16"):
...     keras.layers.Dense(2).dtype_policy.name
'mixed_bfloat16'
>>> keras.config.dtype_policy().name == before
True
"""

import contextlib
import functools

import keras

__all__ = ["POLICIES", "policy_name", "precision_policy", "set_precision", "with_config_precision"]

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
"""``training.mixed_precision`` value -> Keras dtype policy name."""


def policy_name(precision):
    """The Keras dtype policy name of a ``training.mixed_precision`` value.

    >>> policy_name("float16")
    'mixed_float16'
    >>> policy_name("half")
    Traceback (most recent call last):
    ...
    ValueError: mixed_precision = 'half'; expected one of none, float16, bfloat16.
    """
    if precision not in POLICIES:
        raise ValueError(f"mixed_precision = {precision!r}; expected one of "
                         f"{', '.join(POLICIES)}.")
    return POLICIES[precision]


def set_precision(precision):
    """Set the global Keras dtype policy of ``precision``; return the previous policy.

    Pass the returned policy to ``keras.config.set_dtype_policy`` to undo it.
    ``"none"`` sets ``float32`` (not "leave as is"), so a run depends on its
    config alone.
    """
    name = policy_name(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    return previous


@contextlib.contextmanager
def precision_policy(precision):
    """Context manager: the dtype policy of ``precision`` inside, the previous one after.

    Restores the previous policy even when the body raises.
    """
    previous = set_precision(precision)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


def with_config_precision(function):
    """Decorate ``function(config, ...)`` to run under ``config.training.mixed_precision``.

    Used on :func:`keras_regseg.training.trainer.train`, so the policy is set
    before any network is built and restored when training ends or fails.
    """

    @functools.wraps(function)
    def wrapper(config, *args, **kwargs):
        with precision_policy(config.training.mixed_precision):
            return function(config, *args, **kwargs)

    return wrapper
