"""CCNN training: fit a segmentation network to constrained latent distributions.

:class:`CCNNModel` wraps a network producing logits ``[B, H, W, K]``. Each
training step (paper sec. 4.2) averages the logits down to the coarse grid
(``downscale``), finds the latent distribution ``P`` that satisfies the batch's
constraints (:func:`~keras_regseg.methods.ccnn_dual.solve_dual`), then takes
one optimizer step on the cross-entropy between ``P`` (held fixed: no gradient
flows through the solver) and the coarse network output.

Targets ``y`` carry image tags, in either form:

- a float tensor ``[B, K]`` of multi-hot tags;
- a dict ``{"tags": [B, K], "size_bits": [B, K]}``; ``"size_bits"`` is optional
  (1 where a class covers more than 10 % of the image) and switches on the
  paper's size constraints.

Other constraints (boxes, regions) are added by overriding
:meth:`CCNNModel.build_constraints`. ``call`` is the network's, so
``predict``, saving and export see the plain network.

>>> import numpy as np, keras
>>> net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, padding="same")])
>>> model = CCNNModel(net, downscale=2)
>>> model.compile(optimizer=keras.optimizers.SGD(0.1))
>>> x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
>>> tags = np.array([[1, 1, 0]] * 4, "float32")
>>> history = model.fit(x, tags, batch_size=2, epochs=1, verbose=0)
>>> sorted(history.history)
['ccnn_iterations', 'ccnn_violation', 'loss']
>>> model.predict(x, verbose=0).shape
(4, 8, 8, 3)
"""

import keras
import tensorflow as tf

from keras_regseg.methods.ccnn_constraints import TagConstraintConfig, tag_constraints
from keras_regseg.methods.ccnn_dual import solve_dual
from keras_regseg.methods.wrapper import NetworkWrapper

TARGET_KEYS = ("tags", "size_bits")


@keras.saving.register_keras_serializable(package="keras_regseg")
class LatentCrossEntropy(keras.losses.Loss):
    """Per-pixel cross-entropy ``-sum_k P[k] log softmax(logits)[k]``.

    ``y_true`` is a distribution ``[B, h, w, K]``, ``y_pred`` logits of the same
    shape; ``call`` returns ``[B, h, w]``.

    >>> import numpy as np
    >>> p = np.array([[[[0.5, 0.5]]]], "float32"); logits = np.zeros((1, 1, 1, 2), "float32")
    >>> round(float(LatentCrossEntropy()(p, logits)), 4)   # log 2
    0.6931
    """

    def __init__(self, name="latent_cross_entropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        log_q = tf.nn.log_softmax(tf.cast(y_pred, tf.float32), axis=-1)
        return -tf.reduce_sum(tf.cast(y_true, tf.float32) * log_q, axis=-1)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="keras_regseg")
