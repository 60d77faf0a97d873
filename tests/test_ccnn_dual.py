"""CCNN dual solver: constraint satisfaction, monotone ascent, slack, and a scipy reference."""

import doctest

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import tensorflow as tf

from keras_regseg.methods.ccnn_constraints import (
    HARD_SLACK, ConstraintSet, TagConstraintConfig, tag_constraints)
from keras_regseg.methods import ccnn_dual

HARD = TagConstraintConfig(foreground_slack=HARD_SLACK)


def solve_dual(logits, constraints, jit_compile=False, **kwargs):
    """The solver, compiled as a plain graph unless asked: XLA compiles per shape
    and would dominate this file's run time; test_xla_and_graph_solvers_agree and
    the feasibility test cover the XLA build."""
    return ccnn_dual.solve_dual(logits, constraints, jit_compile=jit_compile, **kwargs)


def random_logits(rng, batch, side, classes, scale=2.0, background_bias=3.0):
    """Network-like scores: background dominant, per-image class biases, pixel noise."""
    logits = rng.normal(size=(batch, side, side, classes)) * scale
    logits += rng.normal(size=(batch, 1, 1, classes)) * scale
    logits[..., 0] += background_bias
    return logits.astype(np.float32)


def class_constraints(lower, lower_slack, upper, upper_slack, forbidden):
    """A ConstraintSet from numpy arrays of shape [B, K] (forbidden: [B, K] or [B, h, w, K])."""
    forbidden = np.asarray(forbidden, bool)
    if forbidden.ndim == 2:
        forbidden = forbidden[:, None, None, :]
    return ConstraintSet(*(tf.constant(np.asarray(a, np.float32))
                           for a in (lower, lower_slack, upper, upper_slack)),
                         forbidden=tf.constant(forbidden))


def rows_from_latent(latent, constraints):
    """Bound values recomputed from P in numpy: [B, 2K + R] as lower, upper, regions (">=" rows)."""
    mass = latent.mean(axis=(1, 2))
    rows = [mass, -mass]
    if constraints.regions is not None:
        r = constraints.regions
        n = latent.shape[1] * latent.shape[2]
        masks, classes = r.masks.numpy(), r.classes.numpy()
        region_mass = np.einsum("brhw,bhwk->brk", masks, latent) / n
        picked = np.take_along_axis(region_mass, classes[..., None], axis=-1)[..., 0]
        rows.append(r.senses.numpy() * picked)
    return np.concatenate(rows, axis=-1)


def bounds_and_caps(constraints):
    bound = [constraints.lower.numpy(), -constraints.upper.numpy()]
    cap = [constraints.lower_slack.numpy(), constraints.upper_slack.numpy()]
    if constraints.regions is not None:
        r = constraints.regions
        bound.append(r.senses.numpy() * r.bounds.numpy())
        cap.append(r.slacks.numpy())
    return np.concatenate(bound, -1), np.concatenate(cap, -1)


def dense_rows(constraints, shape):
    """Rows of ``A`` as a dense float64 array [C, n, K] (lower, upper, regions), for one image."""
    h, w, k = shape
    n = h * w
    rows = [np.zeros((k, n, k)), np.zeros((k, n, k))]
    for c in range(k):
        rows[0][c, :, c] = 1.0
        rows[1][c, :, c] = -1.0
    if constraints.regions is not None:
        r = constraints.regions
        region_rows = np.zeros((r.masks.shape[1], n, k))
        for j in range(r.masks.shape[1]):
            region_rows[j, :, r.classes.numpy()[0, j]] = (
                r.senses.numpy()[0, j] * r.masks.numpy()[0, j].reshape(n))
        rows.append(region_rows)
    return np.concatenate(rows)


