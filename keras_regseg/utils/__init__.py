"""Small helpers shared across keras_regseg."""
