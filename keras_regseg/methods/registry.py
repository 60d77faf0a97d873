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

    ``target`` says which label map the pipeline packs into ``y_true``:
    ``"weak"`` (scribbles) or ``"dense"`` (full masks).
    """

    model: keras.Model
    loss: keras.losses.Loss
    target: str = "weak"
    callbacks: typing.List[keras.callbacks.Callback] = dataclasses.field(default_factory=list)


def regularizer_loss(gd_config):
    """The CRF regularizer of a :class:`~keras_regseg.training.config.GDConfig`."""
    if gd_config.regularizer == "grid":
        from keras_regseg.losses.grid_crf import GridCRFLoss

        return GridCRFLoss(relaxation=gd_config.relaxation)
    from keras_regseg.losses.dense_crf import DenseCRFLoss

    return DenseCRFLoss(sigma_rgb=gd_config.sigma_rgb, sigma_xy=gd_config.sigma_xy,
                        scale_factor=gd_config.scale_factor)


def prepare_method(config, network):
    """A :class:`MethodSetup` for ``config.method`` around ``network``."""
    method = config.method
    if method == "pce":
        return MethodSetup(network, PartialCrossEntropy(), "weak")
    if method == "full":
        return MethodSetup(network, CrossEntropy(), "dense")
    if method == "gd":
        loss = WeightedSumLoss([PartialCrossEntropy(), regularizer_loss(config.gd)],
                               [1.0, config.gd.weight], name=f"pce_plus_{config.gd.regularizer}_crf")
        return MethodSetup(network, loss, "weak")
    raise NotImplementedError(
        f"method {method!r} is not available in this version of keras_regseg; "
        "available: pce, full, gd.")
