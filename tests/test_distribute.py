"""Training on several devices and hosts: mirrored = one device, two workers on loopback, errors."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.data.shard import ShardSource
from keras_regseg.training.distribute import (free_loopback_ports, is_chief,
                                              make_strategy, read_tf_config, worker_count,
                                              worker_index)

TINY = {
    "data": {"name": "synthetic", "size": 32, "num_train": 8, "num_val": 2, "augmentation": "none"},
    "model": {"name": "unet", "options": {"filters": [4, 8], "dropout": 0.0}},
    "training": {"iterations": 4, "steps_per_epoch": 2, "batch_size": 4, "num_grid_images": 1,
                 "validate_every": 2},
    "optimizer": {"learning_rate": 0.05},
    "trust_region": {"every": 1, "processes": 0, "overlap": False},
}

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from keras_regseg.data.base import InMemorySource
    from keras_regseg.data.synthetic import SyntheticShapes
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import TrainingData
    from keras_regseg.training.distribute import make_strategy
    from keras_regseg.training.trainer import train

    # Four copies of one image, each with its own number of seeds (0.5 % to 8 % of the
    # pixels), and a global batch of 4: every step trains on all four, in some order
    # (Keras's fit under a strategy first reads one batch from an iterator it throws
    # away, so the shuffled order differs from the single-device run's). The replicas'
    # halves of a batch hold different numbers of seeds, so only a loss normalized by the
    # global seed count (replica_sum in the losses) matches one device; identical images
    # keep BatchNorm's per-replica batch statistics equal to the global batch's, which no
    # loss could fix.
    shapes = SyntheticShapes(num_samples=2, size=32, num_classes=4, seed=3)
    image, dense = shapes.images[0], shapes.dense_labels[0]
    rng = np.random.default_rng(0)
    weak = np.stack([np.where(rng.random(dense.shape) < 0.005 + 0.025 * i, dense, 255)
                     for i in range(4)])
    data = TrainingData(train=InMemorySource(np.stack([image] * 4), weak, 4,
                                             dense_labels=np.stack([dense] * 4)),
                        validation=InMemorySource(shapes.images, shapes.weak_labels, 4,
                                                  dense_labels=shapes.dense_labels),
                        input_size=32)
    values = json.loads({tiny!r})

    def initial_weights(config):
        # What train() starts from: the network of the config, built after the same seeding.
        import keras
        from keras_regseg.models import build_model
        keras.utils.set_random_seed(config.training.seed)
        return build_model(config.model.name, num_classes=4, input_channels=1,
                           **config.model.options).get_weights()

    report = {{"replicas": make_strategy("mirrored").num_replicas_in_sync}}
    for method in {methods!r}:
        weights = {{}}
        for distribute in ("none", "mirrored"):
            config = TrainConfig.from_dict(dict(values, method=method, output=os.path.join(
                {tmp!r}, method + "_" + distribute), training=dict(values["training"],
                distribute=distribute)))
            result = train(config, data=data, verbose=0)
            weights[distribute] = result.network.get_weights()
        report[method] = {{
            "difference": max(float(np.abs(a - b).max())
                              for a, b in zip(weights["none"], weights["mirrored"])),
            "scale": max(float(np.abs(a).max()) for a in weights["none"]),
            "change": max(float(np.abs(a - b).max())
                          for a, b in zip(weights["none"], initial_weights(config)))}}
    print(json.dumps(report))
""")


def run_script(script, timeout, env=None):
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                  **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["pce", "trust_region"])
def test_mirrored_training_matches_one_device(tmp_path, method):
    # Logical devices must be set before TensorFlow starts: run in a fresh process.
    report = run_script(MIRRORED_SCRIPT.format(tiny=json.dumps(TINY), tmp=str(tmp_path),
                                               methods=(method,)), timeout=200)
    assert report["replicas"] == 2
    assert report[method]["difference"] < 1e-5 * max(1.0, report[method]["scale"])
    assert report[method]["change"] > 1e-3           # a few steps did train
    assert os.path.exists(tmp_path / f"{method}_mirrored" / "model.keras")


WORKER_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    import numpy as np
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    values, output, weights_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    crash_at = int(os.environ.get("CRASH_AT", "-1"))
    started = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == crash_at:
                os._exit(3)          # a killed worker: no clean-up, no message
            started.append(epoch)

    config = TrainConfig.from_dict(dict(values, output=output))
    result = train(config, verbose=0, callbacks=[Record()])
    np.savez(weights_path, *result.network.get_weights())
    print(json.dumps({"epochs": started, "wrote_metrics": bool(result.metrics)}))
