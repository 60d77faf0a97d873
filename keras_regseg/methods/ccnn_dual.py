"""CCNN latent distribution: batched projected gradient ascent on the dual.

For fixed network scores ``f`` (logits), CCNN's latent distribution solves
(paper eq. 6, rows divided by ``n`` as in the authors' code)::

    min_{P, xi}  (1/n) sum_p KL(P_p || softmax(f_p)) + beta^T xi
    s.t.         (1/n) A P >= b - xi,   xi >= 0,   sum_l P_p[l] = 1.

Its dual (paper eq. 4, with the slack turning into ``0 <= mu <= beta``) is the
concave function::

    L(mu) = mu^T b - (1/n) sum_p log sum_l exp(f_p[l] + (A^T mu)_{p,l}),

maximized at ``P_p = softmax(f_p + (A^T mu)_p)``; its gradient is
``b - (1/n) A P``, i.e. each bound's violation. Upper bounds enter ``A`` and ``b``
with a minus sign; forbidden (suppressed) entries are removed from the softmax
(see :class:`~keras_regseg.methods.ccnn_constraints.ConstraintSet`).

:func:`solve_dual` runs projected gradient ascent with one adaptive step per
image (x1.1 after a step that does not decrease ``L``, x0.5 and the step
rejected otherwise, as the authors' code), inside ``tf.while_loop`` so it runs
as one graph op in ``train_step``. Images stop when the projected gradient is
below ``tolerance`` (a fraction of each bound's region: the image, or a box),
when the step can no longer change ``L`` in float32, or at ``max_iterations``.

Numerics and speed: logits are floored at 60 below each pixel's largest
allowed logit (a change below ``e^-60`` in the softmax) so that every factor
stays inside float32; when all constraints cover whole images, an iteration then
needs no exponential of the ``K x n`` scores, only two batched products (with
classes as rows, which vectorizes along pixels). The acceptance test compares
``L`` through ``log(Z'/Z) = log1p(sum_l P_l expm1(delta_l))``, which stays
exact to float32 when a step's gain is tiny; a plain difference of two
``L`` values (sums of terms up to ``beta``) would lose it near the optimum.

>>> import numpy as np
>>> from keras_regseg.methods.ccnn_constraints import tag_constraints
>>> logits = np.zeros((1, 4, 4, 2), "float32"); logits[..., 0] = 3.0   # "all background"
>>> solution = solve_dual(logits, tag_constraints([[1.0, 1.0]]))       # background <= 0.7
>>> float(solution.latent[..., 0].numpy().mean()) <= 0.7 + 1e-3
True
>>> bool(solution.converged[0]), float(solution.violation[0]) <= 1e-3
(True, True)
"""

from __future__ import annotations

import typing
from typing import NamedTuple

import tensorflow as tf

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.methods.ccnn_constraints import ConstraintSet

__all__ = ["DualSolution", "LOGIT_FLOOR", "MAX_BIAS_CHANGE", "MIN_STEP", "solve_dual",
           "STEP_GROWTH", "STEP_SHRINK"]

LOGIT_FLOOR = 60.0
"""Logits are floored at this distance below each pixel's largest allowed logit."""

STEP_GROWTH = 1.1
STEP_SHRINK = 0.5
MIN_STEP = 1e-7
"""Below this step a dual step changes ``L`` by less than float32 resolves: stop."""
MAX_BIAS_CHANGE = 80.0
"""Largest change of a logit's bias in one step (``e^80`` is still a float32)."""


class DualSolution(NamedTuple):
    """Result of :func:`solve_dual`.

    Fields:
        latent: float32 ``[B, h, w, K]``, the latent distribution P.
        violation: float32 ``[B]``, the largest remaining violation of an active
            bound (fraction of the image; what the slack absorbs) or mass left on
            forbidden entries.
        constraint_violation: float32 ``[B, 2K + R]``, the violation of each bound:
            K lower bounds, K upper bounds, then the R region bounds.
        duals: float32 ``[B, 2K + R]``, the dual variables ``mu`` (same order).
        dual_value: float32 ``[B]``, ``L(mu) - L(0)``.
        iterations: int32 ``[B]``, iterations run (accepted or rejected steps).
        converged: bool ``[B]``, whether the projected gradient met the tolerance.
    """

    latent: tf.Tensor
    violation: tf.Tensor
    constraint_violation: tf.Tensor
    duals: tf.Tensor
    dual_value: tf.Tensor
    iterations: tf.Tensor
    converged: tf.Tensor


