"""CCNN training: fit a segmentation network to constrained latent distributions.

:class:`CCNNModel` wraps a network producing logits ``[B, H, W, K]``. Each
training step (paper sec. 4.2) averages the logits down to the coarse grid
(``downscale``), finds the latent distribution ``P`` that satisfies the batch's
constraints (:func:`~keras_regseg.methods.ccnn_dual.solve_dual`), then takes
one optimizer step on the cross-entropy between ``P`` (held fixed: no gradient
flows through the solver) and the coarse network output.

Targets ``y`` are a float tensor ``[B, K]`` of multi-hot tags, or a dict of
any of (:class:`~keras_regseg.data.pipeline.DictTargets` makes them):

- ``"tags"`` ``[B, K]``: the paper's tag constraints (suppression of absent
  classes, lower bounds for present ones, background bounds);
- ``"size_bits"`` ``[B, K]``: the paper's size constraints (1 where a class
  covers more than 10 % of the image);
- ``"sizes"`` ``[B, K]``: each class's (rough) fraction of the image, bounded
  within ``size_margin`` of it (Kervadec et al., MedIA 2019);
- ``"box_masks"`` ``[B, H, W, R]`` and ``"box_classes"`` ``[B, R]`` (-1: none):
  at least ``box_fraction`` of each box takes its class, which is suppressed
  outside its boxes;
- ``"seeds"`` ``[B, H, W]``: scribbles or clicks. Seed pixels keep their label
  in the latent distribution (exactly, by suppressing the other classes on the
  solver cells they fill), the loss adds the partial cross-entropy on them at
  full resolution, and the cross-entropy to the latent distribution counts on
  the cells without seeds.

Other constraints are added by overriding :meth:`CCNNModel.build_constraints`.
``call`` is the network's, so ``predict``, saving and export see the plain
network.

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

from __future__ import annotations

import typing
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_regseg.losses.cross_entropy import masked_cross_entropy
from keras_regseg.methods.ccnn_constraints import (HARD_SLACK, TagConstraintConfig,
                                                   tag_constraints)
from keras_regseg.methods.ccnn_dual import solve_dual
from keras_regseg.methods.wrapper import NetworkWrapper
from keras_regseg.ops.replicas import replica_sum

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.methods.ccnn_constraints import ConstraintSet

__all__ = ["CCNNModel", "LatentCrossEntropy", "TARGET_KEYS"]

TARGET_KEYS = ("tags", "size_bits", "sizes", "box_masks", "box_classes", "seeds")


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

    def __init__(self, name: str = "latent_cross_entropy",
                 reduction: str | None = "sum_over_batch_size", dtype: str | None = None):
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
        size_margin: relative tolerance of the ``"sizes"`` bounds (their slack is
            :data:`~keras_regseg.methods.ccnn_constraints.HARD_SLACK`: the margin
            is where the uncertainty of a size goes).
        box_fraction: fraction of a box its class fills at least: one number, or
            one per class (a ring such as the myocardium fills less of its box
            than a disc).
        box_slack: slack weight of the box bounds, the largest logit bias a box
            can add to its class (:data:`~keras_regseg.methods.ccnn_constraints.HARD_SLACK`:
            the bound is met whatever the network says).
        balance_boxes: the cross-entropy to the latent distribution is the mean
            over the cells inside boxes plus the mean over the other cells, so
            that small boxes weigh as much as the background around them. With
            ``False``, one mean over all cells: boxes of 1-3 % of the image then
            count for 1-3 % of the loss, and the network learns the background
            everywhere.
        max_iterations, tolerance, initial_step, solver_jit_compile: passed to
            :func:`~keras_regseg.methods.ccnn_dual.solve_dual`.
        **kwargs: ``keras.Model`` arguments (``name``, ...).

    Metrics: ``loss``; ``ccnn_violation``, the mean over images of the largest
    constraint violation left by the solver (fraction of the image: what the
    slack absorbs); ``ccnn_iterations``, the mean number of dual iterations.
    """

    def __init__(self, network: keras.Model, constraints: ConstraintSet | None = None,
                 downscale: int = 8, max_iterations: int = 3000, tolerance: float = 1e-3,
                 initial_step: float = 10.0, solver_jit_compile: bool = True,
                 size_margin: float = 0.1, box_fraction: float | Sequence[float] = 0.75,
                 box_slack: float = 2.0, balance_boxes: bool = True,
                 **kwargs: typing.Any):
        super().__init__(network, **kwargs)
        if not 0.0 <= float(size_margin) <= 1.0:
            raise ValueError(f"size_margin must be in [0, 1]; got {size_margin!r}.")
        fractions = [box_fraction] if isinstance(box_fraction, (int, float)) else box_fraction
        if not all(0.0 <= float(f) <= 1.0 for f in fractions):
            raise ValueError(f"box_fraction must be a fraction in [0, 1] or one per class; "
                             f"got {box_fraction!r}.")
        if not isinstance(box_fraction, (int, float)) and self.num_classes not in (
                None, len(box_fraction)):
            raise ValueError(f"box_fraction has {len(box_fraction)} values; expected one "
                             f"per class ({self.num_classes}) or a single number.")
        if not 0.0 <= float(box_slack) < float("inf"):
            raise ValueError(f"box_slack must be finite and >= 0; got {box_slack!r}.")
        self.size_margin = float(size_margin)
        self.box_slack = float(box_slack)
        self.balance_boxes = bool(balance_boxes)
        self.box_fraction = (float(box_fraction) if isinstance(box_fraction, (int, float))
                             else [float(f) for f in box_fraction])
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
        return self.coarse_mean(logits)

    def coarse_mean(self, maps):
        """Average ``[B, H, W, C]`` maps over the solver's cells (as the logits)."""
        maps = tf.cast(maps, tf.float32)
        if self.downscale == 1:
            return maps
        return tf.nn.avg_pool2d(maps, self.downscale, self.downscale, padding="SAME")

    def seed_cells(self, seeds):
        """``(seeded [B, h, w] bool, pinned labels [B, h, w] int32)`` on the solver's grid.

        A cell is seeded when it holds a seed pixel; it is pinned to a class when
        all its seed pixels have that class (255 elsewhere).
        """
        num_classes = self.num_classes
        classes_present = self.coarse_mean(tf.one_hot(tf.cast(seeds, tf.int32), num_classes)) > 0
        count = tf.reduce_sum(tf.cast(classes_present, tf.int32), axis=-1)
        pinned = tf.where(count == 1, tf.argmax(tf.cast(classes_present, tf.int32), axis=-1,
                                                output_type=tf.int32), 255)
        return count > 0, pinned

    def build_constraints(self, targets, grid_shape):
        """The batch's :class:`~keras_regseg.methods.ccnn_constraints.ConstraintSet`.

        ``targets`` is the dict of the module docstring (tags as ``"tags"``);
        ``grid_shape`` is the coarse ``(h, w)``. Override to add constraints,
        e.g. region bounds from an extra ``y`` entry::

            class RegionCCNN(CCNNModel):
                def build_constraints(self, targets, grid_shape):
                    base = super().build_constraints(targets, grid_shape)
                    return base.with_region_bounds(targets["regions"], targets["classes"], 0.5)
        """
        tags = targets.get("tags")
        if tags is None:   # no tags: only the other constraints
            tags = tf.zeros(tf.stack([tf.shape(next(iter(targets.values())))[0],
                                      self.num_classes]), tf.float32)
            tags.set_shape([None, self.num_classes])
        constraints = tag_constraints(tags, targets.get("size_bits"), self.constraint_config)
        if "sizes" in targets:
            constraints = constraints.with_size_bounds(targets["sizes"], self.size_margin,
                                                       HARD_SLACK)
        if "box_masks" in targets:
            classes = tf.cast(targets["box_classes"], tf.int32)
            masks = tf.transpose(self.coarse_mean(targets["box_masks"]), [0, 3, 1, 2])
            fraction = tf.broadcast_to(tf.constant(self.box_fraction, tf.float32),
                                       [self.num_classes])
            constraints = constraints.with_box_masks(
                # (indices clipped: with_box_masks names out-of-range classes itself)
                masks, classes, tf.gather(fraction, tf.clip_by_value(classes, 0,
                                                                     self.num_classes - 1)),
                self.box_slack)
        if "seeds" in targets:
            constraints = constraints.with_seeds(self.seed_cells(targets["seeds"])[1])
        return constraints

    def latent_targets(self, y, logits):
        """``(P, coarse logits, DualSolution)`` for a batch; ``P`` carries no gradient."""
        coarse = self.coarse_logits(logits)
        if coarse.shape[1] is None or coarse.shape[2] is None:
            raise ValueError("CCNNModel needs a static image size to build constraints; "
                             f"got coarse logits of shape {coarse.shape}.")
        constraints = self.build_constraints(self._unpack_targets(y),
                                             (int(coarse.shape[1]), int(coarse.shape[2])))
        solution = solve_dual(coarse, constraints, self.max_iterations, self.tolerance,
                              self.initial_step, self.solver_jit_compile)
        return tf.stop_gradient(solution.latent), coarse, solution

    def loss_terms(self, y, logits, training=True):
        """Cross-entropy to the latent ``P`` per coarse pixel (plus pCE with seeds), and the
        solver's figures."""
        latent, coarse, solution = self.latent_targets(y, logits)
        latent_ce = self.latent_loss.call(latent, coarse)
        terms = {"ccnn_violation": solution.violation,
                 "ccnn_iterations": tf.cast(solution.iterations, tf.float32)}
        targets = y if isinstance(y, dict) else {}
        # Cell groups whose latent cross-entropy is averaged separately, each one term.
        groups = [tf.ones_like(latent_ce)]
        if self.balance_boxes and "box_masks" in targets:
            in_box = tf.cast(tf.reduce_max(self.coarse_mean(targets["box_masks"]), axis=-1) > 0,
                             tf.float32)
            groups = [in_box, 1.0 - in_box]
        if "seeds" not in targets:   # (one group: the plain mean, no cross-replica sums)
            return dict(terms, loss=latent_ce if len(groups) == 1
                        else latent_ce * _group_weights(groups))
        seeds = tf.cast(targets["seeds"], tf.int32)
        free = 1.0 - tf.cast(self.seed_cells(seeds)[0], tf.float32)
        # The latent term is a mean over the cells without seeds of the global batch, the
        # seed term pCE's mean over seed pixels: each counts as one term of the sum.
        weights = _group_weights([group * free for group in groups])
        latent_mean = tf.reduce_mean(latent_ce * weights, axis=[1, 2])
        seed_ce = masked_cross_entropy(seeds, tf.nn.log_softmax(tf.cast(logits, tf.float32)))
        return dict(terms, loss=seed_ce + latent_mean[:, None, None])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The replica's share of the loss (Keras's API): latent CE plus regularization,
        scaled by ``1 / replicas`` under ``tf.distribute``."""
        return self.objective(self.loss_terms(y, y_pred, training)["loss"], sample_weight)

    def _unpack_targets(self, y):
        """The targets as a dict (module docstring), checked."""
        if y is None:
            raise ValueError("CCNNModel needs targets y: image tags [B, K] or a dict of "
                             f"{', '.join(TARGET_KEYS)}; got None.")
        targets = dict(y) if isinstance(y, dict) else {"tags": y}
        unknown = sorted(set(targets) - set(TARGET_KEYS))
        if type(self).build_constraints is not CCNNModel.build_constraints:
            unknown = []   # a subclass's own entries, for its build_constraints
        if unknown or not targets or ("box_masks" in targets and "box_classes" not in targets):
            raise ValueError(f"CCNN targets must be a dict of {', '.join(TARGET_KEYS)} "
                             "(box_masks with box_classes); got keys "
                             f"{sorted(targets)}.")
        for key in ("tags", "size_bits", "sizes"):
            if key in targets:
                value = tf.convert_to_tensor(targets[key])
                if value.shape.rank != 2 or self.num_classes not in (None, value.shape[-1]):
                    raise ValueError(f"{key} must have shape [B, {self.num_classes}] (the "
                                     f"network's classes); got {value.shape}.")
                targets[key] = value
        return targets

    def get_config(self):
        config = super().get_config()
        config.update({
            "constraints": self.constraint_config.get_config(),
            "downscale": self.downscale,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
            "initial_step": self.initial_step,
            "solver_jit_compile": self.solver_jit_compile,
            "size_margin": self.size_margin,
            "box_fraction": self.box_fraction,
            "box_slack": self.box_slack,
            "balance_boxes": self.balance_boxes,
        })
        return config


def _group_weights(groups):
    """Per-cell weights under which the mean over the global batch's cells is the sum,
    over ``groups`` (0/1 cell masks ``[B, h, w]``), of the mean over each group's cells."""
    cells = replica_sum(tf.cast(tf.size(groups[0]), tf.float32))
    return tf.add_n([group * (cells / tf.maximum(replica_sum(tf.reduce_sum(group)), 1.0))
                     for group in groups])
