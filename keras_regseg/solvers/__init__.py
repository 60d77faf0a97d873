"""Discrete solvers: alpha-expansion on the seeded 8-grid Potts energy (ADM, trust region).

Imports numpy and gco only (no TensorFlow), so solver worker processes start fast.
"""

from keras_regseg.solvers.alpha_expansion import (
    DEFAULT_MAX_ITERATIONS,
    solve_alpha_expansion,
    starting_solution,
)
from keras_regseg.solvers.energy import (
    contrast_edge_weights,
    edge_weights_from_maps,
    grid_pairs,
    potts_energy,
    present_labels,
    start_labeling,
)
from keras_regseg.solvers.pool import SolverPool, default_processes

__all__ = ["contrast_edge_weights", "DEFAULT_MAX_ITERATIONS", "default_processes",
           "edge_weights_from_maps", "grid_pairs", "potts_energy", "present_labels",
           "solve_alpha_expansion", "SolverPool", "start_labeling", "starting_solution"]
