"""One worker's share of a source, for training spread over several machines."""

from keras_regseg.data.base import SegmentationSource

__all__ = ["ShardSource"]


class ShardSource(SegmentationSource):
    """The samples ``index, index + count, index + 2 count, ...`` of ``source``.

    Worker ``index`` of ``count`` trains on (and solves stage A for) this shard;
    the shards of all workers cover the source once.

    >>> import numpy as np
    >>> from keras_regseg.data.base import InMemorySource
    >>> source = InMemorySource(np.zeros((5, 4, 4, 1)), np.full((5, 4, 4), 255), num_classes=2)
    >>> shard = ShardSource(source, count=2, index=1)
    >>> len(shard), shard.ids()
    (2, ['1', '3'])
    >>> [s["id"].decode() for s in shard.to_tf_dataset().as_numpy_iterator()]
    ['1', '3']
    """

    def __init__(self, source, count, index):
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} is not in 0..{count - 1}.")
        if len(source) < count:
            raise ValueError(f"{type(source).__name__} has {len(source)} training samples, "
                             f"fewer than the {count} workers; each worker needs at least one.")
        self.source, self.count, self.index = source, int(count), int(index)
        self.num_classes, self.channels = source.num_classes, source.channels
        self.class_names = getattr(source, "class_names", ())
        if hasattr(source, "indexed_tf_dataset"):
            self.indexed_tf_dataset = self._indexed_tf_dataset

    def __len__(self):
        return len(range(self.index, len(self.source), self.count))

    def load(self, index):
        return self.source.load(self.index + index * self.count)

    def output_signature(self):
        return self.source.output_signature()

    def to_tf_dataset(self):
        return self.source.to_tf_dataset().shard(self.count, self.index)

    def _indexed_tf_dataset(self, indices):
        """Decode by index, for sources that can (shuffling then shuffles indices only)."""
        return self.source.indexed_tf_dataset(indices.map(lambda i: i * self.count + self.index))
