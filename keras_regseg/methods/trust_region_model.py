"""Robust trust region (Marin & Boykov, ICCV 2021), stage B: the network update.

Stage A (:mod:`keras_regseg.methods.trust_region_stage_a`) computes, every M
epochs, a proposal labeling ``s`` of each training image near the current
prediction. Stage B (:class:`TrustRegionModel`) trains the network on the
augmented images with the robust cross-entropy d_B (eq. 22/24,
:mod:`keras_regseg.losses.robust_ce`): seeds exact, proposal labels trusted
up to the outlier probability ``epsilon``.

The error model is either constant or learned: with ``learn_epsilon=True``
``epsilon = (K - 1) / K * sigmoid(t)`` with a trainable ``t`` (so ``b > 0``
always) fitted by the same gradient steps as the network. Minimizing d_B over
``epsilon`` is maximum likelihood of the proposals under the outlier model
(eq. 20) given the predictions: ``epsilon`` grows where the network disagrees
with the proposals and shrinks where it agrees. Since the network is trained on
those proposals it soon agrees with them: on ACDC (fine-tuning from pCE)
``epsilon`` fell from 0.717 to 4e-6 within the first epoch, stage B became
plain cross-entropy to the proposals, and Dice fell (0.68 against 0.80 after
3 epochs). A constant ``epsilon`` is the default.

Targets ``y`` are ``[seeds, proposals, image]`` (``pack_proposal_targets``);
``call`` is the network's.

>>> import numpy as np, keras
>>> from keras_regseg.losses.robust_ce import pack_proposal_targets
>>> net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, padding="same")])
>>> model = TrustRegionModel(net, epsilon=0.5, learn_epsilon=True)
>>> model.compile(optimizer=keras.optimizers.SGD(0.1))
>>> x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
>>> seeds = np.full((2, 8, 8), 255); seeds[:, 0, 0] = 0
>>> y = pack_proposal_targets(seeds, np.ones((2, 8, 8)), x)
>>> history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
>>> sorted(history.history), round(float(model.epsilon), 3) != 0.5
(['epsilon', 'loss'], True)
"""

from __future__ import annotations

import math
import typing

import keras
import tensorflow as tf

from keras_regseg.losses.robust_ce import (NORMALIZATIONS, check_epsilon, default_epsilon,
                                           max_epsilon, robust_cross_entropy,
                                           robust_cross_entropy_per_labeled_pixel,
                                           unpack_proposal_targets)
from keras_regseg.methods.trust_region import DEFAULT_NORMALIZATION, DEFAULT_PROPOSAL_WEIGHT
from keras_regseg.methods.trust_region_stage_a import release_stage_a
from keras_regseg.methods.wrapper import NetworkWrapper

__all__ = ["TrustRegionModel"]


@keras.saving.register_keras_serializable(package="keras_regseg")
class TrustRegionModel(NetworkWrapper):
    """Stage B of the robust trust region around ``network`` (module docstring).

    Args:
      network: a ``keras.Model`` mapping images to logits ``[B, H, W, K]``
        with a static ``K``.
      epsilon: outlier probability of proposal pixels (``None``:
        :func:`~keras_regseg.losses.robust_ce.default_epsilon` of ``K``, the
        authors' VOC value carried over to ``K`` classes); the initial value
        when learned.
      learn_epsilon: fit ``epsilon`` with the network (the learnable error model).
      normalization: the gradient step is d_B per seed pixel (``"seeds"``,
        the authors'), per labeled pixel (``"labeled"``) or each term per its
        own pixels (``"per_term"``, the default), see
        :mod:`keras_regseg.losses.robust_ce`.
      proposal_weight: with ``"per_term"``, the weight of the proposal term
        (default 30: :data:`~keras_regseg.methods.trust_region.DEFAULT_PROPOSAL_WEIGHT`
        says why).

    Metrics: ``loss`` (d_B per labeled pixel, seeds and proposals: the scale
    of the other methods' cross-entropies, whatever the normalization of the
    step) and ``epsilon``.
    """

    def __init__(self, network: keras.Model, epsilon: float | None = None,
                 learn_epsilon: bool = False, normalization: str = DEFAULT_NORMALIZATION,
                 proposal_weight: float = DEFAULT_PROPOSAL_WEIGHT, **kwargs: typing.Any):
        super().__init__(network, **kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization is {normalization!r}; expected one of "
                             f"{NORMALIZATIONS}.")
        self.normalization = normalization
        self.proposal_weight = float(proposal_weight)
        num_classes = network.output_shape[-1] if hasattr(network, "output_shape") else None
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"the network must output a static number K >= 2 of classes; got "
                             f"output shape {getattr(network, 'output_shape', None)}.")
        self.num_classes = num_classes
        self.initial_epsilon = check_epsilon(
            default_epsilon(num_classes) if epsilon is None else epsilon, num_classes)
        self.configured_epsilon = None if epsilon is None else float(epsilon)
        self.learn_epsilon = bool(learn_epsilon)
        ratio = min(max(self.initial_epsilon / max_epsilon(num_classes), 1e-6), 1 - 1e-6)
        self.epsilon_logit = self.add_weight(
            shape=(), name="epsilon_logit", trainable=self.learn_epsilon,
            initializer=keras.initializers.Constant(math.log(ratio / (1 - ratio))))

    @property
    def epsilon(self):
        """The current outlier probability (a scalar tensor)."""
        return max_epsilon(self.num_classes) * tf.sigmoid(tf.cast(self.epsilon_logit, tf.float32))

    def compile(self, *args, **kwargs):
        """``keras.Model.compile``; the error model is kept out of weight decay."""
        super().compile(*args, **kwargs)
        # Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer, which has no
        # weight decay of its own: the wrapped optimizer is the one that decays.
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if self.learn_epsilon and getattr(optimizer, "weight_decay", None):
            optimizer.exclude_from_weight_decay(var_list=[self.epsilon_logit])

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``, then stage A released however fitting ended.

        Keras skips ``on_train_end`` when ``fit`` raises; the stage-A callback
        must still stop holding back the input pipeline (:meth:`StageA.release
        <keras_regseg.methods.trust_region_stage_a.StageA.release>`).
        """
        callbacks = kwargs.get("callbacks", args[5] if len(args) > 5 else None)
        try:
            return super().fit(*args, **kwargs)
        finally:
            release_stage_a(callbacks)

    def loss_terms(self, y, logits, training=True):
        """d_B per pixel (its mean is the normalized d_B) and the logged d_B per labeled pixel."""
        seeds, proposals, _ = unpack_proposal_targets(y)
        return {"loss": robust_cross_entropy(seeds, proposals, logits, self.epsilon,
                                             self.normalization, self.proposal_weight),
                "logged_loss": robust_cross_entropy_per_labeled_pixel(seeds, proposals, logits,
                                                                       self.epsilon)}

    def state_logs(self):
        """The error model's current epsilon (after the step, when it is learned)."""
        return {"epsilon": self.epsilon}

    def get_config(self):
        config = super().get_config()
        config.update({
            "epsilon": self.configured_epsilon,
            "learn_epsilon": self.learn_epsilon,
            "normalization": self.normalization,
            "proposal_weight": self.proposal_weight,
        })
        return config

