"""ADM (Marin et al., CVPR 2019): alternate a discrete latent step with one SGD step.

Every training step of :class:`ADMModel`:

1. predicts ``S = softmax(network(x))`` (float32);
2. solves the seeded 8-grid Potts energy for a hard latent labeling ``X`` by
   alpha-expansion, outside the graph (``tf.numpy_function`` calling the
   shared :class:`~keras_regseg.solvers.SolverPool`)::

       X = argmin_X  sum_{p unlabeled} -log S_p[X_p] + potts_weight * sum_pq w_pq [X_p != X_q]

   with the seeds as hard constraints and Boykov-Jolly weights ``w_pq`` in
   ``[0, 1]`` (:mod:`keras_regseg.methods.latent_solve`). The authors' code
   uses data cost ``1000 * -log p`` and edge cost ``1000 * potts * w_pq`` with
   ``potts = 80`` and the same ``w_pq``: a unary weight of 1 and a Potts
   weight of 80 here;
3. takes one optimizer step on ``pCE + gamma * CE(X, S)``: pCE is the mean
   over seed pixels, the latent cross-entropy the mean over the unlabeled
   pixels inside the image (padding is left out), ``gamma = 1.5`` (authors).

The solver runs in worker processes (GCO holds the GIL), shared by all
replicas of a ``tf.distribute`` strategy; ``jit_compile`` is always off
(``tf.numpy_function`` cannot be compiled). ``call`` is the network's.

>>> import numpy as np, keras
>>> from keras_regseg.solvers import SolverPool
>>> net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same")])
>>> model = ADMModel(net, pool=SolverPool(processes=0))
>>> model.compile(optimizer=keras.optimizers.SGD(0.1))
>>> x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
>>> seeds = np.full((2, 8, 8), 255); seeds[:, 1, 1] = 0; seeds[:, 6, 6] = 1
>>> history = model.fit(x, {"seeds": seeds, "image": x}, batch_size=2, epochs=1, verbose=0)
>>> sorted(history.history)
['latent_cross_entropy', 'loss', 'partial_cross_entropy']
"""

from __future__ import annotations

import typing

import keras
import tensorflow as tf

from keras_regseg.data.spec import IGNORE_INDEX
from keras_regseg.losses.cross_entropy import masked_cross_entropy
from keras_regseg.losses.targets import unpack_targets
from keras_regseg.methods import latent_solve
from keras_regseg.methods.wrapper import NetworkWrapper
from keras_regseg.solvers import DEFAULT_MAX_ITERATIONS

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.solvers import SolverPool

__all__ = ["ADM_GAMMA", "ADM_POTTS_WEIGHT", "ADMModel", "latent_cross_entropy", "unlabeled_mask"]

ADM_POTTS_WEIGHT = 80.0
"""The authors' Potts weight relative to a unary ``-log p`` of weight 1."""

ADM_GAMMA = 1.5
"""The authors' weight of the cross-entropy to the latent labeling."""


def unlabeled_mask(labels, num_classes):
    """1.0 on pixels inside the image without a seed (``IGNORE_INDEX``), else 0.0."""
    return tf.cast(tf.equal(labels, IGNORE_INDEX), tf.float32)


def latent_cross_entropy(latent, log_probs, mask):
    """Per-pixel CE to the hard latent labels on ``mask``, rescaled to a mean over ``mask``.

    Pixels whose latent value is not a class (no labeling: NaN input) count as outside.
    """
    num_classes = tf.shape(log_probs)[-1]
    mask = mask * tf.cast((latent >= 0) & (latent < num_classes), tf.float32)
    safe = tf.where(mask > 0, latent, tf.zeros_like(latent))
    ce = -tf.gather(log_probs, safe, axis=-1, batch_dims=3)
    scale = tf.cast(tf.size(mask), tf.float32) / tf.maximum(tf.reduce_sum(mask), 1.0)
    return ce * mask * scale


@keras.saving.register_keras_serializable(package="keras_regseg")
class ADMModel(NetworkWrapper):
    tracked = ("partial_cross_entropy", "latent_cross_entropy")

    """Train ``network`` by ADM (module docstring).

    Args:
      network: a ``keras.Model`` mapping images to logits ``[B, H, W, K]``.
      gamma: weight of the latent cross-entropy against pCE.
      potts_weight: Potts weight of the latent step (unary ``-log p`` has weight 1).
      unary_weight: weight of ``-log S`` in the latent step.
      max_iterations: alpha-expansion cycles per latent step.
      processes: solver workers when this model starts the shared pool.
      pool: a :class:`~keras_regseg.solvers.SolverPool` to use instead of the shared one.

    Targets ``y`` are packed ``[labels, image]`` (:func:`keras_regseg.losses.pack_targets`).
    Metrics: ``loss``, ``partial_cross_entropy``, ``latent_cross_entropy``.
    """

    def __init__(self, network: keras.Model, gamma: float = ADM_GAMMA,
                 potts_weight: float = ADM_POTTS_WEIGHT, unary_weight: float = 1.0,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS, processes: int | None = None,
                 pool: SolverPool | None = None, **kwargs: typing.Any):
        super().__init__(network, **kwargs)
        for name, value in (("gamma", gamma), ("potts_weight", potts_weight),
                            ("unary_weight", unary_weight)):
            if not float(value) >= 0:
                raise ValueError(f"{name} is {value!r}; expected a number >= 0.")
        self.gamma = float(gamma)
        self.potts_weight = float(potts_weight)
        self.unary_weight = float(unary_weight)
        self.max_iterations = int(max_iterations)
        self.processes = processes
        self.pool = pool

    def _solve(self, probabilities, images, seeds):
        pool = self.pool or latent_solve.shared_pool(self.processes)
        labels, _ = latent_solve.solve_labelings(
            probabilities, images, seeds, pool=pool, unary_weight=self.unary_weight,
            potts_weight=self.potts_weight, max_iterations=self.max_iterations)
        return labels.astype("int32")

    def latent_labels(self, logits, labels, image):
        """The latent step: int32 ``[B, H, W]`` labelings of the batch (no gradient)."""
        probabilities = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1))
        latent = tf.numpy_function(self._solve, [probabilities, image, labels], tf.int32,
                                   stateful=True, name="adm_latent_step")
        latent.set_shape(labels.shape)
        return latent

    def loss_terms(self, y, logits, training=True):
        """``{"loss": per-pixel pCE + gamma * latent CE, and both terms}`` of one batch."""
        labels, image = unpack_targets(y)
        if image is None:
            raise ValueError("ADMModel needs the image for the Potts term: y_true a dict with "
                             "'seeds' and 'image' (or packed, keras_regseg.losses.pack_targets); "
                             "got a label map only.")
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        num_classes = tf.shape(log_probs)[-1]
        latent = self.latent_labels(logits, labels, image)
        pce = masked_cross_entropy(labels, log_probs)
        latent_ce = latent_cross_entropy(latent, log_probs, unlabeled_mask(labels, num_classes))
        return {"loss": pce + self.gamma * latent_ce,
                "partial_cross_entropy": tf.reduce_mean(pce),
                "latent_cross_entropy": tf.reduce_mean(latent_ce)}

    def get_config(self):
        config = super().get_config()
        config.update({
            "gamma": self.gamma,
            "potts_weight": self.potts_weight,
            "unary_weight": self.unary_weight,
            "max_iterations": self.max_iterations,
            "processes": self.processes,
        })
        return config

