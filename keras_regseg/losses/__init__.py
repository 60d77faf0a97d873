"""Losses of keras_regseg: each returns per-pixel values from logits.

- :class:`PartialCrossEntropy` (seeds only) and :class:`CrossEntropy` (dense labels);
- :class:`DiceLoss` (soft multi-class Dice) and :func:`cross_entropy_plus_dice`, WSL4MIS's
  full-supervision loss;
- CRF regularizers :class:`GridCRFLoss` (8-neighbourhood Potts, contrast-sensitive) and
  :class:`DenseCRFLoss` (Gaussian kernel through a permutohedral lattice);
- :class:`EntropyLoss`: normalized entropy on unlabeled pixels (entropy minimization);
- :class:`WeightedSumLoss` to combine them, e.g. pCE + CRF (the GD method);
- :func:`potts_energy` / :class:`PottsEnergy`: the exact Potts energy of a hard labeling.
"""

from keras_regseg.losses.composite import WeightedSumLoss
from keras_regseg.losses.contrast import grid_edge_weights, grid_edge_weights_np
from keras_regseg.losses.cross_entropy import CrossEntropy, PartialCrossEntropy
from keras_regseg.losses.dice import DiceLoss, cross_entropy_plus_dice, soft_dice_loss
from keras_regseg.losses.dense_crf import DenseCRFLoss, dense_crf_energy
from keras_regseg.losses.entropy import EntropyLoss
from keras_regseg.losses.grid_crf import GridCRFLoss, grid_crf_energy
from keras_regseg.losses.permutohedral import PermutohedralLattice, gaussian_filter_bruteforce
from keras_regseg.losses.potts import PottsEnergy, potts_energy, potts_energy_np
from keras_regseg.losses.robust_ce import (RobustCrossEntropy, pack_proposal_targets,
                                           robust_cross_entropy)
from keras_regseg.losses.targets import pack_targets, unpack_targets

__all__ = ["cross_entropy_plus_dice", "CrossEntropy", "dense_crf_energy", "DenseCRFLoss",
           "DiceLoss", "EntropyLoss", "gaussian_filter_bruteforce", "grid_crf_energy",
           "grid_edge_weights", "grid_edge_weights_np", "GridCRFLoss", "pack_proposal_targets",
           "pack_targets", "PartialCrossEntropy", "PermutohedralLattice", "potts_energy",
           "potts_energy_np", "PottsEnergy", "robust_cross_entropy", "RobustCrossEntropy",
           "soft_dice_loss", "unpack_targets", "WeightedSumLoss"]