def solve_dual(logits: tf.Tensor, constraints: ConstraintSet, max_iterations: int = 3000,
               tolerance: float = 1e-3, initial_step: float = 10.0,
               jit_compile: bool = True) -> DualSolution:
    """Latent distribution of CCNN for a batch of score maps.

    Args:
        logits: ``[B, h, w, K]`` network scores on the solver's grid (any float
            dtype; computed in float32).
        constraints: a :class:`~keras_regseg.methods.ccnn_constraints.ConstraintSet`
            for the same ``B``, ``K`` and grid.
        max_iterations: iteration cap (the authors' code: 3000).
        tolerance: stop when every bound's projected gradient (its violation) is
            below this fraction of the bound's region: of the image for class
            bounds, of the region (at least one cell) for region bounds, so that a
            box of 1 % of the image is met as closely as the whole image.
        initial_step: first step of each image, in logits per unit of violation.
        jit_compile: compile the solver with XLA (one compilation per input
            shape). XLA fuses each iteration's element-wise work into single
            passes (about twice as fast on CPU in benchmarks/ccnn.py).

    Returns:
        A :class:`DualSolution`. No gradient flows through it.
    """
    if int(max_iterations) < 0:
        raise ValueError(f"max_iterations must be >= 0; got {max_iterations}.")
    if not tolerance > 0 or not initial_step > 0:
        raise ValueError(
            f"tolerance and initial_step must be > 0; got {tolerance}, {initial_step}.")
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank != 4:
        raise ValueError(f"logits must have shape [B, h, w, K]; got {logits.shape}.")
    if logits.shape[-1] is not None and logits.shape[-1] != constraints.num_classes:
        raise ValueError(f"logits have {logits.shape[-1]} classes but the constraints "
                         f"{constraints.num_classes}.")
    _check_grid(logits.shape[1:3], constraints)
    spatial = constraints.regions is not None or (
        constraints.forbidden.shape[1] != 1 or constraints.forbidden.shape[2] != 1)
    solve = _solve_xla if jit_compile else _solve_graph
    # Tensors rather than Python numbers, so that new values do not retrace.
    return solve(tf.stop_gradient(tf.cast(logits, tf.float32)), constraints,
                 tf.constant(int(max_iterations), tf.int32), tf.constant(tolerance, tf.float32),
                 tf.constant(initial_step, tf.float32), spatial)


def _check_grid(grid, constraints):
    """Per-pixel constraints must live on the logits' grid (checked where shapes are static)."""
    shapes = []
    if tuple(constraints.forbidden.shape[1:3]) != (1, 1):   # (1, 1): whole-image suppression
        shapes.append(("forbidden", tuple(constraints.forbidden.shape[1:3])))
    if constraints.regions is not None:
        shapes.append(("region masks", tuple(constraints.regions.masks.shape[2:4])))
    for name, shape in shapes:
        if any(got is not None and want is not None and got != want
               for got, want in zip(shape, tuple(grid))):
            raise ValueError(f"constraint {name} are on a {shape} grid but the logits on "
                             f"{tuple(grid)}.")


