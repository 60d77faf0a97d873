"""``--method pce``: partial cross-entropy on the seed pixels only (the baseline).

The network is compiled with :class:`~keras_regseg.losses.PartialCrossEntropy`
itself, so a user's ``model.fit`` and ``train.py`` run the very same code.
"""

from keras_regseg.methods.method import Method, MethodSetup

__all__ = ["METHOD", "setup"]


def setup(config, network, data=None):
    from keras_regseg.losses import PartialCrossEntropy

    return MethodSetup(network, PartialCrossEntropy(), "weak")


METHOD = Method("pce", "partial cross-entropy on the seed pixels only (the baseline)", setup,
                finetunes=False)
