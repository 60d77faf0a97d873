"""The version of keras_regseg."""

__all__ = ["__version__"]

__version__ = "0.2.0.dev0"
