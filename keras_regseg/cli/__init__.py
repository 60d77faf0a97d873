"""Command-line entry points (``keras-regseg-train``, ``-evaluate``, ``-export``, ``-predict``)."""
