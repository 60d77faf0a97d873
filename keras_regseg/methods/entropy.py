"""``--method entropy``: pCE plus entropy minimization on the unlabeled pixels.

The network trains on ``WeightedSumLoss([PartialCrossEntropy(),
EntropyLoss(weight)])`` of the seeds (:class:`~keras_regseg.losses.entropy.EntropyLoss`):
a standard baseline of weakly supervised segmentation, with no pairwise term,
against which the CRF-regularized methods are read.
"""

import dataclasses

from keras_regseg.methods.method import Method, MethodSetup, check_finite_nonnegative

__all__ = ["DEFAULT_WEIGHT", "EntropyConfig", "METHOD", "search", "setup"]

DEFAULT_WEIGHT = 0.1
"""WSL4MIS's weight of the normalized entropy (in [0, 1], so it means the same for any K)."""


@dataclasses.dataclass
class EntropyConfig:
    """``weight`` multiplies the mean normalized entropy of the unlabeled pixels."""

    weight: float = DEFAULT_WEIGHT

    def validate(self):
        check_finite_nonnegative("weight", self.weight)


def setup(config, network, data=None):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.losses import PartialCrossEntropy, WeightedSumLoss
    from keras_regseg.losses.entropy import EntropyLoss
    from keras_regseg.methods.loss_model import LossModel

    loss = WeightedSumLoss([PartialCrossEntropy(), EntropyLoss(config.entropy.weight)],
                           name="pce_plus_entropy")
    return MethodSetup(LossModel(network, loss), DictTargets(("seeds",)))


def search(hp, config, num_classes):
    """The entropy weight, log scale around its value."""
    from keras_regseg.training.search_space import log_range

    log_range(hp, "entropy.weight", config.entropy.weight)


METHOD = Method("entropy", "pCE + entropy minimization on the unlabeled pixels", setup,
                config=EntropyConfig, search=search)
