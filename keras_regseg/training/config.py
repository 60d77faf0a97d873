"""Training configuration: typed sections, YAML loading and strict validation.

A run is described by one :class:`TrainConfig`. YAML files in ``configs/``
hold the same keys; command-line flags override them. Unknown keys and
values of the wrong type fail fast with the file, the key and what was
expected, so a typo never silently falls back to a default.

>>> config = TrainConfig.from_dict({"method": "pce", "training": {"batch_size": 4}})
>>> config.training.batch_size, config.data.name
(4, 'synthetic')
>>> try:
...     TrainConfig.from_dict({"training": {"batch_sise": 4}}, source="my.yaml")
... except ConfigError as error:
...     print(error)
my.yaml: unknown key 'training.batch_sise'; expected one of: iterations, ...
"""

import dataclasses
import math
import reprlib
import typing

import yaml

from keras_regseg.constants import MAX_CLASSES, MAX_IMAGE_PIXELS
from keras_regseg.methods import registry
from keras_regseg.utils.yaml_files import load_yaml

__all__ = ["ConfigError", "data_shape", "DataConfig", "DATASET_SHAPES", "DATASETS",
           "DEFAULT_SHAPES", "DISTRIBUTE", "INTENSITY_NORMALIZATIONS", "MAX_OPTION_VALUES",
           "ModelConfig", "OptimizerConfig", "PRECISIONS", "TrainingConfig"]

DATASETS = ("synthetic", "acdc", "voc", "folder", "volumes")
INTENSITY_NORMALIZATIONS = ("percentile", "zscore", "minmax", "none")
"""``data.normalization`` of volumes: ``keras_regseg.data.volume_files.INTENSITY_NORMALIZATIONS``,
repeated so that validating a config does not import the data layer."""
DISTRIBUTE = ("none", "mirrored", "multiworker")
PRECISIONS = ("none", "float16", "bfloat16")


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


@dataclasses.dataclass
class DataConfig:
    """Which data to train and validate on.

    ``size`` is the square side every image is resized to (ACDC slices) or
    generated at (synthetic); ``crop_size`` the random crop for
    variable-sized images (VOC): one side, or ``[height, width]``. Training
    images are padded to the network's stride (ignored labels), as prediction
    pads them. ``augmentation`` is ``"medical"``
    (rotation, flips), ``"wsl4mis"`` (WSL4MIS's exact recipe, lighter: a flip
    or a rotation or nothing), ``"natural"`` (scale, crop, horizontal flip) or
    ``"none"``. ``holdout_patients`` (ACDC) sets that many training patients
    apart and validates and scores on them instead of the test fold: the
    split to choose settings on. ``num_classes`` and ``channels`` default to
    the dataset's own (synthetic 4 and 1, ACDC 4 and 1, VOC 21 and 3); image
    files larger than ``max_pixels`` are refused from their header.
    ``boxes_file`` (VOC folders) names a file of boxes for CCNN's box
    constraints (:func:`keras_regseg.data.voc.read_boxes_file`); without it,
    boxes come from the dense masks.

    ``name: folder`` reads a plain layout of your own (:data:`~keras_regseg.training.data_setup.FOLDER_LAYOUT`):
    ``images/<id>.png|jpg``, ``scribbles/<id>.png``, optional ``masks/<id>.png``
    and ``splits/<split>.txt`` listing the ids of each split; it needs
    ``num_classes`` (``channels`` defaults to 3). ``unlabeled_value`` is the
    scribble value meaning "no label" (VOC, folders and volumes).

    ``name: volumes`` reads medical volumes of your own (NIfTI or h5, see
    :mod:`keras_regseg.data.volume_files`): the same folder layout with one
    volume per subject, or a ``manifest`` CSV; slices are resized to ``size``;
    it needs ``num_classes``. ``normalization`` scales each volume's
    intensities (``percentile``: clip to the 0.5 / 99.5 percentiles, then
    [0, 1]; ``zscore``; ``minmax``; ``none``); ``slice_axis`` is the axis cut
    into slices (default: the last for NIfTI, the first for h5); ``spacing``
    the voxel size for files that carry none (HD95 is then in millimetres).
    Training validates on ``val_split``; ``test_split`` is what
    ``keras-regseg-evaluate --split`` scores by default.
    """

    name: str = "synthetic"
    path: typing.Optional[str] = None
    fold: int = 1
    size: int = 64
    crop_size: typing.Union[int, typing.List[int], None] = None
    augmentation: str = "medical"
    scribble_ratio: float = 1.0
    num_train: int = 240
    num_val: int = 24
    channels: typing.Optional[int] = None
    num_classes: typing.Optional[int] = None
    train_split: str = "train"
    val_split: str = "val"
    unlabeled_value: int = 255
    holdout_patients: int = 0
    max_pixels: int = MAX_IMAGE_PIXELS
    boxes_file: typing.Optional[str] = None
    test_split: str = "test"
    manifest: typing.Optional[str] = None
    normalization: str = "percentile"
    slice_axis: typing.Optional[int] = None
    spacing: typing.Optional[typing.List[float]] = None


