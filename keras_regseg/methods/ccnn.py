"""``--method ccnn``: CCNN (Pathak et al., ICCV 2015) from image tags and size bits.

Linear constraints on the output (suppression of absent classes, a lower
bound for present ones, background bounds; with ``size_bits`` a bound per
size bit), a latent distribution found by dual ascent
(:func:`~keras_regseg.methods.ccnn_dual.solve_dual`) and cross-entropy to it
(:class:`~keras_regseg.methods.ccnn_model.CCNNModel`).
"""

import dataclasses

from keras_regseg.methods.method import Method, MethodSetup, check, check_positive


@dataclasses.dataclass
class CCNNConfig:
    """Constrained CNN from image tags (and optional size bits).

    Bounds are fractions of the image, the paper's defaults (Pascal VOC):
    each tagged class covers at least ``foreground_lower``, the background
    between ``background_lower`` and ``background_upper``; with ``size_bits``
    a large class (> 10 % of the image) at least ``large_lower`` and a small
    one at most ``small_upper``. Set them from what is known of the domain.
    """

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
        check_positive("downscale", self.downscale)
        check(0.0 <= self.background_lower <= self.background_upper <= 1.0,
              "background_lower, background_upper",
              (self.background_lower, self.background_upper), "0 <= lower <= upper <= 1")

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
                      max_iterations=ccnn.max_iterations, tolerance=ccnn.tolerance)
    return MethodSetup(model, None, "tags_and_sizes" if ccnn.size_bits else "tags")


def search(hp, config, num_classes):
    """The tag bounds; the background ranges meet at the middle of the base bounds, so a
    trial never has ``background_lower > background_upper``."""
    from keras_regseg.training.search_space import log_range

    log_range(hp, "ccnn.foreground_lower", config.ccnn.foreground_lower, factor=4.0, upper=0.5)
    lower, upper = config.ccnn.background_lower, config.ccnn.background_upper
    middle = (lower + upper) / 2
    hp.Float("ccnn.background_lower", lower / 2, middle, default=float(lower))
    hp.Float("ccnn.background_upper", middle, (upper + 1.0) / 2, default=float(upper))


METHOD = Method("ccnn", "linear constraints from image tags, latent distribution by dual ascent",
                setup, config=CCNNConfig, search=search, target="tags")