def _solve(logits, constraints, max_iterations, tolerance, initial_step, spatial):
    shape = tf.shape(logits)
    batch, height, width, num_classes = shape[0], shape[1], shape[2], shape[3]
    n = height * width
    # Classes as rows ([B, K, n]): reductions over classes then run along
    # contiguous pixels, several times faster on CPU for small K.
    scores = tf.transpose(tf.reshape(logits, [batch, n, num_classes]), [0, 2, 1])
    if spatial:
        forbidden = tf.broadcast_to(constraints.forbidden, [batch, height, width, num_classes])
        forbidden = tf.transpose(tf.reshape(forbidden, [batch, n, num_classes]), [0, 2, 1])
    else:
        forbidden = tf.reshape(constraints.forbidden, [batch, num_classes, 1])
    allowed = tf.logical_not(forbidden)
    # A pixel with every class forbidden contradicts itself: keep all its classes
    # (reported as violation) rather than divide by zero.
    no_class = tf.logical_not(tf.reduce_any(allowed, axis=1, keepdims=True))
    allowed = tf.logical_or(allowed, no_class)
    scores = _floor_scores(scores, allowed)

    problem = _Problem(constraints, num_classes, n)
    dual = (_SpatialDual(scores, allowed, problem) if spatial
            else _ImageDual(scores, allowed, problem, logits))
    cap = problem.cap

    mu = tf.zeros_like(cap)
    state = dual.state(mu)
    value = tf.zeros([batch])
    step = tf.fill([batch], initial_step)
    tolerance = tolerance * problem.row_scale
    done = _converged(mu, state["gradient"], cap, tolerance)
    iterations = tf.zeros([batch], tf.int32)

    def keep_going(i, mu, state, value, step, done, stalled, iterations):
        return tf.logical_and(i < max_iterations,
                              tf.reduce_any(tf.logical_not(tf.logical_or(done, stalled))))

    def ascend(i, mu, state, value, step, done, stalled, iterations):
        active = tf.logical_not(tf.logical_or(done, stalled))
        candidate = tf.clip_by_value(mu + step[:, None] * state["gradient"], 0.0, cap)
        gain, new_state = dual.change(mu, state, candidate)
        # Steps moving a logit by more than MAX_BIAS_CHANGE are refused (the step
        # then shrinks): they would leave float32, and no bound needs them at once.
        small_enough = problem.largest_bias_change(candidate - mu) <= MAX_BIAS_CHANGE
        accept = active & (gain >= 0.0) & small_enough
        mu = tf.where(accept[:, None], candidate, mu)
        state = tf.nest.map_structure(
            lambda new, old: tf.where(_expand_like(accept, new), new, old), new_state, state)
        value = tf.where(accept, value + gain, value)
        step = tf.where(active, step * tf.where(accept, STEP_GROWTH, STEP_SHRINK), step)
        done = done | _converged(mu, state["gradient"], cap, tolerance)
        stalled = stalled | (step < MIN_STEP)
        return i + 1, mu, state, value, step, done, stalled, iterations + tf.cast(active, tf.int32)

    loop_vars = (tf.constant(0), mu, state, value, step, done, tf.zeros_like(done), iterations)
    _, mu, state, value, _, done, _, iterations = tf.while_loop(
        keep_going, ascend, loop_vars, maximum_iterations=max_iterations)

    # Gradient of a ">=" row = bound - value: positive means violated.
    row_violation = tf.nn.relu(state["gradient"]) * tf.cast(cap > 0.0, tf.float32)
    forbidden_mass = tf.reduce_mean(tf.cast(no_class[:, 0, :], tf.float32), axis=-1)
    return DualSolution(
        latent=tf.reshape(dual.latent(mu), shape),
        violation=tf.maximum(tf.reduce_max(row_violation, axis=-1), forbidden_mass),
        constraint_violation=row_violation,
        duals=mu,
        dual_value=value,
        iterations=iterations,
        converged=done,
    )


_solve_graph = tf.function(_solve, reduce_retracing=True)
_solve_xla = tf.function(_solve, reduce_retracing=True, jit_compile=True)


def _expand_like(flags, tensor):
    """Per-image flags ``[B]`` reshaped to broadcast against ``tensor`` ``[B, ...]``."""
    return tf.reshape(flags, tf.concat([[-1], tf.ones([tf.rank(tensor) - 1], tf.int32)], 0))


def _floor_scores(scores, allowed):
    """Scores ``[B, K, n]`` relative to the best allowed class of each pixel, floored at
    ``-LOGIT_FLOOR``. Forbidden entries get the floor too (they are masked later), so
    that the best score of a pixel is 0 and one of its allowed classes."""
    best = tf.reduce_max(tf.where(allowed, scores, -float("inf")), axis=1, keepdims=True)
    return tf.where(allowed, tf.maximum(scores - best, -LOGIT_FLOOR), -LOGIT_FLOOR)