@dataclasses.dataclass
class ModelConfig:
    """The network: ``name`` from :func:`keras_regseg.models.build_model`, extra constructor args in ``options``."""

    name: str = "unet"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class OptimizerConfig:
    """SGD with momentum, weight decay and a poly learning-rate schedule (WSL4MIS, TR paper)."""

    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9


@dataclasses.dataclass
class TrainingConfig:
    """How long and how to train.

    ``iterations`` is the total number of optimizer steps of the method's
    phase, cut into epochs of ``steps_per_epoch`` steps (validation, plots,
    checkpoints happen once per epoch). ``pretrain_iterations`` > 0 first
    trains with pCE, then starts the method from that network, as all three
    papers do; ``pretrain_subset`` (a fraction) limits that pCE phase to the
    scribbles of that share of the training patients (images for 2D data), the
    "few scribbles, many tags" setting; ``init_from`` starts from a saved
    ``.keras`` model instead.

    ``distribute`` spreads training over devices: ``"none"`` (the default
    device), ``"mirrored"`` (``tf.distribute.MirroredStrategy`` over the GPUs
    of this host, or over logical CPU devices) or ``"multiworker"``
    (``MultiWorkerMirroredStrategy`` over the hosts of ``TF_CONFIG``);
    ``batch_size`` is the global batch. ``mixed_precision`` is ``"none"``,
    ``"float16"`` or ``"bfloat16"`` compute with float32 variables, outputs
    and losses.
    """

    iterations: int = 1200
    steps_per_epoch: int = 100
    batch_size: int = 8
    seed: int = 0
    deterministic: bool = False
    pretrain_iterations: int = 0
    pretrain_subset: typing.Optional[float] = None
    init_from: typing.Optional[str] = None
    validate_every: int = 1
    num_grid_images: int = 6
    distribute: str = "none"
    mixed_precision: str = "none"


