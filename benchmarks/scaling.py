"""Training throughput on 1 and 2 replicas (one host) and on 1 and 2 workers (loopback cluster).

UNet (WSL4MIS architecture), pCE, one global batch for every configuration:

- ``1_replica``: ``model.fit`` on the default device;
- ``2_replicas``: ``model.fit`` under ``MirroredStrategy`` over 2 logical CPU devices;
- ``1_worker``: :func:`keras_regseg.training.custom_loop.fit_distributed` under
  ``MultiWorkerMirroredStrategy`` with a one-worker ``TF_CONFIG``;
- ``2_workers``: the same with two worker processes on 127.0.0.1, each reading
  its shard of the images (the chief's step times are reported).

Each configuration runs in fresh processes (logical devices and ``TF_CONFIG``
are fixed at TensorFlow start). A step is timed from batch begin to batch end
(forward, backward, all-reduce, update, waiting for input), the first steps
(tracing) are dropped and the median is reported. On a 2-core CPU the replicas
and workers share the same cores, so these figures measure the overhead of
distributing (``overhead_2_replicas`` = images/s on 1 replica / on 2 replicas,
``overhead_2_workers`` likewise), not a speed-up: on hosts with one GPU each,
the same ratios are the cost of the all-reduce per step.

    python benchmarks/scaling.py [--quick] [--json PATH]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import common
from step_timer import StepTimer

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.losses import PartialCrossEntropy
from keras_regseg.models import build_model
from keras_regseg.training.custom_loop import fit_distributed
from keras_regseg.training.distribute import (ShardSource, free_loopback_ports, is_chief,
                                              make_strategy, worker_count, worker_index)

CONFIGURATIONS = (("1_replica", 1, 1), ("2_replicas", 2, 1), ("1_worker", 1, 1),
                  ("2_workers", 2, 2))
"""``(name, replicas, worker processes)``."""

CLASSES = 4


def run_configuration(name, workers, sizes, timeout):
    """Seconds per step of configuration ``name`` (the chief's when several processes)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", name,
               "--side", str(sizes["side"]), "--batch", str(sizes["batch"]),
               "--steps", str(sizes["steps"]), "--skip", str(sizes["skip"])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(workers)]
    processes = []
    try:
        for index in range(workers):
            if name.endswith(("worker", "workers")):
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                               "task": {"type": "worker", "index": index}})
            processes.append(subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:   # a failed or stuck peer leaves the other waiting: stop both
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(processes, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"{name}: a process exited with {p.returncode}:\n{err[-2000:]}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    return next(r for r in reports if r["chief"])["seconds_per_step"]


def child(args):
    """One process of one configuration: train, print ``{"seconds_per_step", "chief"}``."""
    if args.child == "2_replicas":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    distribute = {"1_replica": "none", "2_replicas": "mirrored"}.get(args.child, "multiworker")
    strategy = make_strategy(distribute)   # first: a multi-worker strategy must come first
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    count = 4 * args.batch
    images = rng.random((count, args.side, args.side, 1), dtype=np.float32)
    labels = rng.integers(0, CLASSES, (count, args.side, args.side))
    weak = np.where(rng.random(labels.shape) < 0.02, labels, 255).astype(np.int32)
    source = InMemorySource(images, weak, CLASSES)
    with strategy.scope():
        model = build_model("unet", num_classes=CLASSES, input_channels=1)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=PartialCrossEntropy(), jit_compile=False)
    timer = StepTimer(args.skip)
    if distribute == "multiworker":
        if worker_count(strategy) > 1:
            source = ShardSource(source, worker_count(strategy), worker_index(strategy))
        dataset = make_training_dataset(
            source, batch_size=args.batch // strategy.num_replicas_in_sync, seed=0)
        fit_distributed(model, dataset, epochs=1, steps_per_epoch=args.steps, callbacks=[timer],
                        strategy=strategy)
    else:
        dataset = make_training_dataset(source, batch_size=args.batch, seed=0)
        model.fit(dataset, epochs=1, steps_per_epoch=args.steps, callbacks=[timer], verbose=0)
    print(json.dumps({"seconds_per_step": statistics.median(timer.times),
                      "chief": is_chief(strategy)}), flush=True)


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = (dict(side=32, batch=8, steps=8, skip=3) if args.quick
             else dict(side=128, batch=8, steps=30, skip=5))
    timeout = 240 if args.quick else 1200
    results = {}
    for name, replicas, workers in CONFIGURATIONS:
        seconds = run_configuration(name, workers, sizes, timeout)
        results[name] = {"replicas": replicas, "workers": workers, "seconds_per_step": seconds,
                         "images_per_second": sizes["batch"] / seconds}
    ips = {name: r["images_per_second"] for name, r in results.items()}
    overheads = {"overhead_2_replicas": ips["1_replica"] / ips["2_replicas"],
                 "overhead_2_workers": ips["1_worker"] / ips["2_workers"],
                 "custom_loop_over_fit": ips["1_replica"] / ips["1_worker"]}
    common.print_table(["configuration", "replicas", "workers", "s/step (median)", "images/s"],
                       [[name, r["replicas"], r["workers"], r["seconds_per_step"],
                         r["images_per_second"]] for name, r in results.items()])
    print(f"UNet {sizes['side']}x{sizes['side']}, global batch {sizes['batch']}, "
          f"{sizes['steps']} steps ({sizes['skip']} dropped); "
          + ", ".join(f"{k} = {v:.3f}" for k, v in overheads.items()))
    common.write_json(args.json, {
        "images_per_s": ips, "configurations": results, **overheads,
        "side": sizes["side"], "batch": sizes["batch"], "steps": sizes["steps"],
        "cpus": os.cpu_count(), "quick": args.quick,
    })
    return None


if __name__ == "__main__":
    main()
