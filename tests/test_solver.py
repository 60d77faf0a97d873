"""Alpha-expansion on the seeded 8-grid Potts energy: optimality, constraints, safety."""

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_regseg.data import spec
from keras_regseg.solvers import energy as E
from keras_regseg.solvers.alpha_expansion import run_expansion, solve_alpha_expansion, starting_solution

IGNORE_INDEX, PAD_INDEX = spec.IGNORE_INDEX, spec.PAD_INDEX


def test_label_conventions_have_one_dependency_free_home():
    import ast
    import inspect

    from keras_regseg import constants

    tree = ast.parse(inspect.getsource(constants))
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    for module in (E, spec):   # the solver and the data layer read the same values
        assert (module.IGNORE_INDEX, module.PAD_INDEX, module.MAX_CLASSES) == (255, 254, 254)
        assert module.PAD_INDEX is constants.PAD_INDEX


# ---------------------------------------------------------------- references (loops, no shared code)


def reference_pairs(height, width):
    """Every 8-neighbour pair once: ``(p, q, distance)`` with flat indices p < q."""
    pairs = []
    for i, j in itertools.product(range(height), range(width)):
        for di, dj in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a, b = i + di, j + dj
            if 0 <= a < height and 0 <= b < width:
                pairs.append((i * width + j, a * width + b, float(np.hypot(di, dj))))
    return pairs


def reference_weights(image, pairs, valid=None):
    """Boykov-Jolly weights by the formula, pair by pair; 0 on pairs touching invalid pixels."""
    flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
    inside = np.ones(len(flat), bool) if valid is None else np.asarray(valid).ravel()
    squared = [float(np.sum((flat[p] - flat[q]) ** 2)) for p, q, _ in pairs]
    used = [s for s, (p, q, _) in zip(squared, pairs) if inside[p] and inside[q]]
    sigma2 = sum(used) / len(used)
    weights = [
        (np.exp(-s / (2 * sigma2)) if sigma2 > 0 else 1.0) / d if inside[p] and inside[q] else 0.0
        for s, (p, q, d) in zip(squared, pairs)
    ]
    return np.array(weights)


def reference_energies(labelings, probabilities, seeds, pairs, weights, unary_weight, potts_weight):
    """Energy of each labeling in ``labelings`` ``[M, H, W]`` straight from the definition."""
    num_classes = probabilities.shape[-1]
    flat_labels = labelings.reshape(len(labelings), -1)
    flat_p = np.clip(probabilities.reshape(-1, num_classes).astype(np.float64), 1e-8, 1.0)
    flat_seeds = seeds.ravel()
    inside = flat_seeds != PAD_INDEX
    seeded = flat_seeds < num_classes
    free = inside & ~seeded
    nll = -np.log(flat_p[np.arange(flat_p.shape[0]), flat_labels])  # [M, N]
    energies = unary_weight * (nll * free).sum(1)
    for (p, q, _), w in zip(pairs, weights):
        if inside[p] and inside[q]:
            energies = energies + potts_weight * w * (flat_labels[:, p] != flat_labels[:, q])
    violated = (flat_labels[:, seeded] != flat_seeds[seeded]).any(1)
    return np.where(violated, np.inf, energies)


def all_labelings(height, width, num_classes):
    grid = np.array(list(itertools.product(range(num_classes), repeat=height * width)))
    return grid.reshape(-1, height, width)


