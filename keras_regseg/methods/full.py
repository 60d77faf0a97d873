"""``--method full``: full supervision on dense masks (the upper bound).

The default loss is WSL4MIS's ``0.5 * (CE + Dice)``
(:func:`~keras_regseg.losses.cross_entropy_plus_dice`); ``full.loss: ce`` keeps
cross-entropy alone, which converges far more slowly on small structures.
"""

import dataclasses

from keras_regseg.methods.method import Method, MethodSetup, check_choice

__all__ = ["FullConfig", "LOSSES", "METHOD", "setup"]

LOSSES = ("ce_dice", "ce")


@dataclasses.dataclass
class FullConfig:
    """``loss``: ``"ce_dice"`` (WSL4MIS's ``0.5 * (CE + Dice)``, the default) or ``"ce"``."""

    loss: str = "ce_dice"

    def validate(self):
        check_choice("loss", self.loss, LOSSES)


def setup(config, network, data=None):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.losses import CrossEntropy, cross_entropy_plus_dice
    from keras_regseg.methods.loss_model import LossModel

    loss = cross_entropy_plus_dice() if config.full.loss == "ce_dice" else CrossEntropy()
    return MethodSetup(LossModel(network, loss), DictTargets(("dense",)))


METHOD = Method("full", "cross-entropy (+ Dice) on dense masks (the upper bound)", setup,
                config=FullConfig, finetunes=False)