def _converged(mu, grad, cap, tolerance):
    """Projected gradient test: a bound at 0 may be over-satisfied, one at its cap violated."""
    stuck_low = tf.logical_and(mu <= 0.0, grad < 0.0)
    stuck_high = tf.logical_and(mu >= cap, grad > 0.0)
    projected = tf.where(tf.logical_or(stuck_low, stuck_high), 0.0, grad)
    return tf.reduce_all(tf.abs(projected) <= tolerance, axis=-1)


def _log_ratio(relative_change, direct):
    """``log(Z' / Z)`` from ``(Z' - Z) / Z``, precise for small changes (the end of the
    ascent, where the gain is tiny); ``direct`` (a difference of logs) for large ones."""
    small = tf.abs(relative_change) < 0.5
    return tf.where(small, tf.math.log1p(tf.where(small, relative_change, 0.0)), direct)


class _Problem:
    """Rows of ``A P >= b`` as: K class lower bounds, K class upper bounds, R regions."""

    def __init__(self, constraints, num_classes, n):
        self.num_classes = num_classes
        self.n = tf.cast(n, tf.float32)
        bound = [constraints.lower, -constraints.upper]
        cap = [constraints.lower_slack, constraints.upper_slack]
        # Each row's size as a fraction of the image: its violations are read against it.
        scale = [tf.ones_like(constraints.lower), tf.ones_like(constraints.upper)]
        self.regions = constraints.regions
        if self.regions is not None:
            regions = self.regions
            batch, count = tf.shape(regions.masks)[0], tf.shape(regions.masks)[1]
            self.region_masks = tf.reshape(regions.masks, [batch, count, -1])
            self.region_classes = tf.one_hot(regions.classes, num_classes)
            self.region_senses = regions.senses
            bound.append(regions.senses * regions.bounds)
            cap.append(regions.slacks)
            area = tf.reduce_sum(self.region_masks, axis=-1) / self.n
            scale.append(tf.clip_by_value(area, 1.0 / self.n, 1.0))
        self.bound = tf.concat([tf.cast(b, tf.float32) for b in bound], axis=-1)
        self.cap = tf.concat([tf.cast(c, tf.float32) for c in cap], axis=-1)
        self.row_scale = tf.concat([tf.cast(c, tf.float32) for c in scale], axis=-1)

    def class_bias(self, mu):
        """Bias of each class from the whole-image bounds, ``[B, K]`` (linear in mu)."""
        return mu[:, :self.num_classes] - mu[:, self.num_classes:2 * self.num_classes]

    def bias(self, mu):
        """Bias ``A^T mu`` as ``[B, K, n]`` (``[B, K, 1]`` without regions; linear in mu)."""
        bias = self.class_bias(mu)[..., None]
        if self.regions is not None:
            weights = (self.region_senses * mu[:, 2 * self.num_classes:])[..., None]
            bias += tf.einsum("brn,brk->bkn", self.region_masks, weights * self.region_classes)
        return bias

    def largest_bias_change(self, delta_mu):
        """Upper bound of ``|A^T delta_mu|`` over pixels and classes, ``[B]``."""
        largest = tf.reduce_max(tf.abs(self.class_bias(delta_mu)), axis=-1)
        if self.regions is not None:
            largest += tf.reduce_sum(tf.abs(delta_mu[:, 2 * self.num_classes:]), axis=-1)
        return largest

    def gradient(self, class_mass, latent=None):
        """``b - (1/n) A P`` from class masses ``[B, K]`` (and P ``[B, K, n]`` for regions)."""
        rows = [class_mass, -class_mass]
        if self.regions is not None:
            region_mass = tf.einsum("brn,bkn->brk", self.region_masks, latent) / self.n
            rows.append(self.region_senses * tf.reduce_sum(region_mass * self.region_classes, -1))
        return self.bound - tf.concat(rows, axis=-1)


