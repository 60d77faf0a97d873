"""``--method adm``: ADM (Marin et al., CVPR 2019), a graph-cut latent step inside every step.

Per batch, alpha-expansion solves the grid Potts energy for a hard latent
labeling near the prediction, then one SGD step on pCE + gamma * CE to it
(:class:`~keras_regseg.methods.adm_model.ADMModel`), in a pool of solver
processes closed when ``fit`` ends.
"""

import dataclasses
import typing

from keras_regseg.methods.method import (Method, MethodSetup, check, check_finite_nonnegative,
                                         check_positive)

__all__ = ["ADMConfig", "METHOD", "search", "setup"]


@dataclasses.dataclass
class ADMConfig:
    """ADM: a graph-cut latent step per batch, then one SGD step on pCE + gamma * CE(latent).

    The latent step minimizes ``unary_weight * sum -log p + potts_weight * sum w_pq
    [x_p != x_q]`` (Boykov-Jolly ``w_pq`` in [0, 1]); defaults are the authors'
    (data cost 1000 * -log p, edge cost 1000 * 80 * w_pq, CE weight 1.5).
    ``processes``: solver worker processes (``null``: one per CPU).
    """

    gamma: float = 1.5
    potts_weight: float = 80.0
    unary_weight: float = 1.0
    max_iterations: int = 5
    processes: typing.Optional[int] = None

    def validate(self):
        for key in ("gamma", "potts_weight", "unary_weight"):
            check_finite_nonnegative(key, getattr(self, key))
        check_positive("max_iterations", self.max_iterations)
        check(self.processes is None or self.processes >= 0, "processes", self.processes,
              "null or an integer >= 0")


def setup(config, network, data=None):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.methods.adm_model import ADMModel
    from keras_regseg.methods.latent_solve import CloseSolverPool

    adm = config.adm
    model = ADMModel(network, gamma=adm.gamma, potts_weight=adm.potts_weight,
                     unary_weight=adm.unary_weight, max_iterations=adm.max_iterations,
                     processes=adm.processes)
    return MethodSetup(model, DictTargets(("seeds", "image")), callbacks=[CloseSolverPool()])


def search(hp, config, num_classes):
    """gamma and the Potts weight, log scale around their values."""
    from keras_regseg.training.search_space import log_range

    log_range(hp, "adm.gamma", config.adm.gamma)
    log_range(hp, "adm.potts_weight", config.adm.potts_weight)


METHOD = Method("adm", "alternate a graph-cut solve of the regularized loss with network updates",
                setup, config=ADMConfig, search=search)
