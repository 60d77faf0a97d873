"""``--method ccnn``: CCNN (Pathak et al., ICCV 2015): linear constraints on the output.

What the constraints come from is chosen in the config, alone or combined:
image tags (suppression of absent classes, a lower bound for present ones,
background bounds), size bits, rough class sizes, boxes, and seeds (scribbles
or clicks, kept exactly, with the partial cross-entropy on them). A latent
distribution is found by dual ascent
(:func:`~keras_regseg.methods.ccnn_dual.solve_dual`) and the network is trained
by cross-entropy to it (:class:`~keras_regseg.methods.ccnn_model.CCNNModel`).
"""

import dataclasses
import typing

from keras_regseg.methods.method import Method, MethodSetup, check, check_positive

__all__ = ["CCNNConfig", "METHOD", "search", "setup"]


@dataclasses.dataclass
class CCNNConfig:
    """Constrained CNN from what is known of each image.

    Supervision (any combination; at least one): ``tags`` (image-level tags),
    ``size_bits`` (the paper's bit per class: above 10 % of the image or not),
    ``sizes`` (each class's fraction of the image, within ``size_margin``;
    measured on the dense masks where the dataset has them, the setting of
    Kervadec et al.), ``boxes`` (at least ``box_fraction`` of each box takes its
    class, one number or one per class; the boxes of the samples, or one per
    connected component of each class of the dense masks, at most
    ``max_boxes``; ``box_slack`` caps the logit bias a box bound can add, 1000
    makes it hard; ``balance_boxes`` weighs the cells inside boxes as much as
    those outside), ``seeds`` (the scribbles or clicks: kept exactly, with the
    partial cross-entropy on them).

    Tag bounds are fractions of the image, the paper's defaults (Pascal VOC):
    each tagged class covers at least ``foreground_lower``, the background
    between ``background_lower`` and ``background_upper``; with ``size_bits``
    a large class (> 10 % of the image) at least ``large_lower`` and a small
    one at most ``small_upper``. Set them from what is known of the domain.
    """

    tags: bool = True
    seeds: bool = False
    sizes: bool = False
    boxes: bool = False
    size_margin: float = 0.1
    box_fraction: typing.Union[float, typing.List[float]] = 0.75
    max_boxes: int = 8
    box_slack: float = 2.0
    balance_boxes: bool = True
    size_bits: bool = False
    downscale: int = 8
    foreground_lower: float = 0.05
    background_lower: float = 0.3
    background_upper: float = 0.7
    large_lower: float = 0.1
    small_upper: float = 0.01
    max_iterations: int = 3000
    tolerance: float = 1e-3

    def validate(self):
        check(any(self.supervision()), "tags, seeds, sizes, boxes, size_bits",
              self.supervision(), "at least one of them true")
        check_positive("downscale", self.downscale)
        check(0.0 <= self.size_margin <= 1.0, "size_margin", self.size_margin,
              "a fraction in [0, 1]")
        fractions = (self.box_fraction if isinstance(self.box_fraction, list)
                     else [self.box_fraction])
        check(all(isinstance(f, (int, float)) and 0.0 <= f <= 1.0 for f in fractions),
              "box_fraction", self.box_fraction, "a fraction in [0, 1] or a list, one per class")
        check(isinstance(self.box_slack, (int, float)) and 0.0 <= self.box_slack < float("inf"),
              "box_slack", self.box_slack, "a finite number >= 0")
        check(isinstance(self.max_boxes, int) and self.max_boxes >= 1, "max_boxes",
              self.max_boxes, "an integer >= 1")
        check(0.0 <= self.background_lower <= self.background_upper <= 1.0,
              "background_lower, background_upper",
              (self.background_lower, self.background_upper), "0 <= lower <= upper <= 1")

    def supervision(self):
        """``(tags, seeds, sizes, boxes, size_bits)`` switches."""
        return (self.tags, self.seeds, self.sizes, self.boxes, self.size_bits)

    def targets(self):
        """The :class:`~keras_regseg.data.pipeline.DictTargets` the pipeline makes."""
        from keras_regseg.data.pipeline import DictTargets

        keys = [key for key, on in zip(("tags", "seeds", "sizes", "boxes", "size_bits"),
                                       self.supervision()) if on]
        return DictTargets(tuple(keys), max_boxes=self.max_boxes)

    def constraints(self):
        """The bounds as a :class:`~keras_regseg.methods.ccnn_constraints.TagConstraintConfig`."""
        from keras_regseg.methods.ccnn_constraints import TagConstraintConfig

        return TagConstraintConfig(
            foreground_lower=self.foreground_lower, background_lower=self.background_lower,
            background_upper=self.background_upper, large_lower=self.large_lower,
            small_upper=self.small_upper)


def setup(config, network, data=None):
    from keras_regseg.methods.ccnn_model import CCNNModel

    ccnn = config.ccnn
    model = CCNNModel(network, constraints=ccnn.constraints(), downscale=ccnn.downscale,
                      max_iterations=ccnn.max_iterations, tolerance=ccnn.tolerance,
                      size_margin=ccnn.size_margin, box_fraction=ccnn.box_fraction,
                      box_slack=ccnn.box_slack, balance_boxes=ccnn.balance_boxes)
    return MethodSetup(model, ccnn.targets())


def search(hp, config, num_classes):
    """The tag bounds; the background ranges meet at the middle of the base bounds, so a
    trial never has ``background_lower > background_upper``."""
    from keras_regseg.training.search_space import log_range

    log_range(hp, "ccnn.foreground_lower", config.ccnn.foreground_lower, factor=4.0, upper=0.5)
    lower, upper = config.ccnn.background_lower, config.ccnn.background_upper
    middle = (lower + upper) / 2
    hp.Float("ccnn.background_lower", lower / 2, middle, default=float(lower))
    hp.Float("ccnn.background_upper", middle, (upper + 1.0) / 2, default=float(upper))


METHOD = Method("ccnn", "linear constraints (tags, sizes, boxes, seeds), latent distribution "
                        "by dual ascent",
                setup, config=CCNNConfig, search=search)