class _ImageDual:
    """Dual when every bound covers whole images and suppression is per image.

    Then ``exp(f + bias)`` factors into ``exp(f)`` (computed once) times a
    ``[B, K]`` vector, so an iteration is two batched products. State: the
    partition ``Z = sum_k exp(f_k + bias_k - top)`` per pixel, ``top`` being the
    largest allowed class bias.
    """

    def __init__(self, scores, allowed, problem, logits):
        self.problem = problem
        self.class_allowed = allowed[:, :, 0]
        # Entries in [e^-60, 1] (0 if forbidden), one of them 1 per pixel.
        self.factors = tf.where(allowed, tf.exp(scores), 0.0)
        self.logits = logits

    def _weights(self, mu):
        bias = self.problem.class_bias(mu)
        top = tf.reduce_max(tf.where(self.class_allowed, bias, -float("inf")), -1)
        return tf.where(self.class_allowed, tf.exp(bias - top[:, None]), 0.0), top

    def _gradient(self, weights, partition):
        mass = weights * tf.linalg.matvec(self.factors, 1.0 / partition)
        return self.problem.gradient(mass / self.problem.n)

    def state(self, mu):
        weights, top = self._weights(mu)
        partition = tf.linalg.matmul(weights[:, None, :], self.factors)[:, 0, :]
        return {"partition": partition, "top": top, "gradient": self._gradient(weights, partition)}

    def change(self, mu, state, candidate):
        """Dual gain ``L(candidate) - L(mu)`` and the candidate's state."""
        weights, _ = self._weights(mu)
        new_weights, new_top = self._weights(candidate)
        delta = self.problem.class_bias(candidate - mu)
        # Z' - Z in mu's scale, exact to float32 even when tiny: w * expm1(delta).
        growth = tf.where(self.class_allowed,
                          weights * tf.math.expm1(tf.minimum(delta, MAX_BIAS_CHANGE)), 0.0)
        both = tf.linalg.matmul(tf.stack([new_weights, growth], axis=1), self.factors)
        new_partition, partition_change = both[:, 0, :], both[:, 1, :]
        direct = (tf.math.log(new_partition) - tf.math.log(state["partition"])
                  + (new_top - state["top"])[:, None])
        log_ratio = _log_ratio(partition_change / state["partition"], direct)
        gain = (tf.reduce_sum((candidate - mu) * self.problem.bound, -1)
                - tf.reduce_mean(log_ratio, -1))
        new_state = {"partition": new_partition, "top": new_top,
                     "gradient": self._gradient(new_weights, new_partition)}
        return gain, new_state

    def latent(self, mu):
        """P as ``[B, h, w, K]``, computed from the logits in their own layout (the
        same floored softmax as the factors, without transposing ``K x n`` back)."""
        allowed = self.class_allowed[:, None, None, :]
        best = tf.reduce_max(tf.where(allowed, self.logits, -float("inf")), -1, keepdims=True)
        floored = tf.maximum(self.logits - best, -LOGIT_FLOOR)
        biased = floored + self.problem.class_bias(mu)[:, None, None, :]
        return tf.nn.softmax(tf.where(allowed, biased, -float("inf")), axis=-1)


class _SpatialDual:
    """Dual with region bounds or per-pixel suppression: a softmax per iteration.

    State: the latent P ``[B, K, n]`` and its log partition per pixel.
    """

    def __init__(self, scores, allowed, problem):
        self.problem = problem
        self.scores = scores
        self.allowed = allowed

    def _biased(self, mu):
        return tf.where(self.allowed, self.scores + self.problem.bias(mu), -float("inf"))

    def state(self, mu):
        biased = self._biased(mu)
        log_partition = tf.reduce_logsumexp(biased, axis=1)
        latent = tf.exp(biased - log_partition[:, None, :])
        gradient = self.problem.gradient(tf.reduce_mean(latent, axis=2), latent)
        return {"latent": latent, "log_partition": log_partition, "gradient": gradient}

    def change(self, mu, state, candidate):
        """Dual gain ``L(candidate) - L(mu)`` and the candidate's state."""
        new_state = self.state(candidate)
        delta = tf.minimum(self.problem.bias(candidate - mu), MAX_BIAS_CHANGE)
        # (Z' - Z) / Z = sum_k P_k expm1(delta_k): exact to float32 even when tiny.
        relative = tf.reduce_sum(state["latent"] * tf.math.expm1(delta), axis=1)
        direct = new_state["log_partition"] - state["log_partition"]
        gain = (tf.reduce_sum((candidate - mu) * self.problem.bound, -1)
                - tf.reduce_mean(_log_ratio(relative, direct), -1))
        return gain, new_state

    def latent(self, mu):
        """P as ``[B, n, K]``."""
        return tf.transpose(tf.nn.softmax(self._biased(mu), axis=1), [0, 2, 1])
