"""The optimizer of every method: SGD, momentum, weight decay, poly learning rate."""

import keras

__all__ = ["build_optimizer", "poly_schedule"]


def poly_schedule(learning_rate, total_steps, power=0.9):
    """``lr * (1 - step / total_steps) ** power``, as WSL4MIS and the TR paper use.

    The schedule reads the optimizer's own step counter, which checkpoints
    save, so a resumed run continues on the same curve.

    >>> schedule = poly_schedule(0.01, 100)
    >>> round(float(schedule(0)), 5), round(float(schedule(50)), 5), float(schedule(100))
    (0.01, 0.00536, 0.0)
    """
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=learning_rate, decay_steps=int(total_steps),
        end_learning_rate=0.0, power=power)


def build_optimizer(config, total_steps):
    """SGD from an :class:`~keras_regseg.training.config.OptimizerConfig`."""
    return keras.optimizers.SGD(
        learning_rate=poly_schedule(config.learning_rate, total_steps, config.poly_power),
        momentum=config.momentum,
        weight_decay=config.weight_decay or None,
    )
