"""The base of methods whose training step wraps a segmentation network.

ADM, trust region and CCNN each fit a ``keras.Model`` that holds the network,
delegates ``call`` to it (so ``predict``, saving and export see the plain
network) and serializes it inside its own config. The training and test steps,
the scaling of the loss over ``tf.distribute`` replicas, loss scaling for
mixed precision and the metrics live here once; a method only says what its
loss is (:meth:`NetworkWrapper.loss_terms`).

>>> import numpy as np, keras, tensorflow as tf
>>> class MeanLogit(NetworkWrapper):
...     tracked = ("mean_logit",)
...     def loss_terms(self, y, logits, training):
...         per_pixel = tf.reduce_mean(tf.square(logits - 1.0), axis=-1)
...         return {"loss": per_pixel, "mean_logit": tf.reduce_mean(logits)}
>>> net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1)])
>>> model = MeanLogit(net)
>>> model.compile(optimizer=keras.optimizers.SGD(0.1))
>>> history = model.fit(np.ones((2, 4, 4, 1), "float32"), np.zeros((2,)), epochs=3, verbose=0)
>>> sorted(history.history), history.history["loss"][-1] < history.history["loss"][0]
(['loss', 'mean_logit'], True)
"""

import typing

import keras
import tensorflow as tf

from keras_regseg.metrics import label_map
from keras_regseg.ops.replicas import replicas

__all__ = ["NetworkWrapper"]


class NetworkWrapper(keras.Model):
    """A ``keras.Model`` around ``network`` (a ``keras.Model`` producing logits).

    Subclasses implement :meth:`loss_terms` and may list in ``tracked`` the
    scalar terms to average over an epoch (logged like ``loss``).
    """

    tracked = ()
    """Names of scalar entries of :meth:`loss_terms` averaged over an epoch."""

    def __init__(self, network: keras.Model, **kwargs: typing.Any):
        super().__init__(**kwargs)
        if not isinstance(network, keras.Model):
            raise TypeError(f"network must be a keras.Model; got {type(network).__name__}.")
        self.network = network
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *self.tracked)}

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    @property
    def _user_metrics(self):
        """The ``compile(metrics=...)`` container (Keras's private attribute), or ``None``."""
        return getattr(self, "_compile_metrics", None)

    @property
    def metrics(self):
        compiled = self._user_metrics
        # Built by their first batch with a label map; targets without one (image
        # tags only) leave them unbuilt, and an unbuilt metric has no result.
        scored = compiled is not None and compiled.built
        return list(self.trackers.values()) + ([compiled] if scored else [])

    def compile(self, *args, **kwargs):
        """``keras.Model.compile`` with ``jit_compile=False``.

        The methods' steps call a solver (``tf.numpy_function``) or loops of
        data-dependent length, which XLA cannot compile.
        """
        if kwargs.get("jit_compile") not in (None, False, "auto"):
            raise ValueError(f"{type(self).__name__} cannot be XLA-compiled: its training step "
                             "runs a solver outside the graph; pass jit_compile=False.")
        kwargs["jit_compile"] = False
        super().compile(*args, **kwargs)

    def compile_from_config(self, config):
        """Compile as saved, so that a reloaded model trains on (optimizer state included).

        Keras leaves models with a ``compile`` of their own uncompiled on load;
        this one only adds ``jit_compile=False``, which the saved config keeps.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:   # the optimizer's variables exist before load_model restores them
            self.optimizer.build(self.trainable_variables)

    def loss_terms(self, y, logits, training):
        """The method's loss for one batch: a dict with ``"loss"`` and logged scalars.

        ``"loss"`` holds per-pixel values ``[B, h, w]`` whose mean over the
        replica's batch is its share of the objective (counts of the global batch
        inside, as the losses of :mod:`keras_regseg.losses` do); ``"logged_loss"``
        (optional) replaces the objective in the logs. Other entries are scalars,
        averaged over the epoch when named in :attr:`tracked`, else logged as they are.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss_terms.")

    def state_logs(self):
        """Values of the method's own state to log after each step (e.g. a learned parameter)."""
        return {}

    def objective(self, per_pixel, sample_weight=None):
        """The replica's share of the loss: its mean over pixels (weighted per image) / replicas."""
        per_pixel = tf.cast(per_pixel, tf.float32)
        if sample_weight is not None:
            weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1, 1])
            per_pixel = per_pixel * weights
        loss = tf.reduce_mean(per_pixel)
        if self.losses:
            loss += self.layer_losses()
        return loss / replicas()

    def layer_losses(self):
        """float32 sum of the network layers' own losses (regularization terms)."""
        return tf.add_n([tf.cast(term, tf.float32) for term in self.losses])

    def batch_loss(self, y, logits, sample_weight=None, training=True):
        """``(the replica's share of the loss, the terms to log)`` of one batch."""
        terms = self.loss_terms(y, logits, training=training)
        return self.objective(terms["loss"], sample_weight), terms

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            loss, terms = self.batch_loss(y, logits, sample_weight, training=True)
            scaled = self.optimizer.scale_loss(loss)   # mixed precision (identity otherwise)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self._update_compiled_metrics(y, logits, sample_weight)
        return self._report(loss * replicas(), terms)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        loss, terms = self.batch_loss(y, logits, sample_weight, training=False)
        self._update_compiled_metrics(y, logits, sample_weight)
        return self._report(loss * replicas(), terms)

    def _update_compiled_metrics(self, y, logits, sample_weight):
        """Feed ``compile(metrics=...)`` (e.g. :class:`keras_regseg.metrics.MeanIoU`) the
        batch's label map, whatever form the method's targets take."""
        compiled = self._user_metrics
        labels = label_map(y) if compiled is not None else None
        if labels is not None:
            compiled.update_state(labels, logits, sample_weight)

    def _report(self, loss, terms):
        self.trackers["loss"].update_state(terms.get("logged_loss", loss))
        for name in self.tracked:
            self.trackers[name].update_state(terms[name])
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs.update({name: value for name, value in terms.items()
                     if name not in logs and name not in ("loss", "logged_loss")})
        logs.update(self.state_logs())
        compiled = self._user_metrics
        if compiled is not None and compiled.built:
            logs.update(compiled.result())
        return logs

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
