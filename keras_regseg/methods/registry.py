"""What each ``--method`` trains: the model to fit, its loss and its targets.

Methods that only change the loss (pCE, full supervision, GD) compile the
network itself, so a user's ``model.fit`` and ``train.py`` run the very same
code. Methods with a solver in the loop (ADM, trust region, CCNN) wrap the
network in a ``keras.Model`` whose ``train_step`` calls the solver.
"""

import dataclasses
import typing

import keras

from keras_regseg.losses import CrossEntropy, PartialCrossEntropy, WeightedSumLoss


@dataclasses.dataclass
class MethodSetup:
    """The pieces :func:`keras_regseg.training.trainer.train` needs for one method.

    ``target`` says what the pipeline puts in ``y_true`` (see
    :data:`keras_regseg.data.pipeline.TARGETS`): ``"weak"`` (scribbles),
    ``"dense"`` (full masks), ``"tags"`` or ``"tags_and_sizes"`` (CCNN).
    ``loss`` is ``None`` for models whose ``train_step`` computes its own.
    """

    model: keras.Model
    loss: typing.Optional[keras.losses.Loss]
    target: str = "weak"
    callbacks: typing.List[keras.callbacks.Callback] = dataclasses.field(default_factory=list)


GRID_DEFAULT_WEIGHT = 1.0
"""Grid CRF weight when the config gives none: the per-pixel Potts energy counts as much as
the per-seed cross-entropy (both are means, so the ratio does not depend on image size)."""


def regularizer_loss(gd_config):
    """The CRF regularizer of a :class:`~keras_regseg.training.config.GDConfig`."""
    from keras_regseg.losses import DenseCRFLoss, GridCRFLoss

    if gd_config.regularizer == "grid":
        weight = GRID_DEFAULT_WEIGHT if gd_config.weight is None else gd_config.weight
        return GridCRFLoss(weight=weight, relaxation=gd_config.relaxation)
    extra = {} if gd_config.weight is None else {"weight": gd_config.weight}
    return DenseCRFLoss(sigma_rgb=gd_config.sigma_rgb, sigma_xy=gd_config.sigma_xy,
                        scale_factor=gd_config.scale_factor, **extra)


def prepare_method(config, network):
    """A :class:`MethodSetup` for ``config.method`` around ``network``."""
    method = config.method
    if method == "pce":
        return MethodSetup(network, PartialCrossEntropy(), "weak")
    if method == "full":
        return MethodSetup(network, CrossEntropy(), "dense")
    if method == "gd":
        loss = WeightedSumLoss([PartialCrossEntropy(), regularizer_loss(config.gd)],
                               name=f"pce_plus_{config.gd.regularizer}_crf")
        return MethodSetup(network, loss, "weak")
    if method == "ccnn":
        return ccnn_setup(config.ccnn, network)
    raise NotImplementedError(
        f"method {method!r} is not available in this version of keras_regseg; "
        "available: pce, full, gd, ccnn.")


def ccnn_setup(ccnn_config, network):
    """CCNN: the network wrapped in a :class:`CCNNModel` trained on image tags."""
    from keras_regseg.methods.ccnn_constraints import TagConstraintConfig
    from keras_regseg.methods.ccnn_model import CCNNModel

    constraints = TagConstraintConfig(
        foreground_lower=ccnn_config.foreground_lower,
        background_lower=ccnn_config.background_lower,
        background_upper=ccnn_config.background_upper,
        large_lower=ccnn_config.large_lower, small_upper=ccnn_config.small_upper)
    model = CCNNModel(network, constraints=constraints, downscale=ccnn_config.downscale,
                      max_iterations=ccnn_config.max_iterations, tolerance=ccnn_config.tolerance)
    return MethodSetup(model, None, "tags_and_sizes" if ccnn_config.size_bits else "tags")
