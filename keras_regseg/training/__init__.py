"""Training: the run folder, configs, callbacks, the trainer, tuning and distribution."""

__all__ = []
