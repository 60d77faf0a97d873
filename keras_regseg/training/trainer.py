"""Run one training job from a :class:`~keras_regseg.training.config.TrainConfig`.

A run owns one output folder::

    <output>/
      config.yaml            the resolved configuration
      model.keras            the final network (written atomically)
      checkpoints/last.keras the network after the last finished epoch
      backup/                BackupAndRestore state: rerun the same command to resume
      logs/                  TensorBoard (scalars, validation grid)
      metrics.json           configuration, per-epoch history, final evaluation
      training_curves.png    losses, validation metrics and learning rate per epoch
      validation_grid.png    image / scribbles / prediction / ground truth
      pretrain/              the pCE phase, when training.pretrain_iterations > 0

With ``training.distribute`` the network, the method's model and the optimizer
are built under the strategy's scope (:mod:`keras_regseg.training.distribute`);
``"multiworker"`` trains with :func:`~keras_regseg.training.custom_loop.fit_distributed`,
each worker on its shard of the training images, and only the chief writes the
run folder (the other workers read its backup to resume).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
import typing
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import yaml

from keras_regseg.data.augment import Augmentation
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.shard import ShardSource
from keras_regseg.inference import make_predict_fn
from keras_regseg.metrics import segmentation_metrics
from keras_regseg.methods import registry
from keras_regseg.methods.registry import prepare_method
from keras_regseg.models import build_model
from keras_regseg.saving import load_model
from keras_regseg.training import callbacks as cb
from keras_regseg.training.config import TrainConfig
from keras_regseg.training.data_errors import explain_data_error
from keras_regseg.training.custom_loop import WorkerBackup, check_same_everywhere, fit_distributed
from keras_regseg.training.data_setup import build_training_data
from keras_regseg.training.distribute import (is_chief, make_strategy, worker_count,
                                              worker_index)
from keras_regseg.training.evaluation import evaluate_run
from keras_regseg.training.potts_logging import PottsEnergyCallback
from keras_regseg.training.precision import with_config_precision
from keras_regseg.training.run_folder import (RunFolderLock, clear_run, finished_metrics,
                                              remove_temporaries)
from keras_regseg.utils.files import atomic_write, write_json

if typing.TYPE_CHECKING:   # names for the type hints only
    from keras_regseg.training.data_setup import TrainingData

__all__ = ["augmentation_for", "check_network_fits", "default_output", "grid_samples",
           "initial_network", "run_phase", "set_seeds", "summary_line", "train", "TrainResult",
           "with_data_shape", "worker_batch_and_data"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the output folder, the network and the final metrics."""

    output: str
    network: keras.Model
    metrics: dict


def default_output(config):
    """``runs/<method>_<data>`` (stable, so rerunning a command resumes it)."""
    return os.path.join("runs", f"{config.method}_{config.data.name}")