def random_problem(rng, height, width, num_classes, seed_fraction=0.2, channels=1):
    logits = 2.0 * rng.normal(size=(height, width, num_classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    image = rng.uniform(size=(height, width, channels)).astype(np.float32)
    seeds = np.full((height, width), IGNORE_INDEX, np.int32)
    chosen = rng.uniform(size=(height, width)) < seed_fraction
    seeds[chosen] = rng.integers(0, num_classes, size=int(chosen.sum()))
    return probabilities.astype(np.float32), image, seeds


# ---------------------------------------------------------------- edge weights and grid


def test_grid_pairs_are_the_8_neighbourhood_once_each():
    for height, width in ((1, 1), (1, 5), (4, 1), (3, 4), (5, 5)):
        first, second = E.grid_pairs(height, width)
        expected = sorted((p, q) for p, q, _ in reference_pairs(height, width))
        assert sorted(zip(first.tolist(), second.tolist())) == expected
        assert (first < second).all()


def test_contrast_weights_match_the_formula_pair_by_pair():
    rng = np.random.default_rng(0)
    valid = np.ones((4, 5), bool)
    valid[3, :], valid[:, 0] = False, False
    for channels, mask in ((1, None), (3, None), (3, valid)):
        image = rng.uniform(size=(4, 5, channels))
        first, second = E.grid_pairs(4, 5)
        pairs = reference_pairs(4, 5)
        weights = reference_weights(image, pairs, mask)
        expected = dict(((p, q), w) for (p, q, _), w in zip(pairs, weights))
        got = E.contrast_edge_weights(image, mask)
        np.testing.assert_allclose(got, [expected[p, q] for p, q in zip(first, second)], rtol=1e-12)


def test_contrast_weights_agree_with_the_loss_module():
    from keras_regseg.losses.contrast import grid_edge_weights_np

    rng = np.random.default_rng(9)
    image = rng.uniform(size=(6, 7, 3))
    valid = np.ones((6, 7), bool)
    valid[:, 5:] = False
    for mask in (None, valid):
        maps = grid_edge_weights_np(image, mask)
        mine = E.contrast_edge_weights(image, mask)
        np.testing.assert_allclose(E.edge_weights_from_maps(maps), mine, rtol=1e-12)
    constant = E.edge_weights_from_maps(grid_edge_weights_np(np.full((3, 4), 0.2)))
    np.testing.assert_allclose(constant, E.contrast_edge_weights(np.zeros((3, 4))))


def test_contrast_weights_constant_and_extreme_images_have_no_nan():
    np.testing.assert_allclose(
        E.contrast_edge_weights(np.full((3, 3, 3), 0.7)), E.contrast_edge_weights(np.zeros((3, 3)))
    )
    constant = E.contrast_edge_weights(np.full((3, 3), 0.7))
    np.testing.assert_allclose(np.sort(np.unique(np.round(constant, 12))), [1 / np.sqrt(2), 1.0])
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(5, 5))
    for scale in (1e-300, 1e300):  # the weights are scale invariant and stay finite
        np.testing.assert_allclose(
            E.contrast_edge_weights(image * scale), E.contrast_edge_weights(image), rtol=1e-9
        )
    spike = np.zeros((5, 5))
    spike[2, 2] = 1e-200  # sigma^2 underflows relative to nothing; still finite
    assert np.isfinite(E.contrast_edge_weights(spike)).all()


def test_potts_energy_matches_the_definition_with_seeds_and_padding():
    rng = np.random.default_rng(2)
    probabilities, image, seeds = random_problem(rng, 5, 6, 3, seed_fraction=0.2)
    probabilities[0, 0] = (0.0, 0.0, 1.0)  # a zero probability costs -log(1e-8), not inf
    seeds[:, 5] = PAD_INDEX
    pairs = reference_pairs(5, 6)
    weights = reference_weights(image, pairs)
    labelings = rng.integers(0, 3, size=(50, 5, 6))
    labelings[:25][:, seeds < 3] = seeds[seeds < 3]  # half of them keep the seeds
    expected = reference_energies(labelings, probabilities, seeds, pairs, weights, 0.7, 1.3)
    mine = E.contrast_edge_weights(image)
    got = [E.potts_energy(x, probabilities, seeds, mine, 0.7, 1.3) for x in labelings]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isfinite(expected[:25]).all() and np.isinf(expected[25:]).any()
    with pytest.raises(ValueError, match="labels inside the image must be classes"):
        E.potts_energy(np.full((5, 6), PAD_INDEX), probabilities, np.full((5, 6), IGNORE_INDEX), weights)


# ---------------------------------------------------------------- optimality


@pytest.mark.parametrize("trial", range(12))
def test_binary_problems_reach_the_brute_force_optimum(trial):
    rng = np.random.default_rng(100 + trial)
    probabilities, image, seeds = random_problem(rng, 3, 4, 2, seed_fraction=0.15)
    unary_weight, potts_weight = rng.choice([0.2, 1.0, 3.0]), rng.uniform(0.1, 3.0)
    pairs = reference_pairs(3, 4)
    weights = reference_weights(image, pairs)
    labelings = all_labelings(3, 4, 2)
    energies = reference_energies(labelings, probabilities, seeds, pairs, weights, unary_weight, potts_weight)

    labels, energy = solve_alpha_expansion(
        probabilities, image, seeds, unary_weight=unary_weight, potts_weight=potts_weight
    )
    own = reference_energies(labels[None], probabilities, seeds, pairs, weights, unary_weight, potts_weight)
    assert energy == pytest.approx(own[0], rel=1e-9)  # the reported energy is that of the labels
    assert energy == pytest.approx(energies.min(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("trial", range(4))
def test_three_labels_stay_within_the_expansion_bound(trial):
    # Converged alpha-expansion on Potts is within a factor 2 of the optimum.
    rng = np.random.default_rng(200 + trial)
    probabilities, image, seeds = random_problem(rng, 2, 4, 3, seed_fraction=0.0)
    pairs = reference_pairs(2, 4)
    weights = reference_weights(image, pairs)
    energies = reference_energies(all_labelings(2, 4, 3), probabilities, seeds, pairs, weights, 1.0, 2.0)
    _, energy = solve_alpha_expansion(probabilities, image, seeds, potts_weight=2.0, max_iterations=None)
    assert energies.min() - 1e-9 <= energy <= 2 * energies.min() + 1e-9


@pytest.mark.parametrize("trial", range(8))
def test_energy_never_exceeds_the_starting_labeling(trial):
    rng = np.random.default_rng(300 + trial)
    probabilities, image, seeds = random_problem(rng, 16, 16, 4, seed_fraction=0.05, channels=3)
    unary_weight, potts_weight = 10 ** rng.uniform(-2, 1), 10 ** rng.uniform(-2, 1.5)
    for max_iterations, warm_start in ((1, True), (1, False), (5, True), (None, False)):
        labels, energy = solve_alpha_expansion(
            probabilities, image, seeds, unary_weight=unary_weight, potts_weight=potts_weight,
            max_iterations=max_iterations, warm_start=warm_start,
        )
        start, start_energy = starting_solution(
            probabilities, image, seeds, unary_weight=unary_weight, potts_weight=potts_weight
        )
        weights = E.contrast_edge_weights(image)
        recomputed = E.potts_energy(labels, probabilities, seeds, weights, unary_weight, potts_weight)
        assert energy == pytest.approx(recomputed)
        assert energy <= start_energy


def test_potts_zero_returns_the_argmax_and_unary_zero_returns_a_minimal_cut():
    rng = np.random.default_rng(4)
    probabilities, image, _ = random_problem(rng, 6, 7, 3)
    seeds = np.full((6, 7), IGNORE_INDEX)
    labels, _ = solve_alpha_expansion(probabilities, image, seeds, potts_weight=0.0)
    np.testing.assert_array_equal(labels, probabilities.argmax(-1))

    # Without unary costs, a constant image and seeds on the left and right columns,
    # the cheapest cut is one straight vertical line (6 unit + 10 diagonal edges).
    seeds[:, 0], seeds[:, -1] = 0, 2
    labels, energy = solve_alpha_expansion(probabilities, np.zeros((6, 7)), seeds, unary_weight=0.0)
    assert energy == pytest.approx(6 + 10 / np.sqrt(2))
    assert set(np.unique(labels)) == {0, 2}
    assert all((np.diff(row) >= 0).all() for row in labels)  # one switch per row, left to right


# ---------------------------------------------------------------- constraints


def test_seeds_hold_against_confident_predictions_and_strong_smoothing():
    probabilities = np.zeros((8, 8, 3), np.float32)
    probabilities[..., 0] = 1.0  # the network is sure everything is class 0
    seeds = np.full((8, 8), IGNORE_INDEX)
    seeds[3, 3], seeds[6, 1], seeds[0, 7] = 1, 2, 0
    for potts_weight in (0.01, 1.0, 1e6):
        labels, energy = solve_alpha_expansion(
            probabilities, np.zeros((8, 8)), seeds, potts_weight=potts_weight
        )
        assert (labels[3, 3], labels[6, 1], labels[0, 7]) == (1, 2, 0)
        assert np.isfinite(energy)


def test_labels_are_restricted_to_those_among_the_seeds():
    probabilities = np.full((6, 6, 4), 0.02, np.float32)
    probabilities[:, :3, 0], probabilities[:, 3:, 3] = 0.94, 0.94  # class 3 on the right
    probabilities[2:4, 2:4] = (0.02, 0.02, 0.94, 0.02)  # class 2 in the middle
    seeds = np.full((6, 6), IGNORE_INDEX)
    seeds[0, 0], seeds[5, 5] = 0, 1
    kwargs = dict(potts_weight=0.01)
    restricted, _ = solve_alpha_expansion(probabilities, np.zeros((6, 6)), seeds, **kwargs)
    assert set(np.unique(restricted)) <= {0, 1}
    free, _ = solve_alpha_expansion(probabilities, np.zeros((6, 6)), seeds, restrict_labels=False, **kwargs)
    assert {2, 3} <= set(np.unique(free))
    # One seeded class only (or none): every class is allowed.
    seeds[5, 5] = IGNORE_INDEX
    single, _ = solve_alpha_expansion(probabilities, np.zeros((6, 6)), seeds, **kwargs)
    assert {0, 2, 3} <= set(np.unique(single))
    assert E.present_labels(seeds, 4).tolist() == [0, 1, 2, 3]


def test_image_without_seeds_uses_the_prediction_alone():
    rng = np.random.default_rng(5)
    probabilities, image, _ = random_problem(rng, 10, 10, 3)
    seeds = np.full((10, 10), IGNORE_INDEX)
    labels, energy = solve_alpha_expansion(probabilities, image, seeds, potts_weight=0.5)
    start, start_energy = starting_solution(probabilities, image, seeds, potts_weight=0.5)
    np.testing.assert_array_equal(start, probabilities.argmax(-1))
    assert energy < start_energy  # the noisy argmax gets smoothed
    assert (labels != start).any()


def test_single_class_map_and_all_padding():
    probabilities = np.ones((4, 5, 1), np.float32)
    seeds = np.full((4, 5), IGNORE_INDEX)
    seeds[0, 0] = 0
    labels, energy = solve_alpha_expansion(probabilities, np.zeros((4, 5)), seeds)
    assert labels.tolist() == np.zeros((4, 5)).tolist() and energy == 0.0

    padded = np.full((4, 5), PAD_INDEX)
    labels, energy = solve_alpha_expansion(np.full((4, 5, 2), 0.5), np.zeros((4, 5)), padded)
    assert (labels == PAD_INDEX).all() and energy == 0.0


def test_padding_is_left_out_of_the_graph():
    rng = np.random.default_rng(6)
    probabilities, image, seeds = random_problem(rng, 6, 7, 3, seed_fraction=0.1)
    seeds[0, 0], seeds[5, 6] = 0, 2
    padded_p = np.pad(probabilities, ((1, 2), (0, 3), (0, 0)), constant_values=1 / 3)
    padded_image = np.pad(image, ((1, 2), (0, 3), (0, 0)), constant_values=5.0)  # garbage outside
    padded_seeds = np.pad(seeds, ((1, 2), (0, 3)), constant_values=PAD_INDEX)
    # Padding takes no part in the contrast weights (nor sigma): both problems are the same.
    inner, inner_energy = solve_alpha_expansion(probabilities, image, seeds, potts_weight=0.7)
    outer, outer_energy = solve_alpha_expansion(padded_p, padded_image, padded_seeds, potts_weight=0.7)
    np.testing.assert_array_equal(outer[1:7, :7], inner)
    assert (outer[padded_seeds == PAD_INDEX] == PAD_INDEX).all()
    assert outer_energy == pytest.approx(inner_energy, rel=1e-12)


# ---------------------------------------------------------------- quantization


def test_quantized_terms_stay_below_the_gco_limit_and_seed_penalties_dominate():
    rng = np.random.default_rng(7)
    probabilities, image, seeds = random_problem(rng, 12, 12, 4, seed_fraction=0.2)
    weights = E.contrast_edge_weights(image)
    labels = E.present_labels(seeds, 4)
    start = E.start_labeling(probabilities, seeds, labels)
    for unary_weight, potts_weight in ((1.0, 1.0), (1e-12, 1e12), (1e300, 1e-300), (0.0, 5.0)):
        problem = E.build_gco_problem(
            probabilities, seeds, weights, labels, start, unary_weight, potts_weight
        )
        assert problem.unary.dtype == np.int32 and problem.unary.flags.c_contiguous
        assert 0 <= problem.unary.min() and problem.unary.max() <= E.GCO_MAX_ENERGYTERM
        assert 0 <= problem.edge_costs.min() and problem.edge_costs.max() <= E.EDGE_BUDGET
        incident = np.bincount(problem.first, problem.edge_costs, 144)
        incident += np.bincount(problem.second, problem.edge_costs, 144)
        seeded = np.flatnonzero(seeds.ravel() < 4)
        # A seed pixel costs 0 for its label and the same penalty for each other one.
        wrong = problem.unary[seeded].sum(1) / (problem.unary.shape[1] - 1)
        assert (wrong > incident[seeded]).all()
        assert problem.start.tolist() == [np.flatnonzero(problem.labels == c)[0] for c in start.ravel()]


def test_quantization_resolves_differences_of_1e_5_of_the_energy():
    # 1x3 grid, seeds 0 and 1 at the ends, the middle pixel free: the argmax says 1
    # by 4 delta of unary, the stronger left edge says 0 by 6 delta: 0 wins by 2 delta.
    delta = 1e-5
    probabilities = np.array([[[0.5, 0.5], [0.5 - delta, 0.5 + delta], [0.5, 0.5]]])
    seeds = np.array([[0, IGNORE_INDEX, 1]])
    weights = np.array([1.0 + 6 * delta, 1.0])  # pairs (0, 1) and (1, 2)
    start, start_energy = starting_solution(probabilities, None, seeds, edge_weights=weights)
    labels, energy = solve_alpha_expansion(probabilities, None, seeds, edge_weights=weights)
    assert start.tolist() == [[0, 1, 1]] and labels.tolist() == [[0, 0, 1]]
    assert start_energy - energy == pytest.approx(2 * delta, rel=1e-2)


RISKY_CASES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from keras_regseg.solvers import energy as E
    from keras_regseg.solvers.alpha_expansion import solve_alpha_expansion, starting_solution

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(7, 6)).astype(np.float32)
    image = rng.uniform(size=(7, 6, 1))
    seeds = np.full((7, 6), 255); seeds[0, 0] = 0; seeds[6, 5] = 2; seeds[3, 0] = 1
    hard = np.where(p > 0.5, 1.0, 0.0); hard[..., 0] += hard.sum(-1) == 0   # zeros and ones only
    tiny = np.where(p > 0.3, p, 1e-30)                                      # below the floor
    cases = {
        "huge_unary": dict(probabilities=p, image=image, unary_weight=1e300, potts_weight=1.0),
        "huge_potts": dict(probabilities=p, image=image, unary_weight=1.0, potts_weight=1e300),
        "max_float_both": dict(probabilities=p, image=image, unary_weight=1.7e308, potts_weight=1.7e308),
        "tiny_both": dict(probabilities=p, image=image, unary_weight=1e-300, potts_weight=5e-324),
        "zero_both": dict(probabilities=p, image=image, unary_weight=0.0, potts_weight=0.0),
        "hard_probabilities": dict(probabilities=hard, image=image, unary_weight=1e6, potts_weight=1e-6),
        "tiny_probabilities": dict(probabilities=tiny, image=image),
        "pure_potts": dict(probabilities=p, image=image, unary_weight=0.0, potts_weight=1.0),
        "unit_weights": dict(probabilities=p, image=image, unary_weight=1.0, potts_weight=1.0),
        "huge_image": dict(probabilities=p, image=image * 1e300),
        "tiny_image": dict(probabilities=p, image=image * 1e-310),
    }
    out = {}
    for name, kw in cases.items():
        labels, energy = solve_alpha_expansion(seeds=seeds, **kw)
        _, start_energy = starting_solution(seeds=seeds, **{k: v for k, v in kw.items()})
        argmax = E.start_labeling(kw["probabilities"], seeds, E.present_labels(seeds, 3))
        out[name] = dict(labels=labels.tolist(), energy=energy, start_energy=start_energy,
                         argmax=argmax.tolist())
    nan_map = p.copy(); nan_map[2, 2, 1] = np.nan
    for name, kw in {"nan_probabilities": dict(probabilities=nan_map),
                     "inf_potts": dict(probabilities=p, potts_weight=np.inf)}.items():
        try:
            solve_alpha_expansion(image=image, seeds=seeds, image_id=name, **kw)
            out[name] = "no error"
        except ValueError as error:
            out[name] = str(error)
    print(json.dumps(out))
    """
)


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_raw_gco_aborts_on_big_terms_so_the_subprocess_check_is_meaningful():
    control = run_python(
        "import numpy as np, gco\n"
        "g = gco.GCO(); g.create_general_graph(2, 2)\n"
        "g.set_data_cost(np.array([[0, 10**8], [0, 0]], np.intc))\n"
        "g.set_all_neighbors(np.array([0]), np.array([1]), np.array([1], np.intc))\n"
        "g.set_smooth_cost(np.array([[0, 1], [1, 0]], np.intc)); g.expansion(1)\n"
    )
    assert control.returncode != 0 and "GCO_MAX_ENERGYTERM" in control.stderr


def test_extreme_inputs_neither_abort_nor_give_nonsense():
    result = run_python(RISKY_CASES)
    assert result.returncode == 0, result.stderr[-2000:]
    cases = json.loads(result.stdout.strip().splitlines()[-1])
    assert "image 'nan_probabilities'" in cases.pop("nan_probabilities")
    assert "potts_weight is inf" in cases.pop("inf_potts")
    seeds_at = {(0, 0): 0, (6, 5): 2, (3, 0): 1}
    for name, case in cases.items():
        labels = np.array(case["labels"])
        assert all(labels[pos] == value for pos, value in seeds_at.items()), name
        assert set(np.unique(labels)) <= {0, 1, 2}, name
        assert case["energy"] <= case["start_energy"], name
    for name in ("huge_unary", "hard_probabilities", "tiny_both"):  # Potts negligible: the argmax wins
        assert cases[name]["labels"] == cases[name]["argmax"], name
    # Only ratios matter: a negligible unary term is no unary term, equal weights are equal weights.
    assert cases["huge_potts"]["labels"] == cases["pure_potts"]["labels"]
    assert cases["huge_potts"]["labels"] != cases["huge_potts"]["argmax"]
    assert cases["max_float_both"]["labels"] == cases["unit_weights"]["labels"]
    assert cases["max_float_both"]["energy"] == np.inf  # the true energy overflows float64
    assert np.isfinite(cases["huge_potts"]["energy"]) and np.isfinite(cases["tiny_probabilities"]["energy"])
    assert cases["zero_both"]["energy"] == 0.0
    assert cases["huge_image"]["labels"] == cases["tiny_image"]["labels"] == cases["unit_weights"]["labels"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_probabilities_are_rejected_naming_the_image(bad):
    probabilities = np.full((4, 4, 2), 0.5)
    probabilities[1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"image 'case-7'.*non-finite"):
        seeds = np.full((4, 4), IGNORE_INDEX)
        solve_alpha_expansion(probabilities, np.zeros((4, 4)), seeds, image_id="case-7")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image=np.zeros((5, 4))), r"image 'x': the probability map is 4x4 but the image is 5x4"),
        (dict(seeds=np.full((4, 3), IGNORE_INDEX)), r"image 'x': seeds have shape \(4, 3\)"),
        (dict(seeds=np.full((4, 4), 7)), r"image 'x': seed value 7"),
        (dict(probabilities=np.full((4, 4, 2), 3.0)), r"image 'x': probabilities range over \[3, 3\]"),
        (dict(image=np.full((4, 4), np.nan)), r"image 'x': the image holds non-finite"),
        (dict(unary_weight=np.nan), r"unary_weight is nan"),
        (dict(potts_weight=-1.0), r"potts_weight is -1.0"),
        (dict(max_iterations=0), r"max_iterations is 0"),
        (dict(edge_weights=np.ones(3)), r"image 'x': edge weights have shape \(3,\)"),
    ],
)
def test_bad_input_raises_a_clear_error(change, message):
    kwargs = dict(
        probabilities=np.full((4, 4, 2), 0.5),
        image=np.zeros((4, 4)),
        seeds=np.full((4, 4), IGNORE_INDEX),
        image_id="x",
    )
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        solve_alpha_expansion(**kwargs)


def test_warm_and_cold_starts_agree_on_a_clear_problem():
    rng = np.random.default_rng(8)
    truth = np.zeros((12, 12), np.int64)
    truth[3:9, 3:9] = 1
    truth[5:7, 5:7] = 2
    logits = 3.0 * np.eye(3)[truth] + rng.normal(size=(12, 12, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    seeds = np.full((12, 12), IGNORE_INDEX)
    seeds[0, :], seeds[4, 4:8], seeds[6, 6] = 0, 1, 2
    image = truth[..., None] / 2.0
    weights = E.contrast_edge_weights(image)
    labels = E.present_labels(seeds, 3)
    start = E.start_labeling(probabilities, seeds, labels)
    problem = E.build_gco_problem(probabilities, seeds, weights, labels, start, 1.0, 2.0)
    warm, cold = run_expansion(problem, None, True), run_expansion(problem, None, False)
    np.testing.assert_array_equal(problem.labels[warm].reshape(12, 12), truth)
    np.testing.assert_array_equal(warm, cold)


@pytest.mark.parametrize("unary_weight, potts_weight", [(1e-12, 1e300), (1e300, 1e-12)])
def test_extreme_weight_ratios_quantize_without_overflow(unary_weight, potts_weight):
    # A denormal share of one term must not make the integer scale overflow to inf.
    rng = np.random.default_rng(0)
    probabilities = rng.random((8, 8, 3))
    probabilities /= probabilities.sum(-1, keepdims=True)
    seeds = np.full((8, 8), 255)
    seeds[0, 0], seeds[7, 7] = 0, 2
    with np.errstate(over="raise", invalid="raise"):
        labels, energy = solve_alpha_expansion(probabilities, rng.random((8, 8)), seeds,
                                               unary_weight=unary_weight, potts_weight=potts_weight)
    assert labels[0, 0] == 0 and labels[7, 7] == 2 and np.isfinite(energy)
    assert set(np.unique(labels)) <= {0, 1, 2}
