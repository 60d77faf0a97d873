"""A ``model.fit`` replacement for ``MultiWorkerMirroredStrategy``.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585, tensorflow/tensorflow#72388). :func:`fit_distributed`
runs the model's own ``train_step`` (the compiled loss, or the ``train_step``
of ADM, the trust region, CCNN) inside ``strategy.run`` within one
``tf.function``, averages the logs over all replicas of all workers, and
drives the same Keras callbacks as ``fit`` through ``keras.callbacks.CallbackList``
(train/epoch/batch begin and end), so validation, the history, checkpoints and
the resumable backup work as they do with ``fit``. Every worker must run the
same number of steps: the step and the log reduction are collective operations.

>>> import numpy as np, keras, tensorflow as tf
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
>>> x = np.ones((8, 2), "float32")
>>> dataset = tf.data.Dataset.from_tensor_slices((x, 2 * x[:, :1])).batch(4).repeat()
>>> history = fit_distributed(model, dataset, epochs=2, steps_per_epoch=2)
>>> history.epoch, history.history["loss"][1] < history.history["loss"][0]
([0, 1], True)
"""

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.methods.trust_region_stage_a import release_stage_a
from keras_regseg.training.callbacks.checkpoint import ResumableBackup

__all__ = ["any_worker", "average_moving_statistics", "check_same_everywhere", "fit_distributed",
           "make_train_step", "WorkerBackup"]


def fit_distributed(model, dataset, epochs, steps_per_epoch, callbacks=(), verbose=0,
                    strategy=None):
    """Train ``model`` like ``model.fit(dataset, epochs=..., steps_per_epoch=...)``.

    Args:
      model: a compiled ``keras.Model`` created under ``strategy.scope()``.
      dataset: this worker's ``tf.data.Dataset`` of per-replica batches (the
        global batch divided by ``strategy.num_replicas_in_sync``), repeated;
        its local replicas take consecutive batches
        (``strategy.distribute_datasets_from_function``).
      epochs, steps_per_epoch: as for ``fit``; a callback setting
        ``model._initial_epoch`` in ``on_train_begin`` (a restored backup)
        makes the loop start there, as ``fit`` does.
      callbacks: Keras callbacks; a ``History`` (and a progress bar when
        ``verbose``) is added.
      verbose: 0 silent, 1 progress bar, 2 one line per epoch.
      strategy: default: the model's (``tf.distribute.get_strategy()`` in its scope).

    Returns:
      the ``keras.callbacks.History`` of this call.
    """
    strategy = strategy or model.distribute_strategy
    with strategy.scope():
        # What fit does first (a private Keras step): create the optimizer's and the metrics'
        # variables under the strategy; they cannot be created inside the replicated step.
        symbolic_build = getattr(model, "_symbolic_build", None)
        if symbolic_build is not None:
            symbolic_build(data_batch=dataset.element_spec)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    step = make_train_step(model, strategy)
    callbacks = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    history = next(c for c in callbacks.callbacks if isinstance(c, keras.callbacks.History))
    model.stop_training = False
    try:
        _train_epochs(model, strategy, step, dataset, callbacks, epochs, steps_per_epoch)
    finally:   # on_train_end does not run when a step raises: stage A must still let go
        release_stage_a(callbacks.callbacks)
    return history


def _train_epochs(model, strategy, step, dataset, callbacks, epochs, steps_per_epoch):
    """The epochs of :func:`fit_distributed`, between ``on_train_begin`` and ``on_train_end``."""
    iterator = None
    callbacks.on_train_begin()
    initial_epoch = getattr(model, "_initial_epoch", None) or 0
    check_same_everywhere(strategy, initial_epoch, "the epoch to resume from",
                          hint="the run folder (its backup/) must be the same folder on every "
                               "host, e.g. on a shared file system")
    logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        if iterator is None:
            # As fit without a strategy: the input pipeline starts once the first epoch has
            # begun (trust-region stage A computes the proposals it reads there).
            iterator = iter(strategy.distribute_datasets_from_function(lambda _: dataset))
        for batch in range(steps_per_epoch):
            callbacks.on_train_batch_begin(batch)
            logs = {name: float(value) for name, value in step(iterator).items()}
            callbacks.on_train_batch_end(batch, logs)
            # Batch logs are the same on every worker (reduced), so callbacks that stop on
            # them (TerminateOnNaN) stop every worker at the same step.
            if model.stop_training:
                break
        average_moving_statistics(model, strategy)
        epoch_logs = dict(logs)
        callbacks.on_epoch_end(epoch, epoch_logs)
        logs = epoch_logs
        # A callback of the chief alone may stop training: every worker stops with it.
        if any_worker(strategy, model.stop_training):
            break
    callbacks.on_train_end(logs)


def make_train_step(model, strategy):
    """A ``tf.function`` ``iterator -> {name: scalar}``: one ``model.train_step`` on every
    replica, its logs averaged over all replicas."""

    @tf.autograph.experimental.do_not_convert
    def replica_step(data):
        return model.train_step(data)

    @tf.function
    def train_step(iterator):
        logs = strategy.run(replica_step, args=(next(iterator),))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in logs.items()}

    return train_step


def average_moving_statistics(model, strategy):
    """Set the model's non-trainable float weights (BatchNorm moving statistics) to their
    mean over all replicas (a collective: every worker calls it).

    Each replica updates them from its own share of the batch; averaging at the end
    of each epoch gives every worker the same network (the trainable weights are
    equal anyway) and statistics of the whole global batch stream.
    """
    variables = [v for v in model.non_trainable_weights
                 if tf.as_dtype(v.dtype).is_floating and v.trainable is False]
    if strategy.num_replicas_in_sync == 1 or not variables:
        return

    sizes = [int(np.prod(v.shape)) for v in variables]

    @tf.function
    def average():
        # One collective for all of them: the flattened weights, concatenated.
        local = strategy.run(lambda: tf.concat(
            [tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in variables], axis=0))
        means = tf.split(strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None), sizes)
        for variable, mean in zip(variables, means):
            variable.assign(tf.cast(tf.reshape(mean, variable.shape), variable.dtype))

    average()


def any_worker(strategy, flag):
    """True on every worker when ``flag`` is true on at least one (a collective: all call it)."""
    return bool(_reduce_mean(strategy, [float(bool(flag))])[0] > 0)


def check_same_everywhere(strategy, value, what, hint=""):
    """Raise ``RuntimeError`` on every worker unless all workers give the same ``value``."""
    if strategy.num_replicas_in_sync == 1:
        return
    value = float(value)
    mean, mean_square = (float(v) for v in _reduce_mean(strategy, [value, value * value]))
    if mean_square - mean * mean > 1e-6 * max(1.0, mean_square):
        raise RuntimeError(f"the workers disagree on {what}: this worker has {value:g}, the "
                           f"mean over the workers is {mean:g}; {hint}.")


def _reduce_mean(strategy, values):
    """The mean over all replicas of a small float vector given by each worker, as numpy."""
    values = tf.constant(values, tf.float32)
    if strategy.num_replicas_in_sync == 1:
        return values.numpy()

    @tf.function
    def reduce(v):
        per_replica = strategy.run(tf.identity, args=(v,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return reduce(values).numpy()


class WorkerBackup(ResumableBackup):
    """The backup callback of a worker that is not the chief: it restores the chief's
    backup (``backup_dir`` in the chief's run folder, read at the start of training)
    and writes nothing there; the chief writes it after each epoch.

    >>> WorkerBackup("/nonexistent/backup").completed_epochs()
    0
    """

    def on_epoch_end(self, epoch, logs=None):
        pass
