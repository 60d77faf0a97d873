"""The base of methods whose ``train_step`` wraps a segmentation network.

ADM, trust region and CCNN each fit a ``keras.Model`` that holds the network,
delegates ``call`` to it (so ``predict``, saving and export see the plain
network) and serializes it inside its own config. That plumbing lives here once.
"""

import keras


class NetworkWrapper(keras.Model):
    """A ``keras.Model`` around ``network`` (a ``keras.Model`` producing logits)."""

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(network, keras.Model):
            raise TypeError(f"network must be a keras.Model; got {type(network).__name__}.")
        self.network = network

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["network"] = keras.saving.serialize_keras_object(self.network)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"),
                                                        custom_objects=custom_objects)
        return cls(network=network, **config)
