"""``--method gd``: pCE plus a CRF regularizer, by gradient descent.

The network trains on ``WeightedSumLoss([PartialCrossEntropy(), regularizer])`` of
the seeds and the image (:class:`~keras_regseg.methods.loss_model.LossModel`):
the grid Potts loss (:class:`~keras_regseg.losses.GridCRFLoss`) or the dense
CRF loss of rloss (:class:`~keras_regseg.losses.DenseCRFLoss`).
"""

import dataclasses
import typing

from keras_regseg.methods.method import (Method, MethodSetup, check, check_choice,
                                         check_finite_nonnegative)

__all__ = ["GDConfig", "GRID_DEFAULT_WEIGHT", "METHOD", "regularizer_loss", "search", "setup"]

GRID_DEFAULT_WEIGHT = 1.0
"""Grid CRF weight when the config gives none: the per-pixel Potts energy counts as much as
the per-seed cross-entropy (both are means, so the ratio does not depend on image size)."""


@dataclasses.dataclass
class GDConfig:
    """Gradient descent on pCE + a CRF regularizer (``grid`` or ``dense``).

    ``weight`` multiplies the regularizer; ``null`` takes the regularizer's
    own default (dense: rloss's 2e-9 in per-pixel units, scaled to the
    kernel's size in filtered pixels, :func:`~keras_regseg.losses.dense_crf.default_weight`;
    grid: :data:`GRID_DEFAULT_WEIGHT`). Grid: ``relaxation`` ``bilinear`` (tight) or
    ``quadratic``. Dense CRF: ``sigma_rgb`` on the 0-255 scale;
    ``sigma_xy`` (pixels) and ``scale_factor`` ``null`` follow the image size
    as rloss's 100 px and 0.5 follow its 513-px crops (see
    ``keras_regseg.losses.dense_crf``).
    """

    regularizer: str = "grid"
    weight: typing.Optional[float] = None
    relaxation: str = "bilinear"
    sigma_rgb: float = 15.0
    sigma_xy: typing.Optional[float] = None
    scale_factor: typing.Optional[float] = None

    def validate(self):
        check_choice("regularizer", self.regularizer, ("grid", "dense"))
        check_choice("relaxation", self.relaxation, ("bilinear", "quadratic"))
        if self.weight is not None:
            check_finite_nonnegative("weight", self.weight)
        check(self.sigma_rgb > 0, "sigma_rgb", self.sigma_rgb, "a positive number")
        check(self.sigma_xy is None or self.sigma_xy > 0, "sigma_xy", self.sigma_xy,
              "null or a positive number")
        check(self.scale_factor is None or 0 < self.scale_factor <= 1, "scale_factor",
              self.scale_factor, "null or a number in (0, 1]")


def regularizer_loss(gd_config):
    """The CRF regularizer of a :class:`GDConfig`."""
    from keras_regseg.losses import DenseCRFLoss, GridCRFLoss

    if gd_config.regularizer == "grid":
        weight = GRID_DEFAULT_WEIGHT if gd_config.weight is None else gd_config.weight
        return GridCRFLoss(weight=weight, relaxation=gd_config.relaxation)
    extra = {} if gd_config.weight is None else {"weight": gd_config.weight}
    return DenseCRFLoss(sigma_rgb=gd_config.sigma_rgb, sigma_xy=gd_config.sigma_xy,
                        scale_factor=gd_config.scale_factor, **extra)


def setup(config, network, data=None):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.losses import PartialCrossEntropy, WeightedSumLoss
    from keras_regseg.methods.loss_model import LossModel

    loss = WeightedSumLoss([PartialCrossEntropy(), regularizer_loss(config.gd)],
                           name=f"pce_plus_{config.gd.regularizer}_crf")
    return MethodSetup(LossModel(network, loss), DictTargets(("seeds", "image")))


def search(hp, config, num_classes):
    """The regularizer's weight, log scale around its value (``null``: its default)."""
    from keras_regseg.training.search_space import log_range

    loss = regularizer_loss(config.gd)
    crop = config.data.crop_size or config.data.size
    height, width = (crop, crop) if isinstance(crop, int) else crop
    log_range(hp, "gd.weight", loss.weight_for(height, width) if config.gd.regularizer == "dense"
              else loss.weight)


METHOD = Method("gd", "pCE + a CRF regularizer (grid Potts or dense CRF) by gradient descent",
                setup, config=GDConfig, search=search)
