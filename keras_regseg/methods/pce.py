"""``--method pce``: partial cross-entropy on the seed pixels only (the baseline).

The network trains on :class:`~keras_regseg.losses.PartialCrossEntropy` of the
seeds (:class:`~keras_regseg.methods.loss_model.LossModel`); a network compiled
with that loss on packed targets runs the same computation in a user's ``fit``.
"""

from keras_regseg.methods.method import Method, MethodSetup

__all__ = ["METHOD", "setup"]


def setup(config, network, data=None):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.losses import PartialCrossEntropy
    from keras_regseg.methods.loss_model import LossModel

    return MethodSetup(LossModel(network, PartialCrossEntropy()), DictTargets(("seeds",)))


METHOD = Method("pce", "partial cross-entropy on the seed pixels only (the baseline)", setup,
                finetunes=False)