def set_seeds(seed, deterministic):
    """Seed Python, numpy and TensorFlow; optionally make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@with_config_precision  # training.mixed_precision: set before any network is built, then restored
def train(config: TrainConfig, data: TrainingData | None = None, verbose: int | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          overwrite: bool = False) -> TrainResult:
    """Train as ``config`` says; resume if its output folder holds an unfinished run.

    ``data`` (a :class:`TrainingData`) skips building the sources from
    ``config.data``; ``callbacks`` are added to the method's phase. A folder
    holding a finished run is left alone (its network and final metrics are
    returned) unless ``overwrite``; a folder another process is training into
    raises :class:`~keras_regseg.training.run_folder.RunFolderBusyError`.

    >>> from keras_regseg.training.config import TrainConfig
    >>> config = TrainConfig.from_dict({"training": {"iterations": 2, "steps_per_epoch": 2}})
    >>> # result = train(config)   # writes runs/pce_synthetic/
    """
    if config.training.iterations % config.training.steps_per_epoch:
        raise ValueError(
            f"training.iterations = {config.training.iterations} is not a multiple of "
            f"training.steps_per_epoch = {config.training.steps_per_epoch}; choose values whose "
            "ratio is the number of epochs.")
    output = config.output or default_output(config)
    # First TensorFlow work of the run: a multi-worker strategy sets up its collectives here.
    strategy = make_strategy(config.training.distribute)
    chief = is_chief(strategy)
    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
    verbose = verbose if chief else 0
    # Only the chief writes the run folder, so only the chief locks it.
    with RunFolderLock(output) if chief else contextlib.nullcontext():
        if chief:
            remove_temporaries(output)
            finished = finished_metrics(output)
            if finished is not None and not overwrite:
                if verbose:
                    print(f"{output} holds a finished run (model.keras); nothing to do. Pass "
                          "--overwrite to train it again.", flush=True)
                network = keras.saving.load_model(os.path.join(output, "model.keras"),
                                                  compile=False)
                return TrainResult(output=output, network=network, metrics=finished)
            if overwrite:
                clear_run(output)
        set_seeds(config.training.seed, config.training.deterministic)
        data = data or build_training_data(config.data)
        config = with_data_shape(config, data)
        network = initial_network(config, data, output, verbose, strategy)
        return run_phase(config, network, data, output, verbose, extra_callbacks=callbacks,
                         strategy=strategy)


def with_data_shape(config, data):
    """``config`` with the classes and channels of ``data`` written in (they may default to the
    dataset's own), so that the run folder records what the network was built for."""
    return config.override(**{"data.num_classes": data.num_classes,
                              "data.channels": data.channels})


def initial_network(config, data, output, verbose, strategy=None):
    """A fresh network, one loaded from ``init_from``, or the result of a pCE pretraining phase."""
    training = config.training
    strategy = strategy or tf.distribute.get_strategy()
    if training.init_from:
        with strategy.scope():
            network = load_model(training.init_from)
        check_network_fits(network, data, training.init_from)
        return network
    with strategy.scope():
        network = build_model(config.model.name, num_classes=data.num_classes,
                              input_channels=data.channels, **config.model.options)
    if training.pretrain_iterations and registry.get(config.method).finetunes:
        pretrain_dir = os.path.join(output, "pretrain")
        finished = os.path.join(pretrain_dir, "model.keras")
        check_same_everywhere(strategy, os.path.exists(finished), f"whether {finished} exists",
                              hint="the run folder must be the same folder on every host")
        if os.path.exists(finished):
            with strategy.scope():
                return keras.saving.load_model(finished, compile=False)
        steps = min(training.steps_per_epoch, training.pretrain_iterations)
        pretrain = config.override(**{
            "method": "pce", "output": pretrain_dir,
            "training.iterations": training.pretrain_iterations,
            "training.steps_per_epoch": steps, "training.pretrain_iterations": 0})
        pretrain_data = data
        if training.pretrain_subset is not None:
            from keras_regseg.data.subset import group_subset

            pretrain_data = dataclasses.replace(
                data, train=group_subset(data.train, training.pretrain_subset))
        if verbose:
            print(f"Phase 1: pCE pretraining for {training.pretrain_iterations} iterations "
                  f"in {pretrain_dir}" + ("" if pretrain_data is data else
                                          f" on {len(pretrain_data.train)} of the "
                                          f"{len(data.train)} training samples"), flush=True)
        network = run_phase(pretrain, network, pretrain_data, pretrain_dir, verbose,
                            strategy=strategy).network
        if verbose:
            print(f"Phase 2: {config.method} from the pretrained network", flush=True)
    return network


def check_network_fits(network, data, path):
    """Raise ``ValueError`` naming ``path`` unless ``network`` takes the data's channels and classes."""
    channels, classes = network.input_shape[-1], network.output_shape[-1]
    if (channels, classes) != (data.channels, data.num_classes):
        raise ValueError(
            f"{path}: the network takes {channels}-channel images and predicts {classes} "
            f"classes; the data has {data.channels} channel(s) and {data.num_classes} classes.")


def run_phase(config, network, data, output, verbose, extra_callbacks=(), strategy=None):
    """Fit one method on ``network``; write the run folder; return a :class:`TrainResult`.

    Under a multi-worker strategy only the chief writes the run folder and
    returns the final metrics; the other workers return empty ``metrics``.
    """
    started = time.time()
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    if chief:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    multiworker = config.training.distribute == "multiworker"
    batch_size, worker_data = worker_batch_and_data(config, data, strategy)
    with strategy.scope():
        setup = prepare_method(config, network, worker_data)
        from keras_regseg.training.optimizer import build_optimizer

        setup.model.compile(optimizer=build_optimizer(config.optimizer, config.training.iterations),
                            metrics=segmentation_metrics(data.num_classes), jit_compile=False)
    steps, epochs = config.training.steps_per_epoch, config.epochs
    backup_dir = os.path.join(output, "backup")
    backup = (cb.ResumableBackup(backup_dir, states=setup.callbacks) if chief
              else WorkerBackup(backup_dir))
    samples_per_step = config.training.batch_size // worker_count(strategy)
    train_dataset = make_training_dataset(
        worker_data.train, batch_size=batch_size,
        crop_size=config.data.crop_size, augmentation=augmentation_for(config.data),
        seed=config.training.seed, target=setup.targets, proposals=setup.proposals,
        pad_to_multiple=getattr(network, "size_divisor", None),
        # A resumed run continues the data stream where the interrupted one stopped.
        skip_samples=backup.completed_epochs() * steps * samples_per_step)

    if not setup.model.built:
        # BackupAndRestore needs a built model (a wrapper around the network is built lazily).
        images, _ = next(iter(train_dataset.take(1)))
        setup.model(images[:1])
    predict = make_predict_fn(network, batch_size=32)
    metrics_path = os.path.join(output, "metrics.json")
    evaluating, writing = [], []  # the chief's callbacks: the other workers write nothing
    if chief:
        history = cb.MetricsHistory(metrics_path, {"config": config.to_dict()},
                                    history=_previous_history(metrics_path, output))
        evaluating = [
            cb.ValidationCallback(lambda _: evaluate_run(predict, data, quick=True),
                                  every=config.training.validate_every),
            PottsEnergyCallback(predict, data.train, data.validation,
                                every=config.training.validate_every),
        ]
        writing = [
            history,
            cb.TrainingCurvesCallback(os.path.join(output, "training_curves.png"), history),
            cb.PredictionGridCallback(os.path.join(output, "validation_grid.png"),
                                      grid_samples(data.validation,
                                                   config.training.num_grid_images),
                                      predict, data.num_classes,
                                      every=config.training.validate_every,
                                      log_dir=os.path.join(output, "logs", "images"),
                                      extra_maps=setup.extra_maps),
            cb.AtomicModelCheckpoint(os.path.join(output, "checkpoints", "last.keras"), network),
            keras.callbacks.TensorBoard(os.path.join(output, "logs"), write_graph=False),
        ]
    callbacks = [
        *evaluating,
        # Method callbacks may add to the logs (stage-A energy): before the history and TensorBoard.
        *setup.callbacks,
        cb.StopOnNonFinite(),  # raises: no callback below saves the NaN epoch
        *writing,
        *extra_callbacks,
        # Last, so that a resumed run never skips the history, plots and checkpoint of an epoch.
        backup,
    ]
    try:
        if multiworker:  # Keras 3's fit fails under MultiWorkerMirroredStrategy (custom_loop)
            fit_distributed(setup.model, train_dataset, epochs=epochs, steps_per_epoch=steps,
                            callbacks=callbacks, verbose=verbose, strategy=strategy)
        else:
            setup.model.fit(train_dataset, epochs=epochs, steps_per_epoch=steps, shuffle=False,
                            callbacks=callbacks, verbose=verbose)
    except tf.errors.OpError as error:  # a data file tf.data could not read: name it
        explained = explain_data_error(error, [worker_data.train])
        if explained is error:
            raise
        raise explained from None
    if not chief:
        return TrainResult(output=output, network=network, metrics={})
    final = evaluate_run(predict, data, quick=False)
    final["wall_s"] = time.time() - started
    history.write(final=final)
    atomic_write(os.path.join(output, "model.keras"), network.save)
    shutil.rmtree(backup.backup_dir, ignore_errors=True)  # finished: a rerun starts afresh
    if verbose:
        print(summary_line(config, final, output), flush=True)
    return TrainResult(output=output, network=network, metrics=final)


def worker_batch_and_data(config, data, strategy):
    """``(batch size of the pipeline, TrainingData)`` of this process.

    ``model.fit`` splits the global batch over the replicas itself; the
    multi-worker loop wants per-replica batches of this worker's shard of the
    training images (the shards of all workers cover them once; stage A of the
    trust region then solves this shard only).
    """
    if config.training.distribute != "multiworker":
        return config.training.batch_size, data
    replicas, global_batch = strategy.num_replicas_in_sync, config.training.batch_size
    if global_batch % replicas:
        raise ValueError(f"training.batch_size = {global_batch} is the global batch; with "
                         f"{replicas} replicas in the cluster it must be a multiple of {replicas}.")
    workers = worker_count(strategy)
    if workers > 1:
        data = dataclasses.replace(data, train=ShardSource(data.train, workers,
                                                           worker_index(strategy)))
    return global_batch // replicas, data


def augmentation_for(data_config):
    """The augmentation preset named in the data config."""
    if data_config.augmentation == "none":
        return None
    return getattr(Augmentation, data_config.augmentation)()


def grid_samples(source, count):
    """The first ``count`` samples that have a dense label (for the prediction grid)."""
    picked = []
    for index in range(len(source)):
        sample = source.load(index)
        picked.append(sample)
        if len(picked) == count:
            break
    return picked


def _previous_history(metrics_path, output):
    """History of an interrupted run, so a resumed run keeps its earlier epochs."""
    if not (os.path.isdir(os.path.join(output, "backup")) and os.path.exists(metrics_path)):
        return None
    with open(metrics_path, encoding="utf-8") as f:
        previous = json.load(f).get("history", {})
    return previous or None


def summary_line(config, metrics, output):
    """One line naming the method, the main score and the run folder."""
    scores = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("mean_dice", "miou", "pixel_accuracy",
                                                         "potts_energy") if k in metrics)
    return f"[{config.method}] {scores}; wall {metrics['wall_s']:.0f} s; results in {output}"
