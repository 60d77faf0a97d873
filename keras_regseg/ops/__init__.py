"""Small TensorFlow operations shared by losses, methods, inference and export."""

from keras_regseg.ops.padding import pad_to_multiple
from keras_regseg.ops.replicas import replica_sum, replicas

__all__ = ["pad_to_multiple", "replica_sum", "replicas"]
