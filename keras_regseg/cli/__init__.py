"""Command-line entry points (``keras-regseg-train``, ``-evaluate``, ``-export``, ``-predict``)."""

__all__ = []
