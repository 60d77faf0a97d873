"""What each ``--method`` trains: the model to fit, its loss and its targets.

Methods that only change the loss (pCE, full supervision, GD) compile the
network itself, so a user's ``model.fit`` and ``train.py`` run the very same
code. Methods with a solver in the loop (ADM, trust region, CCNN) wrap the
network in a ``keras.Model`` whose ``train_step`` calls the solver.
"""

import dataclasses
import typing

import keras

from keras_regseg.losses import (CrossEntropy, PartialCrossEntropy, WeightedSumLoss,
                                  cross_entropy_plus_dice)


@dataclasses.dataclass
class MethodSetup:
    """The pieces :func:`keras_regseg.training.trainer.train` needs for one method.

    ``target`` says what the pipeline puts in ``y_true`` (see
    :data:`keras_regseg.data.pipeline.TARGETS`): ``"weak"`` (scribbles),
    ``"dense"`` (full masks), ``"tags"`` or ``"tags_and_sizes"`` (CCNN).
    ``loss`` is ``None`` for models whose ``train_step`` computes its own.
    ``proposals`` (optional) maps a training sample dict to an extra label map
    carried through augmentation and packed after the labels (trust-region
    proposals, see ``make_training_dataset``). ``extra_maps`` (optional)
    ``model -> {title: [label maps]}`` adds columns to the prediction grid.
    ``callbacks`` that add to the epoch logs run before the history and TensorBoard.
    """

    model: keras.Model
    loss: typing.Optional[keras.losses.Loss]
    target: str = "weak"
    callbacks: typing.List[keras.callbacks.Callback] = dataclasses.field(default_factory=list)
    proposals: typing.Optional[typing.Callable] = None
    extra_maps: typing.Optional[typing.Callable] = None


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


def prepare_method(config, network, data=None):
    """A :class:`MethodSetup` for ``config.method`` around ``network``.

    ``data`` (a :class:`~keras_regseg.training.data_setup.TrainingData`) is needed
    by the trust region (stage A reads the un-augmented training images).
    """
    method = config.method
    if method == "pce":
        return MethodSetup(network, PartialCrossEntropy(), "weak")
    if method == "full":
        loss = cross_entropy_plus_dice() if config.full.loss == "ce_dice" else CrossEntropy()
        return MethodSetup(network, loss, "dense")
    if method == "gd":
        loss = WeightedSumLoss([PartialCrossEntropy(), regularizer_loss(config.gd)],
                               name=f"pce_plus_{config.gd.regularizer}_crf")
        return MethodSetup(network, loss, "weak")
    if method == "ccnn":
        return ccnn_setup(config.ccnn, network)
    if method == "adm":
        return adm_setup(config.adm, network)
    if method == "trust_region":
        if data is None:
            raise ValueError("the trust region needs the training data (prepare_method(..., data=)) "
                             "for stage A.")
        return trust_region_setup(config, network, data)
    raise NotImplementedError(
        f"method {method!r} is not available in this version of keras_regseg; "
        "available: pce, full, gd, adm, trust_region, ccnn.")


def adm_setup(adm_config, network):
    """ADM: the network wrapped in an :class:`ADMModel`; the solver pool closes with ``fit``."""
    from keras_regseg.methods.adm import ADMModel
    from keras_regseg.methods.latent_solve import CloseSolverPool

    model = ADMModel(network, gamma=adm_config.gamma, potts_weight=adm_config.potts_weight,
                     unary_weight=adm_config.unary_weight,
                     max_iterations=adm_config.max_iterations, processes=adm_config.processes)
    return MethodSetup(model, None, "weak", callbacks=[CloseSolverPool()])


def trust_region_setup(config, network, data):
    """Trust region: stage A as a callback, stage B as a :class:`TrustRegionModel`."""
    from keras_regseg.methods.latent_solve import CloseSolverPool, shared_pool
    from keras_regseg.methods.trust_region import TrustRegionModel
    from keras_regseg.methods.trust_region_stage_a import (ProposalStore, StageA,
                                                           epochs_per_round, grid_proposals,
                                                           solver_weights)
    from keras_regseg.training.distribute import ShardSource

    tr = config.trust_region
    store = ProposalStore()
    model = TrustRegionModel(network, epsilon=tr.epsilon, learn_epsilon=tr.learn_epsilon)
    if tr.energy == "authors":   # their tr_weight and Potts weight, used as they are
        unary_weight, potts_weight = tr.lambda_weight, tr.potts_weight
    else:
        unary_weight, potts_weight = solver_weights(tr.lambda_weight, tr.potts_weight)
    settings = dict(unary_weight=unary_weight, potts_weight=potts_weight,
                    max_iterations=tr.max_iterations, energy=tr.energy)
    # Equal-sized training images (synthetic, ACDC) are solved in batches; others one by one.
    batch_size = config.training.batch_size if data.input_size else 1
    # Passes over the whole training set at the global batch (a multi-worker run gives this
    # worker's shard, and batch_size is the global batch).
    whole_set = data.train.source if isinstance(data.train, ShardSource) else data.train
    every = epochs_per_round(tr.every, len(whole_set), config.training.batch_size,
                             config.training.steps_per_epoch)
    stage_a = StageA(data.train, network, store, every=every, batch_size=batch_size,
                     overlap=tr.overlap, warm_start=tr.warm_start,
                     pool=shared_pool(tr.processes), **settings)

    def extra_maps(_model, count=config.training.num_grid_images):
        samples = [data.validation.load(i) for i in range(min(count, len(data.validation)))]
        return {"proposal": grid_proposals(samples, network, pool=shared_pool(tr.processes),
                                           **settings)}

    return MethodSetup(model, None, "weak", callbacks=[stage_a, CloseSolverPool()],
                       proposals=store.lookup, extra_maps=extra_maps)


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