class _TrainConfigBase:
    """Methods of :class:`TrainConfig` (its fields come from the method registry)."""

    @classmethod
    def from_dict(cls, values, source="<config>"):
        """Build and validate a config from nested dicts (e.g. parsed YAML)."""
        config = _build(cls, values or {}, source, prefix="")
        config.validate(source)
        return config

    @classmethod
    def from_yaml(cls, path):
        """Read a YAML file; errors name the file (see :mod:`keras_regseg.utils.yaml_files`)."""
        try:
            values = load_yaml(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found.") from None
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level; "
                              f"got {type(values).__name__}.")
        return cls.from_dict(values, source=str(path))

    def to_dict(self):
        return dataclasses.asdict(self)

    def override(self, source="<command line>", **dotted):
        """A copy with ``section.key=value`` overrides (``None`` values are skipped)."""
        values = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            *parents, leaf = key.split(".")
            node = values
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        return type(self).from_dict(values, source=source)

    def with_settings(self, assignments, source="--set"):
        """A copy with ``"section.key=value"`` assignments, values read as YAML.

        Unlike :meth:`override`, ``null`` is a value (``training.init_from=null``).

        >>> config = TrainConfig().with_settings(["ccnn.box_fraction=[0.5, 0.4]", "gd.weight=2"])
        >>> config.ccnn.box_fraction, config.gd.weight
        ([0.5, 0.4], 2.0)
        """
        import yaml

        values = self.to_dict()
        for assignment in assignments:
            key, equals, text = assignment.partition("=")
            if not equals or not key.strip():
                raise ConfigError(f"{source} {assignment!r}: expected key=value, e.g. "
                                  "ccnn.boxes=true.")
            *parents, leaf = key.strip().split(".")
            node = values
            for depth, parent in enumerate(parents):
                if not isinstance(node.get(parent), dict):
                    raise ConfigError(f"{source} {assignment!r}: unknown section "
                                      f"'{'.'.join(parents[:depth + 1])}'; expected one of: "
                                      f"{', '.join(k for k, v in node.items() if isinstance(v, dict))}.")
                node = node[parent]
            try:
                node[leaf] = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ConfigError(f"{source} {assignment!r}: the value is not valid YAML.") \
                    from None
        return type(self).from_dict(values, source=source)

    @property
    def method_section(self):
        """The config section of the chosen method (``None`` for a method without one)."""
        section = registry.get(self.method).section
        return None if section is None else getattr(self, section)

    def validate(self, source="<config>"):
        _choice(source, "method", self.method, registry.names())
        for record in registry.records().values():
            section = record.section and getattr(self, record.section)
            if hasattr(section, "validate"):
                try:
                    section.validate()
                except ValueError as error:
                    raise ConfigError(f"{source}: {record.section}.{error}") from None
        _choice(source, "data.name", self.data.name, DATASETS)
        _choice(source, "data.normalization", self.data.normalization,
                INTENSITY_NORMALIZATIONS)
        if self.data.slice_axis not in (None, 0, 1, 2):
            raise ConfigError(f"{source}: data.slice_axis = {self.data.slice_axis}; expected "
                              "null (the format's own), 0, 1 or 2.")
        spacing = self.data.spacing
        if spacing is not None and not (len(spacing) == 3 and all(
                math.isfinite(v) and v > 0 for v in spacing)):
            raise ConfigError(f"{source}: data.spacing = {_shown(spacing)}; expected null or "
                              "three positive voxel sizes (file axis order).")
        _choice(source, "data.augmentation", self.data.augmentation,
                ("medical", "wsl4mis", "natural", "none"))
        _choice(source, "training.distribute", self.training.distribute, DISTRIBUTE)
        _choice(source, "training.mixed_precision", self.training.mixed_precision, PRECISIONS)
        _positive(source, "training.iterations", self.training.iterations)
        _positive(source, "training.steps_per_epoch", self.training.steps_per_epoch)
        _positive(source, "training.batch_size", self.training.batch_size)
        _positive(source, "training.validate_every", self.training.validate_every)
        _positive(source, "data.size", self.data.size)
        _positive(source, "optimizer.learning_rate", self.optimizer.learning_rate)
        if not 0.0 <= self.optimizer.momentum < 1.0:
            raise ConfigError(f"{source}: optimizer.momentum = {self.optimizer.momentum}; "
                              "expected a value in [0, 1).")
        if self.optimizer.weight_decay < 0:
            raise ConfigError(f"{source}: optimizer.weight_decay = "
                              f"{self.optimizer.weight_decay}; expected >= 0.")
        self._validate_data_shape(source)
        subset = self.training.pretrain_subset
        if subset is not None and not 0 < subset <= 1:
            raise ConfigError(f"{source}: training.pretrain_subset = {subset}; expected null "
                              "or a fraction in (0, 1].")
        if self.training.pretrain_iterations < 0:
            raise ConfigError(f"{source}: training.pretrain_iterations = "
                              f"{self.training.pretrain_iterations}; expected >= 0.")
        if not 0.0 <= self.data.scribble_ratio <= 1.0:
            raise ConfigError(f"{source}: data.scribble_ratio = {self.data.scribble_ratio}; "
                              "expected a value in [0, 1].")
        if not 0 <= self.data.holdout_patients < 80:
            raise ConfigError(f"{source}: data.holdout_patients = {self.data.holdout_patients}; "
                              "expected 0..79 (of a fold's 80 training patients).")
        if self.data.name == "acdc" and not 1 <= self.data.fold <= 5:
            raise ConfigError(f"{source}: data.fold = {self.data.fold}; expected 1..5.")
        if self.data.name in ("folder", "volumes") and self.data.num_classes is None:
            raise ConfigError(f"{source}: data.num_classes is required for data.name = "
                              f"{self.data.name!r} (the number of classes its labels use).")
        if self.data.name == "volumes" and self.data.channels not in (None, 1):
            raise ConfigError(f"{source}: data.channels = {self.data.channels}, but volumes "
                              "are read as single-channel slices; leave data.channels out.")
        if self.data.name == "volumes" and not (self.data.path or self.data.manifest):
            raise ConfigError(f"{source}: data.path (the folder of images/, scribbles/, "
                              "masks/, splits/) or data.manifest (a CSV) is required for "
                              "data.name = 'volumes'.")
        if self.data.name in ("acdc", "voc", "folder") and not self.data.path:
            raise ConfigError(f"{source}: data.path is required for data.name = "
                              f"{self.data.name!r} (the folder holding the dataset).")

    def _validate_data_shape(self, source):
        data = self.data
        _positive(source, "data.max_pixels", data.max_pixels)
        crop = data.crop_size
        if crop is not None and not (
                (isinstance(crop, int) and crop > 0)
                or (isinstance(crop, list) and len(crop) == 2 and min(crop) > 0)):
            raise ConfigError(f"{source}: data.crop_size = {_shown(crop)}; expected null, a "
                              "positive side or [height, width].")
        if data.num_classes is not None and not 1 <= data.num_classes <= MAX_CLASSES:
            raise ConfigError(f"{source}: data.num_classes = {data.num_classes}; expected "
                              f"1..{MAX_CLASSES}.")
        if data.channels is not None and data.channels not in (1, 3):
            raise ConfigError(f"{source}: data.channels = {data.channels}; expected 1 "
                              "(greyscale) or 3 (RGB).")
        fixed = DATASET_SHAPES.get(data.name)
        if fixed is not None:
            for key, value, expected in (("num_classes", data.num_classes, fixed[0]),
                                         ("channels", data.channels, fixed[1])):
                if value is not None and value != expected:
                    raise ConfigError(f"{source}: data.{key} = {value}, but {data.name} data "
                                      f"has {expected}; leave data.{key} out.")

    @property
    def epochs(self):
        """Number of epochs of the method's phase (the last one may be partial)."""
        return -(-self.training.iterations // self.training.steps_per_epoch)


def _field(kind):
    return dataclasses.field(default_factory=kind)


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [("method", str, dataclasses.field(default="pce")),
     ("output", typing.Optional[str], dataclasses.field(default=None)),
     ("data", DataConfig, _field(DataConfig)),
     ("model", ModelConfig, _field(ModelConfig)),
     ("optimizer", OptimizerConfig, _field(OptimizerConfig)),
     ("training", TrainingConfig, _field(TrainingConfig)),
     # One section per method that has settings, named as the method (its record's config).
     *((record.section, record.config, _field(record.config))
       for record in registry.records().values() if record.config is not None)],
    bases=(_TrainConfigBase,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = """A whole training run: data, model, optimizer, training and one section per method."""


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxdict = 4
_SHOWN.maxlevel = 2


def _shown(value):
    """A short repr of ``value`` for error messages (a config value may be huge)."""
    return _SHOWN.repr(value)


MAX_OPTION_VALUES = 1000
"""Most values a free-form option mapping (``model.options``) may hold."""


def _check_options(options, source, key):
    """A free-form mapping of constructor arguments: string keys, plain values, bounded size."""
    stack, count = [(key, options)], 0
    while stack:
        name, value = stack.pop()
        count += 1
        if count > MAX_OPTION_VALUES:
            raise ConfigError(f"{source}: {key} holds more than {MAX_OPTION_VALUES} values; "
                              "expected a few constructor arguments.")
        if isinstance(value, dict):
            for sub, item in value.items():
                if not isinstance(sub, str):
                    raise ConfigError(f"{source}: {name} has key {_shown(sub)}; expected "
                                      "names (strings).")
                stack.append((f"{name}.{sub}", item))
        elif isinstance(value, list):
            stack.extend((f"{name}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {name} = {value!r}; expected a finite number.")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"{source}: {name} = {_shown(value)}; expected plain values "
                              "(numbers, strings, lists, mappings).")
    return options


def _choice(source, key, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{source}: {key} = {_shown(value)}; expected one of "
                          f"{', '.join(allowed)}.")


def _positive(source, key, value):
    if value <= 0:
        raise ConfigError(f"{source}: {key} = {value!r}; expected a positive number.")


DATASET_SHAPES = {"synthetic": None, "acdc": (4, 1), "voc": None, "folder": None,
                  "volumes": None}
"""``(num_classes, channels)`` fixed by a dataset, or None when the config may choose them."""

DEFAULT_SHAPES = {"synthetic": (4, 1), "acdc": (4, 1), "voc": (21, 3), "folder": (None, 3),
                  "volumes": (None, 1)}
"""``(num_classes, channels)`` of a dataset when the config leaves them out."""


def data_shape(data):
    """``(num_classes, channels)`` of a :class:`DataConfig`, its dataset's defaults filled in.

    >>> data_shape(DataConfig(name="voc", channels=1))
    (21, 1)
    """
    classes, channels = DEFAULT_SHAPES[data.name]
    return data.num_classes or classes, data.channels or channels


def _build(cls, values, source, prefix):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping; "
                          f"got {type(values).__name__} {_shown(values)}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}'; expected one of: "
                          f"{', '.join(fields)}.")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, source, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, kind, source, f"{prefix}{name}")
    return cls(**kwargs)


