"""Training methods: what ``--method`` trains and the models with their own ``train_step``."""

from keras_regseg.methods.ccnn_constraints import (HARD_SLACK, ConstraintSet, Regions,
                                                   TagConstraintConfig, box_masks,
                                                   tag_constraints, tags_from_class_lists)
from keras_regseg.methods.ccnn_dual import DualSolution, solve_dual
from keras_regseg.methods.ccnn_model import CCNNModel, LatentCrossEntropy
from keras_regseg.methods.registry import MethodSetup, prepare_method
