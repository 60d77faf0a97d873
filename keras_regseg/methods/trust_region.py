"""``--method trust_region``: the robust trust region (Marin & Boykov, ICCV 2021).

Stage A (:class:`~keras_regseg.methods.trust_region_stage_a.StageA`, a
callback) solves a graph cut near the current prediction for every training
image every M passes over the data; stage B
(:class:`~keras_regseg.methods.trust_region_model.TrustRegionModel`) trains on
the robust cross-entropy to those proposals, which the pipeline reads from a
:class:`~keras_regseg.methods.proposal_store.ProposalStore` and augments
with the images. :func:`trust_region_pieces` gives the three pieces for a
user's own ``model.fit``.
"""

from __future__ import annotations

import dataclasses
import typing

from keras_regseg.methods.method import (Method, MethodSetup, check, check_choice,
                                         check_finite_nonnegative, check_positive)

if typing.TYPE_CHECKING:   # names for the type hints only
    import keras

    from keras_regseg.data.base import SegmentationSource
    from keras_regseg.methods.trust_region_model import TrustRegionModel
    from keras_regseg.methods.trust_region_stage_a import ProposalStore, StageA
    from keras_regseg.solvers import SolverPool

__all__ = ["DEFAULT_NORMALIZATION", "DEFAULT_PROPOSAL_WEIGHT", "ENERGIES", "METHOD", "search",
           "setup", "trust_region_pieces", "TrustRegionConfig"]

ENERGIES = ("library", "authors")
# keras_regseg.losses.robust_ce.NORMALIZATIONS, repeated: validating a config imports no TensorFlow
NORMALIZATIONS = ("seeds", "labeled", "per_term")

DEFAULT_NORMALIZATION = "per_term"
DEFAULT_PROPOSAL_WEIGHT = 30.0
"""Stage B's default: pCE plus 30 x the mean robust cross-entropy to the proposals.

Why: the authors' normalization (``seeds``: the whole sum divided by the seed
pixels) weighs the proposal term by #proposals / #seeds, about 30 at the ~3 %
seed coverage of their scribbles, but over 1000 with one click per scribble,
where the network then collapses onto the proposals' mistakes. A fixed weight
of 30 keeps the authors' step at full scribbles and makes it independent of how
densely the user annotates. Chosen on validation data, never the test fold:
synthetic shapes, 3 seeds, paired against Grid-GD: clicks +0.037 ± 0.008
(``seeds``: -0.378), full scribbles +0.026 ± 0.009 (``seeds``: +0.028); 16
held-out ACDC training patients, clicks: 0.791 mean Dice (Grid-GD 0.772,
``seeds`` at its best lambda 0.436); see ``benchmarks/results/``.
"""


@dataclasses.dataclass
class TrustRegionConfig:
    """Robust trust region: stage A (graph cut near the prediction) every ``every``
    passes over the training data (the paper's M epochs, rounded to whole training
    epochs), stage B (robust cross-entropy to the proposals) in between.

    ``lambda_weight`` is lambda of eq. 16 (0.05 full scribbles, 0.1 shortened)
    per unit of Potts weight, ``potts_weight`` the Potts weight (100) against
    Boykov-Jolly ``w_pq`` in [0, 1]: the solver's unary weight is their product
    (see ``keras_regseg.methods.trust_region_stage_a``). ``epsilon`` is the outlier probability of
    proposal pixels (``null``: the authors' 0.944 for 21 classes carried over to
    K classes, see ``keras_regseg.losses.robust_ce.default_epsilon``);
    ``learn_epsilon`` fits it during training. ``normalization`` divides stage
    B's sum by the seed pixels (``seeds``, the authors'), by all labeled pixels
    (``labeled``), or each term by its own pixels (``per_term``, the default:
    pCE plus ``proposal_weight`` times the mean robust cross-entropy, see
    :data:`DEFAULT_PROPOSAL_WEIGHT` for why); see
    ``keras_regseg.losses.robust_ce``. ``overlap`` runs stage-A rounds
    after the first in the background. ``processes``: solver workers.

    ``energy: authors`` solves stage A as the authors' ``alpha_expansion.cpp``
    does (see ``keras_regseg.solvers.alpha_expansion.ENERGIES``): lambda is
    then their ``tr_weight`` itself (0.05 full scribbles, 0.1 shortened), the
    Potts term is normalized per pixel (N_roi / N_pairs, about 1/4) and costs
    are truncated to integers at scale 10000 / potts; in ``library`` units that
    is lambda of about 0.002. ``warm_start`` starts each solve from the image's
    previous proposal, as their code does.
    """

    lambda_weight: float = 0.05
    potts_weight: float = 100.0
    energy: str = "library"
    warm_start: bool = False
    epsilon: typing.Optional[float] = None
    learn_epsilon: bool = False
    normalization: str = DEFAULT_NORMALIZATION
    proposal_weight: float = DEFAULT_PROPOSAL_WEIGHT
    every: int = 5
    max_iterations: int = 5
    overlap: bool = True
    processes: typing.Optional[int] = None

    def validate(self):
        check_finite_nonnegative("lambda_weight", self.lambda_weight)
        check_finite_nonnegative("potts_weight", self.potts_weight)
        check_choice("energy", self.energy, ENERGIES)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_positive("proposal_weight", self.proposal_weight)
        check_positive("every", self.every)
        check_positive("max_iterations", self.max_iterations)
        check(self.processes is None or self.processes >= 0, "processes", self.processes,
              "null or an integer >= 0")
        check(self.epsilon is None or 0.0 <= self.epsilon < 1.0, "epsilon", self.epsilon,
              "null or 0 <= epsilon < (K - 1) / K")

    def solver_settings(self):
        """The solver's ``unary_weight``, ``potts_weight``, ``max_iterations`` and ``energy``."""
        from keras_regseg.methods.trust_region_stage_a import solver_weights

        if self.energy == "authors":   # their tr_weight and Potts weight, used as they are
            unary_weight, potts_weight = self.lambda_weight, self.potts_weight
        else:
            unary_weight, potts_weight = solver_weights(self.lambda_weight, self.potts_weight)
        return dict(unary_weight=unary_weight, potts_weight=potts_weight,
                    max_iterations=self.max_iterations, energy=self.energy)


