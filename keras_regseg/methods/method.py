"""What a training method is: one record per ``--method``, read by the whole library.

A method lives in one module of :mod:`keras_regseg.methods` that defines

- its config section, a dataclass whose defaults are the method's defaults
  (the YAML section and the ``TrainConfig`` attribute of the method's name);
- ``setup(config, network, data) -> MethodSetup``: the model to fit, its loss,
  its targets and callbacks (heavy imports inside, so that reading the record
  stays cheap: ``--help`` and config validation never start TensorFlow);
- its search space for ``--tune``;
- and ``METHOD = Method(...)``, the record tying these together,

and is named once in :data:`keras_regseg.methods.registry.METHOD_MODULES`.
The command line, config validation, the tuner and the trainer read the
records; no other code names a method.

>>> import dataclasses
>>> @dataclasses.dataclass
... class ToyConfig:
...     weight: float = 1.0
...     def validate(self):
...         check(self.weight >= 0, "weight", self.weight, "a number >= 0")
>>> toy = Method("toy", "pCE plus a toy term", setup=lambda c, n, d: None, config=ToyConfig)
>>> toy.section, toy.finetunes
('toy', True)
>>> try:
...     ToyConfig(weight=-1.0).validate()
... except ValueError as error:
...     print(error)
weight = -1.0; expected a number >= 0.
"""

import dataclasses
import math
import typing

__all__ = ["check", "check_choice", "check_finite_nonnegative", "check_positive", "Method",
           "MethodSetup"]


@dataclasses.dataclass
class MethodSetup:
    """The pieces the trainer needs for one method (what ``Method.setup`` returns).

    ``model``: the ``keras.Model`` to fit, a
    :class:`~keras_regseg.methods.wrapper.NetworkWrapper` around the network
    whose training step computes the method's loss. ``targets``: the
    :class:`~keras_regseg.data.pipeline.DictTargets` the pipeline puts in
    ``y_true`` (the seeds, the image, ...).
    ``callbacks`` that add to the epoch logs run before the history and
    TensorBoard. ``proposals`` (optional) maps a training sample dict to an
    extra label map carried through augmentation (trust-region proposals).
    ``extra_maps`` (optional) ``model -> {title: [label maps]}`` adds columns
    to the prediction grid.
    """

    model: typing.Any
    targets: typing.Any
    callbacks: list = dataclasses.field(default_factory=list)
    proposals: typing.Optional[typing.Callable] = None
    extra_maps: typing.Optional[typing.Callable] = None


@dataclasses.dataclass(frozen=True)
class Method:
    """The record of one training method.

    Attributes:
      name: the ``--method`` value.
      summary: one line for ``--help`` and the docs.
      setup: ``(config, network, data) -> MethodSetup``; ``config`` is the
        whole ``TrainConfig`` (the method's section is ``getattr(config, name)``),
        ``data`` a :class:`~keras_regseg.training.data_setup.TrainingData`.
      config: the dataclass of the method's config section, or ``None``.
        Its defaults are the method's defaults; an optional ``validate()``
        raises ``ValueError("key = value; expected ...")`` (see :func:`check`).
      search: ``(hp, config, num_classes) -> None`` adds the method's
        hyperparameters (named by config keys) to a ``keras_tuner.HyperParameters``
        beside the learning rate; ``None``: the learning rate only.
      finetunes: starts from a pCE network when ``training.pretrain_iterations``
        is set (the regularized methods); ``False`` for methods that are
        themselves a first phase (pCE, full supervision).
    """

    name: str
    summary: str
    setup: typing.Callable
    config: typing.Optional[type] = None
    search: typing.Optional[typing.Callable] = None
    finetunes: bool = True

    @property
    def section(self):
        """The config section's name (``None`` without one)."""
        return self.name if self.config is not None else None


def check(condition, key, value, expected):
    """Raise ``ValueError("key = value; expected ...")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{key} = {value!r}; expected {expected}.")


def check_choice(key, value, allowed):
    check(value in allowed, key, value, "one of " + ", ".join(allowed))


def check_finite_nonnegative(key, value):
    check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, key, value,
          "a finite number >= 0")


def check_positive(key, value):
    check(value > 0, key, value, "a positive number")