def _kind_name(kind):
    """``float``, ``list of float``, ..."""
    if typing.get_origin(kind) is list:
        return f"a list of {_kind_name(typing.get_args(kind)[0])}"
    return kind.__name__


def _check_type(value, kind, source, key):
    """Return ``value`` converted to ``kind`` (int -> float allowed), or raise."""
    optional = typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind)
    if optional:
        if value is None:
            return None
        others = tuple(k for k in typing.get_args(kind) if k is not type(None))
        kind = others[0] if len(others) == 1 else typing.Union[others]
    if typing.get_origin(kind) is typing.Union:   # e.g. a number or a list of numbers
        for option in typing.get_args(kind):
            try:
                return _check_type(value, option, source, key)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key} = {_shown(value)} is a {type(value).__name__}; "
                          f"expected {' or '.join(_kind_name(k) for k in typing.get_args(kind))}.")
    if typing.get_origin(kind) is list and isinstance(value, list):
        item = typing.get_args(kind)[0]
        return [_check_type(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key} = {value!r}; expected a finite number.")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is dict and isinstance(value, dict):
        return _check_options(value, source, key)
    if kind in (str, bool) and isinstance(value, kind):
        return value
    raise ConfigError(f"{source}: {key} = {_shown(value)} is a {type(value).__name__}; "
                      f"expected {'null or ' if optional else ''}{kind.__name__}.")