def trust_region_pieces(network: keras.Model, train_source: SegmentationSource,
                        tr_config: TrustRegionConfig | None = None, every: int = 1,
                        batch_size: int = 8, pool: SolverPool | None = None,
                        progress: bool = True) -> tuple[TrustRegionModel, StageA, ProposalStore]:
    """``(model, stage_a, store)`` for training ``network`` by the trust region in your own ``fit``.

    ``model`` is the stage-B :class:`~keras_regseg.methods.trust_region_model.TrustRegionModel`
    to compile and fit; ``stage_a`` the callback to pass to ``fit`` (a round
    before training, then every ``every`` epochs); ``store.lookup`` the
    ``proposals`` argument of :func:`keras_regseg.data.make_training_dataset`.
    """
    from keras_regseg.methods.latent_solve import shared_pool
    from keras_regseg.methods.trust_region_model import TrustRegionModel
    from keras_regseg.methods.proposal_store import ProposalStore
    from keras_regseg.methods.trust_region_stage_a import StageA

    tr_config = tr_config or TrustRegionConfig()
    store = ProposalStore()
    model = TrustRegionModel(network, epsilon=tr_config.epsilon,
                             learn_epsilon=tr_config.learn_epsilon,
                             normalization=tr_config.normalization,
                             proposal_weight=tr_config.proposal_weight)
    stage_a = StageA(train_source, network, store, every=every, batch_size=batch_size,
                     overlap=tr_config.overlap, warm_start=tr_config.warm_start,
                     pool=pool or shared_pool(tr_config.processes), progress=progress,
                     **tr_config.solver_settings())
    return model, stage_a, store


def setup(config, network, data):
    from keras_regseg.data.pipeline import DictTargets
    from keras_regseg.methods.latent_solve import CloseSolverPool, shared_pool
    from keras_regseg.methods.trust_region_stage_a import epochs_per_round, grid_proposals
    from keras_regseg.data.shard import ShardSource

    if data is None:
        raise ValueError("the trust region needs the training data (setup(..., data=)) for "
                         "stage A.")
    tr = config.trust_region
    # Passes over the whole training set at the global batch (a multi-worker run gives this
    # worker's shard, and batch_size is the global batch).
    whole_set = data.train.source if isinstance(data.train, ShardSource) else data.train
    every = epochs_per_round(tr.every, len(whole_set), config.training.batch_size,
                             config.training.steps_per_epoch)
    # Equal-sized training images (synthetic, ACDC) are solved in batches; others one by one.
    batch_size = config.training.batch_size if data.input_size else 1
    model, stage_a, store = trust_region_pieces(network, data.train, tr, every=every,
                                                batch_size=batch_size)
    settings = tr.solver_settings()

    def extra_maps(_model, count=config.training.num_grid_images):
        samples = [data.validation.load(i) for i in range(min(count, len(data.validation)))]
        return {"proposal": grid_proposals(samples, network, pool=shared_pool(tr.processes),
                                           **settings)}

    return MethodSetup(model, DictTargets(("seeds", "proposals")),
                       callbacks=[stage_a, CloseSolverPool()],
                       proposals=store.lookup, extra_maps=extra_maps)


def search(hp, config, num_classes):
    """lambda (log scale) and epsilon (a quarter of its maximum to 98 % of it).

    The Potts weight is not searched: with the library energy stage A minimizes
    ``potts * (lambda * sum -log f + sum w_pq [..])``, whose minimizer does not
    depend on it.
    """
    from keras_regseg.losses.robust_ce import default_epsilon, max_epsilon
    from keras_regseg.training.search_space import log_range

    tr = config.trust_region
    log_range(hp, "trust_region.lambda_weight", tr.lambda_weight)
    epsilon = default_epsilon(num_classes) if tr.epsilon is None else tr.epsilon
    top = max_epsilon(num_classes)
    hp.Float("trust_region.epsilon", min(0.25 * top, epsilon), max(0.98 * top, epsilon),
             default=float(epsilon))


METHOD = Method("trust_region", "stage A: graph cut near the prediction; stage B: robust "
                "cross-entropy", setup, config=TrustRegionConfig, search=search)
