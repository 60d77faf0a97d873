"""Training methods: one module per ``--method`` (see :mod:`keras_regseg.methods.method`).

The records (:mod:`keras_regseg.methods.registry`) load without TensorFlow;
the Keras models and solvers below load on first use.
"""

import importlib

_EXPORTS = {
    "ADMModel": "adm_model",
    "TrustRegionModel": "trust_region_model",
    "CCNNModel": "ccnn_model", "LatentCrossEntropy": "ccnn_model",
    "HARD_SLACK": "ccnn_constraints", "ConstraintSet": "ccnn_constraints",
    "Regions": "ccnn_constraints", "TagConstraintConfig": "ccnn_constraints",
    "box_masks": "ccnn_constraints", "tag_constraints": "ccnn_constraints",
    "tags_from_class_lists": "ccnn_constraints",
    "DualSolution": "ccnn_dual", "solve_dual": "ccnn_dual",
    "CloseSolverPool": "latent_solve", "close_shared_pool": "latent_solve",
    "shared_pool": "latent_solve", "solve_labelings": "latent_solve",
    "LossModel": "loss_model", "NetworkWrapper": "wrapper",
    "Method": "method", "MethodSetup": "method",
    "prepare_method": "registry",
    "ProposalStore": "proposal_store", "StageA": "trust_region_stage_a",
    "proposal_dataset": "trust_region_stage_a",
    "trust_region_pieces": "trust_region",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"keras_regseg.methods.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'keras_regseg.methods' has no attribute {name!r}")
