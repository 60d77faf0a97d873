"""Stage A as the trust-region authors solve it: their energy, warm starts, round diagnostics."""

import math

import numpy as np
import pytest

from keras_regseg.methods.stage_a_diagnostics import RoundDiagnostics
from keras_regseg.solvers import energy as E
from keras_regseg.solvers.alpha_expansion import solve_alpha_expansion, starting_solution
from keras_regseg.solvers.pool import SolverPool


def tiny_problem():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=(4, 5))
    image = rng.random((4, 5))
    seeds = np.full((4, 5), 255)
    seeds[0, 0], seeds[3, 4] = 0, 2
    return probabilities, image, seeds


def test_pair_normalization_is_pixels_per_pair():
    seeds = np.full((4, 5), 255)
    pairs = 4 * 4 + 3 * 5 + 2 * 3 * 4             # right, down, two diagonals
    assert E.pair_normalization(seeds) == pytest.approx(20 / pairs)
    seeds[:, 0] = 254                             # padding leaves the image and its pairs
    pairs_inside = 4 * 3 + 3 * 4 + 2 * 3 * 3
    assert E.pair_normalization(seeds) == pytest.approx(16 / pairs_inside)


def test_authors_integer_costs_follow_alpha_expansion_cpp():
    probabilities, image, seeds = tiny_problem()
    weights = E.contrast_edge_weights(image)
    labels = np.array([0, 2])                     # classes present among the seeds
    start = E.start_labeling(probabilities, seeds, labels)
    tr_weight, potts = 0.05, 100.0
    q = E.build_authors_problem(probabilities, seeds, weights, labels, start, tr_weight, potts)
    scale, norm = 10000 / potts, 20 / 55
    nll = -np.log(probabilities.reshape(-1, 3))
    free = 7                                      # an unlabeled pixel
    for compact, label in enumerate(labels):
        assert q.unary[free, compact] == math.trunc(scale * tr_weight * nll[free, label])
    # Seed of class 2 at the last pixel: its own cost, plus 10 * potts for the other label.
    own = tr_weight * nll[19, 2]
    assert q.unary[19].tolist() == [math.trunc(scale * (own + 10 * potts)), math.trunc(scale * own)]
    np.testing.assert_array_equal(q.edge_costs, np.trunc(scale * potts * weights * norm))
    assert q.edge_costs.max() <= 10000 * norm     # 2500 per unit weight at N_roi / N_pairs = 1/4


def test_authors_and_library_energies_weigh_network_against_potts_differently():
    probabilities, image, seeds = tiny_problem()
    weights = E.contrast_edge_weights(image)
    labels = np.array([0, 2])
    start = E.start_labeling(probabilities, seeds, labels)
    # Library units: lambda per unit of Potts weight -> solver weights (lambda * potts, potts).
    library = E.build_gco_problem(probabilities, seeds, weights, labels, start, 0.05 * 100, 100.0)
    authors = E.build_authors_problem(probabilities, seeds, weights, labels, start, 0.05, 100.0)
    strongest = int(np.argmax(weights))
    nll = -np.log(probabilities.reshape(-1, 3))
    free = 7
    gap = abs(nll[free, 0] - nll[free, 2])        # unary difference between the two labels
    library_ratio = abs(int(library.unary[free, 0]) - int(library.unary[free, 1])) / library.edge_costs[strongest]
    authors_ratio = abs(int(authors.unary[free, 0]) - int(authors.unary[free, 1])) / authors.edge_costs[strongest]
    # Library: 0.05 nats-to-Potts per unit of w; authors: 0.05 / (100 * N_roi / N_pairs).
    assert library_ratio == pytest.approx(0.05 * gap / weights[strongest], rel=1e-3)
    expected = 0.05 * gap / (100 * (20 / 55) * weights[strongest])
    assert authors_ratio == pytest.approx(expected, abs=1.0 / authors.edge_costs[strongest])
    assert authors_ratio < library_ratio / 10     # the network counts far less for the authors


def test_authors_solve_keeps_seeds_and_reports_the_normalized_energy():
    probabilities, image, seeds = tiny_problem()
    labels, energy = solve_alpha_expansion(probabilities, image, seeds, unary_weight=0.05,
                                           potts_weight=100.0, energy="authors")
    assert labels[0, 0] == 0 and labels[3, 4] == 2
    assert set(np.unique(labels)) <= {0, 2}       # restricted to the seeded classes
    weights = E.contrast_edge_weights(image)
    exact = E.potts_energy(labels, probabilities, seeds, weights, 0.05,
                           100.0 * E.pair_normalization(seeds))
    assert energy == pytest.approx(exact)


