"""The ``tf.distribute`` strategy of ``training.distribute``, and who does what in a cluster.

``"none"`` trains on the default device, ``"mirrored"`` on every GPU of this
host (or every logical CPU device when there are several and no GPU), and
``"multiworker"`` on the hosts listed in the ``TF_CONFIG`` environment
variable, one process per host, each with its local GPUs (or its CPU).

In a cluster one process, the *chief*, writes the run folder (the ``chief``
task of ``TF_CONFIG``, or ``worker`` 0 when there is no chief); the others
train alongside it and write nothing there (:func:`is_chief`). Each worker
reads its own shard of the training images (:func:`shard_source`), so each
host also solves the trust-region proposals of its own shard.

>>> strategy = make_strategy("none")
>>> strategy.num_replicas_in_sync, is_chief(strategy), worker_index(strategy)
(1, True, 0)
"""

import json
import os
import socket

import tensorflow as tf

__all__ = ["free_loopback_ports", "is_chief", "make_strategy", "mirrored_devices",
           "read_tf_config", "STRATEGIES", "TF_CONFIG_EXAMPLE", "worker_count", "worker_index"]


STRATEGIES = ("none", "mirrored", "multiworker")

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
"""What ``TF_CONFIG`` looks like on the first of two hosts (``"index": 1`` on the second)."""


def make_strategy(name="none"):
    """The ``tf.distribute.Strategy`` named by ``training.distribute``.

    - ``"none"``: the current (default) strategy, one device;
    - ``"mirrored"``: ``MirroredStrategy`` over this host's GPUs, or over all
      logical CPU devices when there is no GPU and several CPU devices (one
      replica on the CPU otherwise);
    - ``"multiworker"``: ``MultiWorkerMirroredStrategy`` over the cluster of
      ``TF_CONFIG`` (checked first by :func:`read_tf_config`). Create it
      before any other TensorFlow work in the process.

    The strategies are made once per process and reused by later calls.

    >>> make_strategy("none") is tf.distribute.get_strategy()
    True
    >>> make_strategy("horovod")
    Traceback (most recent call last):
    ...
    ValueError: training.distribute = 'horovod'; expected one of none, mirrored, multiworker.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name not in STRATEGIES:
        raise ValueError(f"training.distribute = {name!r}; expected one of "
                         f"{', '.join(STRATEGIES)}.")
    if name == "multiworker":
        read_tf_config()
    # One strategy of each kind per process: two strategies over the same devices number
    # their collective operations alike, and a run after another then mixes up their
    # all-reduces (TensorFlow reports a shape mismatch in a collective instance).
    key = (name, tuple(mirrored_devices()) if name == "mirrored" else os.environ["TF_CONFIG"])
    if key not in _STRATEGIES:
        _STRATEGIES[key] = (tf.distribute.MirroredStrategy(list(key[1])) if name == "mirrored"
                            else tf.distribute.MultiWorkerMirroredStrategy())
    return _STRATEGIES[key]


_STRATEGIES = {}


def mirrored_devices():
    """Device names for ``MirroredStrategy``: the GPUs, else all logical CPU devices.

    >>> mirrored_devices()[0].endswith("CPU:0")
    True
    """
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [device.name for device in gpus]
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def read_tf_config(environ=None):
    """The parsed ``TF_CONFIG`` as ``{"cluster": ..., "task": ...}``, or a ``ValueError`` saying what is wrong.

    >>> config = read_tf_config({"TF_CONFIG": TF_CONFIG_EXAMPLE})
    >>> config["task"], len(config["cluster"]["worker"])
    ({'type': 'worker', 'index': 0}, 2)
    >>> read_tf_config({})
    Traceback (most recent call last):
    ...
    ValueError: training.distribute = 'multiworker' needs the TF_CONFIG environment variable on every host; it is not set. Expected JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}} (the same cluster on every host, each with its own task index).
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    expected = (f"Expected JSON like {TF_CONFIG_EXAMPLE} (the same cluster on every host, "
                "each with its own task index).")
    if not raw:
        raise ValueError("training.distribute = 'multiworker' needs the TF_CONFIG environment "
                         f"variable on every host; it is not set. {expected}")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}. {expected}") from None
    problem = _tf_config_problem(config)
    if problem:
        raise ValueError(f"TF_CONFIG {raw!r}: {problem}. {expected}")
    return config


def _tf_config_problem(config):
    """What is wrong with a parsed ``TF_CONFIG`` (``None`` when nothing is)."""
    if not isinstance(config, dict):
        return f"expected a JSON object; got {type(config).__name__}"
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        return "'cluster' must map task types (chief, worker) to lists of 'host:port'"
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker", "evaluator", "ps"):
            return f"cluster task type {kind!r} is not one of chief, worker"
        if kind in ("evaluator", "ps"):
            return f"cluster task type {kind!r} is not used by MultiWorkerMirroredStrategy"
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            return f"cluster[{kind!r}] must be a non-empty list of 'host:port' strings"
    if "chief" in cluster and len(cluster["chief"]) != 1:
        return f"a cluster has one chief; got {len(cluster['chief'])}"
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        return "'task' must be {\"type\": ..., \"index\": ...} naming this host's entry"
    if task["type"] not in cluster:
        return f"task type {task['type']!r} is not in the cluster ({', '.join(cluster)})"
    index = task["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(
            cluster[task["type"]]):
        return (f"task index {index!r} is not in 0..{len(cluster[task['type']]) - 1} for "
                f"{task['type']!r}")
    return None


def _cluster_task(strategy):
    """``(cluster dict, task type, task index)`` of a multi-worker strategy, else ``None``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return None
    return cluster, resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """True for the process that writes the run folder: the ``chief`` task of ``TF_CONFIG``,
    or ``worker`` 0 when the cluster has no chief; always True without a cluster.

    >>> is_chief(tf.distribute.get_strategy())
    True
    """
    found = _cluster_task(strategy)
    if found is None:
        return True
    cluster, task_type, task_id = found
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_count(strategy):
    """Processes (hosts) training together: chief and workers of the cluster, 1 without one.

    >>> worker_count(tf.distribute.get_strategy())
    1
    """
    found = _cluster_task(strategy)
    if found is None:
        return 1
    cluster = found[0]
    return len(cluster.get("chief", ())) + len(cluster.get("worker", ()))


def worker_index(strategy):
    """This process's place among :func:`worker_count` processes (the chief first).

    The same numbering as ``tf.distribute.InputContext.input_pipeline_id``.

    >>> worker_index(tf.distribute.get_strategy())
    0
    """
    found = _cluster_task(strategy)
    if found is None:
        return 0
    cluster, task_type, task_id = found
    if task_type == "chief":
        return 0
    return task_id + len(cluster.get("chief", ()))


def free_loopback_ports(count):
    """``count`` TCP ports free on 127.0.0.1 right now, for a ``TF_CONFIG`` of local workers.

    >>> ports = free_loopback_ports(2)
    >>> len(set(ports)) == 2 and all(0 < p < 65536 for p in ports)
    True
    """
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
