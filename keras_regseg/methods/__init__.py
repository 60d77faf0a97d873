"""Training methods: what ``--method`` trains and the models with their own ``train_step``."""

from keras_regseg.methods.adm import ADMModel
from keras_regseg.methods.ccnn_constraints import (HARD_SLACK, ConstraintSet, Regions,
                                                   TagConstraintConfig, box_masks,
                                                   tag_constraints, tags_from_class_lists)
from keras_regseg.methods.ccnn_dual import DualSolution, solve_dual
from keras_regseg.methods.ccnn_model import CCNNModel, LatentCrossEntropy
from keras_regseg.methods.latent_solve import (CloseSolverPool, close_shared_pool, shared_pool,
                                               solve_labelings)
from keras_regseg.methods.registry import MethodSetup, prepare_method
from keras_regseg.methods.trust_region import TrustRegionModel
from keras_regseg.methods.trust_region_stage_a import ProposalStore, StageA, proposal_dataset