def test_authors_energy_mostly_follows_the_contrast_not_the_network():
    # Left half dark, right half bright; seeds on each side; the network says the opposite
    # of the truth in the middle columns, with some confidence.
    image = np.zeros((8, 8))
    image[:, 4:] = 1.0
    image += np.random.default_rng(1).normal(0, 0.02, image.shape)
    seeds = np.full((8, 8), 255)
    seeds[:, 0], seeds[:, 7] = 0, 1
    probabilities = np.empty((8, 8, 2))
    probabilities[..., 0] = np.where(np.arange(8) < 4, 0.4, 0.6)[None, :]
    probabilities[..., 1] = 1 - probabilities[..., 0]
    truth = (np.arange(8) >= 4)[None, :].repeat(8, 0).astype(int)
    authors, _ = solve_alpha_expansion(probabilities, image, seeds, unary_weight=0.05,
                                       potts_weight=100.0, energy="authors")
    assert (authors == truth).all()
    # The library energy at a strong lambda (0.5 per unit of Potts) follows the network.
    library, _ = solve_alpha_expansion(probabilities, image, seeds, unary_weight=500.0,
                                       potts_weight=100.0)
    assert (library != truth).any()


def test_initial_labels_replace_the_argmax_where_allowed():
    probabilities, image, seeds = tiny_problem()
    initial = np.full((4, 5), 2)
    initial[1, 1] = 1                             # class 1 is not among the seeds' classes
    start, _ = starting_solution(probabilities, image, seeds, initial_labels=initial)
    argmax_start, _ = starting_solution(probabilities, image, seeds)
    assert start[0, 0] == 0                       # the seed wins
    assert start[1, 1] == argmax_start[1, 1]      # a disallowed class falls back to the argmax
    free = (seeds == 255)
    free[1, 1] = False
    assert (start[free] == 2).all()


def test_warm_start_from_a_labeling_with_no_iterations_returns_it():
    probabilities, image, seeds = tiny_problem()
    initial = np.where(np.arange(5)[None, :] < 3, 0, 2).repeat(4, 0)
    labels, _ = solve_alpha_expansion(probabilities, image, seeds, unary_weight=1.0,
                                      potts_weight=0.0, initial_labels=initial, max_iterations=1)
    argmax = np.array([0, 2])[np.argmax(probabilities[..., [0, 2]], -1)]
    argmax[0, 0], argmax[3, 4] = 0, 2
    np.testing.assert_array_equal(labels, argmax)  # no Potts term: the unary optimum anyway


def test_pool_passes_energy_and_initial_labels_to_its_workers():
    probabilities, image, seeds = tiny_problem()
    with SolverPool(processes=1, unary_weight=0.05, potts_weight=100.0, energy="authors") as pool:
        labels, energies = pool.solve_batch(probabilities[None], image[None], seeds[None],
                                            initial_labels=[np.zeros((4, 5), int)])
    direct, energy = solve_alpha_expansion(probabilities, image, seeds, unary_weight=0.05,
                                           potts_weight=100.0, energy="authors",
                                           initial_labels=np.zeros((4, 5), int))
    np.testing.assert_array_equal(labels[0], direct)
    assert energies[0] == pytest.approx(energy)
    with pytest.raises(ValueError, match="energy is 'exact'"):
        SolverPool(processes=0, energy="exact")


def test_round_diagnostics_against_hand_counts():
    diagnostics = RoundDiagnostics(3)
    dense = np.array([[0, 0, 1, 1, 2, 255]])
    proposals = np.array([[0, 0, 1, 2, 2, 1]])
    argmax = np.array([[0, 1, 1, 1, 0, 1]])
    diagnostics.update(proposals, argmax, dense)
    diagnostics.update(np.array([[254, 0]]), np.array([[1, 0]]), np.array([[0, 0]]))  # padding
    result = diagnostics.result()
    assert result["proposal_accuracy"] == pytest.approx(5 / 6)
    assert result["network_accuracy"] == pytest.approx(4 / 6)
    # Proposal IoU: class 0: 3/3, class 1: 1/2, class 2: 1/2.
    assert result["proposal_miou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # Network IoU: class 0: 2/4, class 1: 2/3, class 2: 0.
    assert result["network_miou"] == pytest.approx((2 / 4 + 2 / 3 + 0) / 3)
    assert result["proposal_changed_fraction"] == pytest.approx(3 / 7)
    # Every known pixel of the first image lies within 2 px of a boundary; the second has none.
    assert result["proposal_boundary_accuracy"] == pytest.approx(4 / 5)
    assert result["network_boundary_accuracy"] == pytest.approx(3 / 5)
    assert diagnostics.per_class()["proposal_iou"] == pytest.approx([1, 0.5, 0.5])


def test_round_diagnostics_boundary_band_leaves_out_interior_errors():
    dense = np.zeros((2, 12, 12), int)
    dense[:, :, 6:] = 1
    network = dense.copy()
    network[:, 5:7, 0] = 1           # 5 px from the boundary: outside the band
    diagnostics = RoundDiagnostics(2)
    diagnostics.update(dense, network, dense)
    result = diagnostics.result()
    assert result["network_accuracy"] < 1.0
    assert result["network_boundary_accuracy"] == 1.0
    network[:, 3, 4] = 1             # 1 px from it: inside
    diagnostics.update(dense, network, dense)
    assert diagnostics.result()["network_boundary_accuracy"] < 1.0
