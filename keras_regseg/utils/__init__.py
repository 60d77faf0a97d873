"""Small helpers shared across keras_regseg."""

__all__ = []
