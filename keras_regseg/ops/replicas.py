"""Sums and counts over the replicas of a ``tf.distribute`` strategy.

Losses normalize by counts of the *global* batch (:func:`replica_sum`) and
training steps divide each replica's loss by :func:`replicas`, so that the
replicas' gradients add up to the gradient of the global batch's mean, as on
one device.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["replica_sum", "replicas"]


def replica_sum(value: tf.Tensor) -> tf.Tensor:
    """``value`` summed over the replicas of the current ``tf.distribute`` strategy.

    Inside ``strategy.run`` with several replicas this is an all-reduce (every
    replica must call it; differentiable); elsewhere, ``value`` itself.

    >>> float(replica_sum(tf.constant(3.0)))
    3.0
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replicas() -> tf.Tensor:
    """Replicas in sync of the current ``tf.distribute`` strategy, as float32 (1 without one).

    >>> float(replicas())
    1.0
    """
    return tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