""")


def run_two_workers(tmp_path, values, tag, crash_worker=None, crash_at=None, timeout=150):
    """Run the worker script as 2 processes of a loopback cluster; returns their
    ``(return codes, reports, weights)``. Both are killed if either outlives ``timeout``."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
            if index == crash_worker:
                env["CRASH_AT"] = str(crash_at)
            processes.append(subprocess.Popen(
                [sys.executable, str(script), json.dumps(values), str(tmp_path / "run"),
                 str(tmp_path / f"weights_{tag}_{index}.npz")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in processes]
    reports = [json.loads(out.strip().splitlines()[-1]) if code == 0 else err[-3000:]
               for code, (out, err) in zip(codes, outputs)]
    weights = [dict(np.load(tmp_path / f"weights_{tag}_{i}.npz")) if code == 0 else None
               for i, code in enumerate(codes)]
    return codes, reports, weights


MULTIWORKER = dict(TINY, method="pce", data=dict(TINY["data"], num_train=16),
                   training=dict(TINY["training"], iterations=6, distribute="multiworker"))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multiworker")
    return tmp_path, run_two_workers(tmp_path, MULTIWORKER, "whole")


def test_two_workers_on_loopback_train_the_same_network(two_workers):
    tmp_path, (codes, reports, weights) = two_workers
    assert codes == [0, 0], reports
    # Trainable weights are all-reduced every step, BatchNorm statistics every epoch.
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    # Only the chief (worker 0) evaluates and writes the run folder.
    assert [r["wrote_metrics"] for r in reports] == [True, False]
    with open(tmp_path / "run" / "metrics.json") as f:
        history = json.load(f)["history"]
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"][-1] < history["loss"][0]
    assert not os.path.exists(tmp_path / "run" / "backup")   # finished: the chief removed it


def test_killed_worker_then_restarted_cluster_resumes_from_the_last_epoch(tmp_path, two_workers):
    _, (_, _, uninterrupted) = two_workers
    # Worker 1 dies at the start of epoch 3 (index 2): the chief stops with an error.
    codes, _, _ = run_two_workers(tmp_path, MULTIWORKER, "killed", crash_worker=1, crash_at=2)
    assert codes[1] == 3 and codes[0] != 0
    with open(tmp_path / "run" / "backup" / "state.json") as f:
        assert json.load(f)["epoch"] == 2
    # The same command on both hosts resumes from the chief's backup ...
    codes, reports, weights = run_two_workers(tmp_path, MULTIWORKER, "resumed")
    assert codes == [0, 0], reports
    assert [r["epochs"] for r in reports] == [[2], [2]]
    # ... and ends as the uninterrupted run did.
    for name in uninterrupted[0]:
        np.testing.assert_allclose(weights[0][name], uninterrupted[0][name], atol=1e-6)
        np.testing.assert_array_equal(weights[0][name], weights[1][name])


def test_multiworker_without_or_with_a_bad_tf_config_says_what_is_expected(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable.*"
                                         '"cluster": {"worker": \\["host1:12345"'):
        make_strategy("multiworker")
    bad = {
        "{not json": "not valid JSON",
        '{"cluster": {"worker": ["a:1"]}}': "'task' must be",
        '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}':
            "non-empty list of 'host:port'",
        '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}':
            "task index 2 is not in 0..1",
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}':
            "task type 'chief' is not in the cluster",
    }
    for value, message in bad.items():
        monkeypatch.setenv("TF_CONFIG", value)
        with pytest.raises(ValueError, match="TF_CONFIG") as error:
            make_strategy("multiworker")
        assert message in str(error.value) and "Expected JSON like" in str(error.value)
    with pytest.raises(ValueError, match="training.distribute = 'gpu'; expected one of none"):
        make_strategy("gpu")


def test_chief_and_shards_follow_tf_config():
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}

    class Resolver:
        def __init__(self, task_type, task_id):
            self.task_type, self.task_id = task_type, task_id

        def cluster_spec(self):
            return tf.train.ClusterSpec(cluster)

    class Strategy:
        def __init__(self, task_type, task_id):
            self.cluster_resolver = Resolver(task_type, task_id)

    tasks = [Strategy("chief", 0), Strategy("worker", 0), Strategy("worker", 1)]
    assert [is_chief(s) for s in tasks] == [True, False, False]
    assert [worker_index(s) for s in tasks] == [0, 1, 2]
    assert worker_count(tasks[0]) == 3
    cluster.pop("chief")
    assert is_chief(Strategy("worker", 0)) and not is_chief(Strategy("worker", 1))
    assert read_tf_config({"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})})


def test_shards_cover_the_training_images_once():
    from keras_regseg.data.base import InMemorySource

    source = InMemorySource(np.zeros((7, 4, 4, 1)), np.full((7, 4, 4), 255), num_classes=2)
    shards = [ShardSource(source, 3, i) for i in range(3)]
    ids = [i for shard in shards for i in shard.ids()]
    assert sorted(ids, key=int) == source.ids() and len(ids) == 7
    assert [len(s) for s in shards] == [3, 2, 2]
    with pytest.raises(ValueError, match="fewer than the 8 workers"):
        ShardSource(source, 8, 0)
