"""The options of ``--tune`` (no TensorFlow: the command line checks them before it loads)."""

__all__ = ["check_options", "DEFAULT_TRIALS", "TUNERS"]

TUNERS = ("random", "bayesian")
DEFAULT_TRIALS = 10


def check_options(trials, tuner, distribute="none"):
    """Raise ``ValueError`` unless ``trials`` is a positive int, ``tuner`` a known name and
    ``distribute`` (``training.distribute``) one host's.

    >>> check_options(0, "random")
    Traceback (most recent call last):
    ...
    ValueError: trials = 0; expected a positive number of trials (the first is the default configuration).
    >>> check_options(3, "grid")
    Traceback (most recent call last):
    ...
    ValueError: tuner = 'grid'; expected one of random, bayesian.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials = {trials!r}; expected a positive number of trials "
                         "(the first is the default configuration).")
    if tuner not in TUNERS:
        raise ValueError(f"tuner = {tuner!r}; expected one of {', '.join(TUNERS)}.")
    if tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        raise ValueError("tuner = 'bayesian' needs scikit-learn (keras-tuner's Gaussian process), "
                         "which is not installed: pip install scikit-learn, or use the random "
                         "tuner.")
    if distribute == "multiworker":
        # Each worker would run its own oracle, and only the chief's train() returns metrics.
        raise ValueError("tuning runs its trials on one host: training.distribute = "
                         "'multiworker' is not supported; use 'mirrored' or 'none'.")
