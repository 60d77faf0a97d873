"""Part of a source: the samples of some of its groups (patients, images).

A *group* is what a person annotates as one unit: a patient's volumes for
ACDC (every slice of the patient), an image otherwise
(:meth:`~keras_regseg.data.base.SegmentationSource.groups`). "Scribbles on 10 %
of the training patients" is :func:`group_subset` with ``fraction=0.1``.

>>> import numpy as np
>>> from keras_regseg.data.base import InMemorySource
>>> source = InMemorySource(np.zeros((10, 4, 4, 1)), np.full((10, 4, 4), 255), num_classes=2)
>>> subset = group_subset(source, 0.2)
>>> len(subset), subset.ids()
(2, ['4', '9'])
"""

import math

from keras_regseg.data.base import SegmentationSource

__all__ = ["group_subset", "SubsetSource"]


class SubsetSource(SegmentationSource):
    """The samples ``indices`` of ``source``, in that order."""

    def __init__(self, source, indices):
        self.source, self.indices = source, [int(i) for i in indices]
        if not self.indices:
            raise ValueError(f"a subset of {type(source).__name__} needs at least one sample.")
        bad = [i for i in self.indices if not 0 <= i < len(source)]
        if bad:
            raise ValueError(f"subset index {bad[0]} is outside the source's 0..{len(source) - 1}.")
        self.num_classes, self.channels = source.num_classes, source.channels
        self.class_names = getattr(source, "class_names", ())
        if hasattr(source, "indexed_tf_dataset"):
            self.indexed_tf_dataset = self._indexed_tf_dataset

    def __len__(self):
        return len(self.indices)

    def load(self, index):
        return self.source.load(self.indices[index])

    def output_signature(self):
        return self.source.output_signature()

    def _indexed_tf_dataset(self, indices):
        import tensorflow as tf

        table = tf.constant(self.indices, tf.int64)
        return self.source.indexed_tf_dataset(indices.map(lambda i: tf.gather(table, i)))


def group_subset(source, fraction):
    """The samples of ``fraction`` of ``source``'s groups (at least one group).

    The groups are taken evenly spaced in sorted order, so the subset depends on
    the data alone: every seed of an experiment sees the same annotated groups.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}.")
    groups = source.groups()
    names = sorted(set(groups))
    count = max(1, round(fraction * len(names)))
    step = len(names) / count
    chosen = {names[int((i + 1) * step) - 1] for i in range(count)}
    return SubsetSource(source, [i for i, g in enumerate(groups) if g in chosen])