def scipy_reference(logits, constraints):
    """Maximize the dual of one image in float64 with scipy's L-BFGS-B, 0 <= mu <= beta.

    Independent of the solver: dense ``A``, log-sum-exp over the allowed classes,
    a different optimizer. Returns (P, dual optimum).
    """
    h, w, k = logits.shape
    n = h * w
    allowed = ~np.broadcast_to(constraints.forbidden.numpy()[0], (h, w, k)).reshape(n, k)
    f = np.where(allowed, logits.reshape(n, k).astype(np.float64), -np.inf)
    bound, cap = (a[0].astype(np.float64) for a in bounds_and_caps(constraints))
    rows = dense_rows(constraints, logits.shape)
    log_partition0 = scipy.special.logsumexp(f, axis=1)

    def negative_dual(mu):
        z = f + np.einsum("c,cnk->nk", mu, rows)
        log_partition = scipy.special.logsumexp(z, axis=1)
        latent = np.exp(z - log_partition[:, None])
        value = mu @ bound - (log_partition - log_partition0).mean()
        gradient = bound - np.einsum("cnk,nk->c", rows, latent) / n
        return -value, -gradient

    result = scipy.optimize.minimize(
        negative_dual, np.zeros_like(bound), jac=True, method="L-BFGS-B",
        bounds=list(zip(np.zeros_like(cap), cap)),
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
    z = f + np.einsum("c,cnk->nk", result.x, rows)
    return scipy.special.softmax(z, axis=1).reshape(h, w, k), -result.fun


def small_problems():
    """Tiny problems (3 x 3, K = 3) touching every kind of bound and both code paths."""
    rng = np.random.default_rng(7)
    problems = []
    for seed in range(3):
        logits = random_logits(np.random.default_rng(seed), 1, 3, 3, scale=1.0,
                               background_bias=5.0)
        problems.append((f"tags-{seed}", logits, tag_constraints([[1.0, 1.0, 1.0]])))
    logits = random_logits(rng, 1, 3, 3)
    problems.append(("suppression+size", logits,
                     tag_constraints([[1.0, 0.0, 1.0]], size_bits=[[0.0, 0.0, 0.0]])))
    problems.append(("infeasible-slack", logits, class_constraints(
        [[0.0, 0.8, 0.8]], [[0.0, 0.5, 1.5]], [[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]],
        [[False, False, False]])))
    region_mask = np.zeros((1, 1, 3, 3), np.float32)
    region_mask[0, 0, :, :2] = 1.0
    region_mask[0, 0, 0, 2] = 0.5
    with_region = tag_constraints([[1.0, 1.0, 1.0]]).with_region_bounds(
        region_mask, [[2]], fraction=0.8, slack=3.0)
    with_region = with_region.with_region_bounds(region_mask, [[1]], 0.05, "upper", 1.0)
    problems.append(("regions", random_logits(rng, 1, 3, 3), with_region))
    boxed = tag_constraints([[1.0, 1.0, 1.0]]).with_boxes(
        [[[0.0, 0.0, 0.67, 0.67]]], [[1]], grid_shape=(3, 3))
    problems.append(("box", random_logits(rng, 1, 3, 3), boxed))
    return problems


@pytest.mark.parametrize("name,logits,constraints", small_problems(),
                         ids=[p[0] for p in small_problems()])
def test_latent_matches_scipy_reference(name, logits, constraints):
    solution = solve_dual(logits, constraints, tolerance=1e-5)
    expected, optimum = scipy_reference(logits[0], constraints)
    assert np.abs(solution.duals.numpy()).max() > 0.1      # constraints were active
    np.testing.assert_allclose(solution.latent.numpy()[0], expected, atol=1e-4)
    assert float(solution.dual_value[0]) == pytest.approx(optimum, abs=1e-5)


@pytest.mark.parametrize("classes,side,jit", [(4, 12, False), (21, 16, True)])
def test_feasible_constraints_are_satisfied_within_tolerance(classes, side, jit):
    rng = np.random.default_rng(classes)
    logits = random_logits(rng, 6, side, classes, scale=3.0, background_bias=5.0)
    tags = np.zeros((6, classes), np.float32)
    tags[:, 0] = 1.0
    for image in range(6):
        tags[image, rng.choice(np.arange(1, classes), size=2, replace=False)] = 1.0
    constraints = tag_constraints(tags, config=HARD)
    tolerance = 1e-3
    solution = solve_dual(logits, constraints, tolerance=tolerance, jit_compile=jit)
    latent = solution.latent.numpy()
    assert solution.converged.numpy().all()
    mass = latent.mean(axis=(1, 2))
    lower, upper = constraints.lower.numpy(), constraints.upper.numpy()
    lower_on = constraints.lower_slack.numpy() > 0
    upper_on = constraints.upper_slack.numpy() > 0
    assert (mass - lower)[lower_on].min() >= -tolerance
    assert (upper - mass)[upper_on].min() >= -tolerance
    # The solver's reported violation is the one P actually has.
    assert solution.violation.numpy().max() <= tolerance
    assert (latent * (1 - tags)[:, None, None, :]).max() == 0.0      # suppression is exact
    np.testing.assert_allclose(latent.sum(-1), 1.0, atol=1e-5)
    # Without constraints pulling, bounds were far from satisfied: the test is not vacuous.
    prior = tf.nn.softmax(logits).numpy().mean(axis=(1, 2))
    assert ((lower - prior)[lower_on]).max() > 0.03


def test_seed_pixels_keep_their_labels_exactly_while_the_bounds_still_hold():
    rng = np.random.default_rng(11)
    logits = random_logits(rng, 4, 8, 3, scale=3.0, background_bias=5.0)
    seeds = np.full((4, 8, 8), 255, np.int32)
    seeds[:, 1, 1:6] = 0
    seeds[:, 5, 2:5] = 1
    seeds[:, 6, 6] = 2                                   # a click
    constraints = tag_constraints(np.ones((4, 3), np.float32), config=HARD).with_seeds(seeds)
    solution = solve_dual(logits, constraints, tolerance=1e-3)
    latent = solution.latent.numpy()
    labelled = seeds != 255
    np.testing.assert_array_equal(latent[labelled], np.eye(3)[seeds[labelled]])
    mass = latent.mean(axis=(1, 2))
    on = constraints.lower_slack.numpy() > 0
    assert (mass - constraints.lower.numpy())[on].min() >= -1e-3
    # The seeds changed the solution elsewhere too: not vacuous.
    free = tag_constraints(np.ones((4, 3), np.float32), config=HARD)
    assert not np.allclose(solve_dual(logits, free).latent.numpy()[labelled], latent[labelled])


def test_dual_value_never_decreases():
    rng = np.random.default_rng(3)
    logits = random_logits(rng, 3, 10, 5, scale=3.0, background_bias=4.0)
    constraints = tag_constraints([[1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    # A large first step forces rejected steps too.
    values = np.stack([
        solve_dual(logits, constraints, max_iterations=t, tolerance=1e-7,
                   initial_step=300.0).dual_value.numpy()
        for t in range(40)])
    increments = np.diff(values, axis=0)
    assert increments.min() >= 0.0
    assert (increments > 0.0).sum() >= 8           # it did ascend
    assert (increments[:4, :2] == 0.0).all()       # after rejecting the first, too long steps
    assert (values[-1] > 0.0).all()


def test_infeasible_bounds_give_finite_latent_and_report_violation():
    rng = np.random.default_rng(11)
    logits = random_logits(rng, 2, 8, 3)
    # Two classes asked for 80 % each: 160 % of the image, even without slack.
    constraints = class_constraints(
        [[0.0, 0.8, 0.8]] * 2, [[0.0, 2.0, 2.0], [0.0, HARD_SLACK, HARD_SLACK]],
        [[1.0] * 3] * 2, [[0.0] * 3] * 2, [[False] * 3] * 2)
    solution = solve_dual(logits, constraints)
    latent = solution.latent.numpy()
    assert np.isfinite(latent).all() and np.isfinite(solution.dual_value.numpy()).all()
    mass = latent.mean(axis=(1, 2))
    expected = np.maximum(0.8 - mass[:, 1:], 0.0).max(axis=-1)
    np.testing.assert_allclose(solution.violation.numpy(), expected, atol=1e-5)
    assert solution.violation.numpy().min() > 0.25
    # The hard (1000) slack was spent: its duals sit at the cap.
    np.testing.assert_allclose(solution.duals.numpy()[1, 1:3], HARD_SLACK, rtol=1e-6)


def test_pixels_with_every_class_forbidden_keep_network_output_and_count_as_violation():
    rng = np.random.default_rng(5)
    logits = random_logits(rng, 1, 4, 3)
    forbidden = np.zeros((1, 4, 4, 3), bool)
    forbidden[0, 0, :, :] = True          # first row: contradictory
    forbidden[0, 1:, :, 2] = True         # elsewhere class 2 is out
    constraints = class_constraints([[0.0] * 3], [[0.0] * 3], [[1.0] * 3], [[0.0] * 3],
                                    forbidden)
    solution = solve_dual(logits, constraints)
    latent = solution.latent.numpy()
    np.testing.assert_allclose(latent[0, 0], tf.nn.softmax(logits[0, 0]).numpy(), atol=1e-6)
    assert latent[0, 1:, :, 2].max() == 0.0
    assert float(solution.violation[0]) == pytest.approx(0.25)


def test_whole_image_and_per_pixel_code_paths_agree():
    rng = np.random.default_rng(2)
    logits = random_logits(rng, 4, 9, 6, scale=3.0)
    tags = np.array([[1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1],
                     [0, 1, 1, 0, 0, 0]], np.float32)
    image_level = tag_constraints(tags, size_bits=np.eye(4, 6, 1, dtype=np.float32))
    per_pixel = image_level.with_suppression(np.zeros((4, 9, 9, 6), bool))
    a = solve_dual(logits, image_level, tolerance=1e-5)
    b = solve_dual(logits, per_pixel, tolerance=1e-5)
    np.testing.assert_allclose(a.latent.numpy(), b.latent.numpy(), atol=2e-5)
    np.testing.assert_allclose(a.dual_value.numpy(), b.dual_value.numpy(), atol=1e-5)


def test_xla_and_graph_solvers_agree():
    rng = np.random.default_rng(4)
    logits = random_logits(rng, 3, 8, 4)
    image_level = tag_constraints([[1, 1, 0, 1], [1, 0, 1, 0], [0, 1, 1, 1]])
    boxed = image_level.with_boxes(rng.uniform(0.0, 0.5, (3, 2, 4)) + [0, 0, 0.5, 0.5],
                                   [[1, 3], [2, -1], [1, 1]], grid_shape=(8, 8))
    for constraints in (image_level, boxed):
        a = solve_dual(logits, constraints, jit_compile=True)
        b = solve_dual(logits, constraints, jit_compile=False)
        np.testing.assert_allclose(a.latent.numpy(), b.latent.numpy(), atol=1e-5)
        np.testing.assert_array_equal(a.iterations.numpy(), b.iterations.numpy())
        assert a.iterations.numpy().max() > 2


def test_untagged_image_keeps_network_output():
    logits = random_logits(np.random.default_rng(8), 2, 5, 3)
    solution = solve_dual(logits, tag_constraints([[0, 0, 0], [1, 0, 1]]))
    np.testing.assert_allclose(solution.latent.numpy()[0], tf.nn.softmax(logits[0]).numpy(),
                               atol=1e-6)
    assert int(solution.iterations[0]) == 0 and bool(solution.converged[0])
    assert solution.latent.numpy()[1, ..., 1].max() == 0.0


def test_extreme_and_half_precision_logits_stay_finite():
    logits = np.zeros((2, 6, 6, 3), np.float32)
    logits[0, ..., 0] = 1e4                 # absurdly confident background
    logits[1, ..., 2] = -3e4
    constraints = tag_constraints([[1, 1, 1], [1, 1, 1]], config=HARD)
    solution = solve_dual(logits, constraints)
    assert np.isfinite(solution.latent.numpy()).all()
    # The hard background upper bound (0.7) still holds.
    assert solution.latent.numpy()[0, ..., 0].mean() <= 0.7 + 1e-3
    half = solve_dual(random_logits(np.random.default_rng(1), 2, 6, 3).astype(np.float16),
                      constraints)
    assert half.latent.dtype == tf.float32 and np.isfinite(half.latent.numpy()).all()
    # A suppressed class far above the allowed ones, in both code paths.
    logits = np.zeros((1, 6, 6, 3), np.float32)
    logits[..., 1] = 1e4
    logits[..., 2] = np.linspace(-2.0, 2.0, 6)
    suppressed = tag_constraints([[1, 0, 1]], config=HARD)
    for constraints in (suppressed, suppressed.with_suppression(np.zeros((1, 6, 6, 3), bool))):
        latent = solve_dual(logits, constraints).latent.numpy()
        assert np.isfinite(latent).all() and latent[..., 1].max() == 0.0
        assert latent[..., 0].mean() == pytest.approx(0.5, abs=0.01)


def test_empty_batch_gives_empty_solution():
    logits = np.zeros((0, 5, 5, 3), np.float32)
    constraints = tag_constraints(np.zeros((0, 3), np.float32))
    solution = solve_dual(logits, constraints)
    assert solution.latent.shape == (0, 5, 5, 3) and solution.violation.shape == (0,)


def test_bad_arguments_raise_clear_errors():
    logits = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="3 classes but the constraints 2"):
        solve_dual(logits, tag_constraints([[1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[B, h, w, K\]"):
        solve_dual(logits[0], tag_constraints([[1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="max_iterations"):
        solve_dual(logits, tag_constraints([[1.0, 1.0, 1.0]]), max_iterations=-1)
    with pytest.raises(ValueError, match="tolerance"):
        solve_dual(logits, tag_constraints([[1.0, 1.0, 1.0]]), tolerance=0.0)
    boxed = tag_constraints([[1.0, 1.0, 1.0]]).with_boxes([[[0.0, 0.0, 0.5, 0.5]]], [[1]], (5, 5))
    with pytest.raises(ValueError, match=r"region masks are on a \(5, 5\) grid but the logits on"
                                         r" \(4, 4\)"):
        solve_dual(logits, boxed._replace(forbidden=tf.zeros((1, 1, 1, 3), tf.bool)))
    with pytest.raises(ValueError, match=r"forbidden are on a \(5, 5\) grid"):
        solve_dual(logits, boxed._replace(regions=None))


def test_docstring_examples():
    result = doctest.testmod(ccnn_dual)
    assert result.attempted >= 4 and result.failed == 0
