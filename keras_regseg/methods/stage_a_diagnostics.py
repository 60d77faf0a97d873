"""What a trust-region stage-A round adds beyond the network it started from.

Stage A (:mod:`keras_regseg.methods.trust_region_stage_a`) replaces the
network's labeling by graph-cut proposals; stage B trains on them. The
proposals help only where they are better than the network's own argmax, so
each round is scored against the dense labels (where the training images have
them: the synthetic data, ACDC) twice, proposals and argmax, over all pixels
and inside a band around the dense labels' boundaries, where a Potts
regularizer acts.

>>> import numpy as np
>>> dense = np.zeros((8, 8), int); dense[:, 4:] = 1
>>> argmax = np.zeros((8, 8), int); argmax[:, 6:] = 1   # boundary 2 px off
>>> d = RoundDiagnostics(2)
>>> d.update(dense, argmax, dense)                     # the proposal is exact
>>> r = d.result()
>>> r["proposal_accuracy"], r["network_accuracy"], r["proposal_changed_fraction"]
(1.0, 0.75, 0.25)
>>> r["network_boundary_accuracy"]                     # 4 of the band's 6 columns right
0.6666666666666666
"""

from __future__ import annotations

import numpy as np

from keras_regseg.constants import IGNORE_INDEX
from keras_regseg.evaluation.boundary import trimap_bands
from keras_regseg.evaluation.confusion import ConfusionAccumulator

__all__ = ["BOUNDARY_WIDTH", "RoundDiagnostics"]

BOUNDARY_WIDTH = 2
"""Pixels within this distance (px) of a dense-label boundary make the boundary band."""

_LABELINGS = ("proposal", "network")


class RoundDiagnostics:
    """Confusion matrices of one round's proposals and of the network's argmax.

    Accumulates, over the training images of a round, the confusion matrices of
    the proposals and of the network's argmax against the dense labels, over
    all pixels and over the band of :data:`BOUNDARY_WIDTH` px around the dense
    labels' boundaries, and counts the pixels where the proposal differs from
    the network's label.
    """

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.confusion = {name: ConfusionAccumulator(num_classes) for name in _LABELINGS}
        self.boundary = {name: ConfusionAccumulator(num_classes) for name in _LABELINGS}
        self.changed = self.inside = 0

    def update(self, proposals, argmax, dense_labels):
        """Add one ``[H, W]`` image or a batch ``[B, H, W]``: proposals (``PAD_INDEX`` off the
        image), the network's argmax, the dense labels (any value outside ``[0, K)`` unknown)."""
        proposals, argmax, dense_labels = (np.asarray(a) for a in (proposals, argmax, dense_labels))
        if proposals.ndim == 2:
            proposals, argmax, dense_labels = proposals[None], argmax[None], dense_labels[None]
        inside = proposals < self.num_classes
        self.changed += int((inside & (proposals != argmax)).sum())
        self.inside += int(inside.sum())
        known = inside & (dense_labels >= 0) & (dense_labels < self.num_classes)
        truth = np.where(known, dense_labels, IGNORE_INDEX)
        labelings = {"proposal": np.where(inside, proposals, 0), "network": argmax}
        for index, image_truth in enumerate(truth):
            band = trimap_bands(image_truth, (BOUNDARY_WIDTH,))[BOUNDARY_WIDTH]
            near = np.where(band, image_truth, IGNORE_INDEX)
            for name, labels in labelings.items():
                self.confusion[name].update(image_truth, labels[index])
                self.boundary[name].update(near, labels[index])

    def result(self) -> dict:
        """Flat dict of the round's scalars for the epoch logs: ``proposal_changed_fraction``
        and, where dense labels were seen, ``{proposal,network}_{accuracy,miou,
        boundary_accuracy}``."""
        result = {}
        if self.inside:
            result["proposal_changed_fraction"] = self.changed / self.inside
        for name in _LABELINGS:
            if self.confusion[name].matrix.sum():
                whole = self.confusion[name].result()
                result[f"{name}_accuracy"] = whole["pixel_accuracy"]
                result[f"{name}_miou"] = whole["miou"]
            if self.boundary[name].matrix.sum():
                result[f"{name}_boundary_accuracy"] = self.boundary[name].result()["pixel_accuracy"]
        return result

    def per_class(self) -> dict:
        """``{"proposal_iou", "network_iou", "proposal_boundary_iou", "network_boundary_iou"}``:
        IoU per class (``None`` for a class absent from both labelings), for an analysis of
        where the proposals are wrong."""
        result = {}
        for name in _LABELINGS:
            for prefix, accumulators in (("", self.confusion), ("boundary_", self.boundary)):
                if accumulators[name].matrix.sum():
                    result[f"{name}_{prefix}iou"] = accumulators[name].result()["iou_per_class"]
        return result