class CCNNModel(NetworkWrapper):
    tracked = ("ccnn_violation", "ccnn_iterations")

    """Train ``network`` with CCNN's constrained latent targets.

    Args:
        network: a ``keras.Model`` mapping images to logits ``[B, H, W, K]``.
        constraints: :class:`~keras_regseg.methods.ccnn_constraints.TagConstraintConfig`
            (or its ``get_config()`` dict); the paper's defaults when omitted.
        downscale: the dual is solved on the logits average-pooled by this
            factor (cells at the border average their pixels inside the image).
            The paper solves it on its FCN's stride-8 output, hence 8.
        max_iterations, tolerance, initial_step, solver_jit_compile: passed to
            :func:`~keras_regseg.methods.ccnn_dual.solve_dual`.
        **kwargs: ``keras.Model`` arguments (``name``, ...).

    Metrics: ``loss``; ``ccnn_violation``, the mean over images of the largest
    constraint violation left by the solver (fraction of the image: what the
    slack absorbs); ``ccnn_iterations``, the mean number of dual iterations.
    """

    def __init__(self, network, constraints=None, downscale=8, max_iterations=3000,
                 tolerance=1e-3, initial_step=10.0, solver_jit_compile=True, **kwargs):
        super().__init__(network, **kwargs)
        if isinstance(downscale, bool) or int(downscale) != downscale or downscale < 1:
            raise ValueError(f"downscale must be an integer >= 1; got {downscale!r}.")
        if constraints is None:
            constraints = TagConstraintConfig()
        elif isinstance(constraints, dict):
            constraints = TagConstraintConfig.from_config(constraints)
        elif not isinstance(constraints, TagConstraintConfig):
            raise TypeError("constraints must be a TagConstraintConfig or its config dict; "
                            f"got {type(constraints).__name__}.")
        self.constraint_config = constraints
        self.downscale = int(downscale)
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)
        self.initial_step = float(initial_step)
        self.solver_jit_compile = bool(solver_jit_compile)
        self.latent_loss = LatentCrossEntropy()

    @property
    def num_classes(self):
        """K, the network's last output dimension (None if the network cannot tell)."""
        try:
            return int(self.network.output_shape[-1])
        except (AttributeError, TypeError, ValueError):   # e.g. an unbuilt subclassed network
            return None

    def coarse_logits(self, logits):
        """Average-pool float32 logits by ``downscale`` (the solver's grid)."""
        logits = tf.cast(logits, tf.float32)
        if self.downscale == 1:
            return logits
        return tf.nn.avg_pool2d(logits, self.downscale, self.downscale, padding="SAME")

    def build_constraints(self, y, grid_shape):
        """The batch's :class:`~keras_regseg.methods.ccnn_constraints.ConstraintSet`.

        Override to add constraints; ``grid_shape`` is the coarse ``(h, w)``.
        For example, boxes passed as extra ``y`` entries::

            class BoxCCNN(CCNNModel):
                def build_constraints(self, y, grid_shape):
                    base = super().build_constraints({"tags": y["tags"]}, grid_shape)
                    return base.with_boxes(y["boxes"], y["box_classes"], grid_shape)
        """
        tags, size_bits = self._unpack_targets(y)
        return tag_constraints(tags, size_bits, self.constraint_config)

    def latent_targets(self, y, logits):
        """``(P, coarse logits, DualSolution)`` for a batch; ``P`` carries no gradient."""
        coarse = self.coarse_logits(logits)
        if coarse.shape[1] is None or coarse.shape[2] is None:
            raise ValueError("CCNNModel needs a static image size to build constraints; "
                             f"got coarse logits of shape {coarse.shape}.")
        constraints = self.build_constraints(y, (int(coarse.shape[1]), int(coarse.shape[2])))
        solution = solve_dual(coarse, constraints, self.max_iterations, self.tolerance,
                              self.initial_step, self.solver_jit_compile)
        return tf.stop_gradient(solution.latent), coarse, solution

    def loss_terms(self, y, logits, training=True):
        """Cross-entropy to the latent ``P`` per coarse pixel, and the solver's figures."""
        latent, coarse, solution = self.latent_targets(y, logits)
        return {"loss": self.latent_loss.call(latent, coarse),
                "ccnn_violation": solution.violation,
                "ccnn_iterations": tf.cast(solution.iterations, tf.float32)}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The replica's share of the loss (Keras's API): latent CE plus regularization,
        scaled by ``1 / replicas`` under ``tf.distribute``."""
        return self.objective(self.loss_terms(y, y_pred, training)["loss"], sample_weight)

    def _unpack_targets(self, y):
        if isinstance(y, dict):
            unknown = sorted(set(y) - set(TARGET_KEYS))
            if unknown or "tags" not in y:
                raise ValueError(f"CCNN targets must be a dict with key 'tags' and optional "
                                 f"'size_bits'; got keys {sorted(y)}.")
            tags, size_bits = y["tags"], y.get("size_bits")
        elif y is None:
            raise ValueError("CCNNModel needs targets y carrying image tags [B, K]; got None.")
        else:
            tags, size_bits = y, None
        tags = tf.convert_to_tensor(tags)
        if tags.shape.rank != 2 or self.num_classes not in (None, tags.shape[-1]):
            raise ValueError(f"tags must have shape [B, {self.num_classes}] (the network's "
                             f"classes); got {tags.shape}.")
        return tags, size_bits

    def get_config(self):
        config = super().get_config()
        config.update({
            "constraints": self.constraint_config.get_config(),
            "downscale": self.downscale,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
            "initial_step": self.initial_step,
            "solver_jit_compile": self.solver_jit_compile,
        })
        return config
