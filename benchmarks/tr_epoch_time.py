"""Trust-region epoch time against pCE, averaged over M epochs (key ``tr_over_pce_epoch_time``).

ACDC-like data: synthetic shapes at 128x128, 4 classes, grayscale; the WSL4MIS
UNet, batch 8, SGD. One epoch is one pass over the N training images. The
trust region runs a stage-A round (prediction + alpha-expansion of all N
un-augmented images in the shared solver pool) every M epochs and trains
stage B on the robust loss in between.

Timed window: epochs M .. 2M-1 (``fit(epochs=2M, initial_epoch=M)``), which
hold exactly one stage-A round, started at epoch M, up to the end of ``fit``
including the wait for a background round. Each method's model is compiled
and traced once (a warm-up fit), then the methods alternate over ``repeats``
windows; medians are reported. Stage A is timed both overlapped with training
(background thread, the default) and blocking.

``--energy authors`` times stage A with the trust-region authors' energy and
their warm start from the previous round (``trust_region.energy: authors``).

    python benchmarks/tr_epoch_time.py [--quick] [--json PATH] [--energy library|authors]
"""

import statistics
import time

import common

import keras
import numpy as np

from keras_regseg.data.augment import Augmentation
from keras_regseg.data.pipeline import make_training_dataset
from keras_regseg.data.synthetic import SyntheticShapes
from keras_regseg.losses import PartialCrossEntropy
from keras_regseg.methods.latent_solve import close_shared_pool, shared_pool
from keras_regseg.methods.trust_region_model import TrustRegionModel
from keras_regseg.methods.proposal_store import ProposalStore
from keras_regseg.methods.trust_region_stage_a import StageA
from keras_regseg.models import build_model

SIDE, BATCH, CLASSES = 128, 8, 4


def network(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("unet", num_classes=CLASSES, input_channels=1)


class Runner:
    """One compiled model of a method and its training pipeline; :meth:`window` times M epochs."""

    def __init__(self, method, source, every, overlap=True, energy="library"):
        self.every, self.steps = every, len(source) // BATCH
        net = network()
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        self.callbacks, proposals = [], None
        if method == "pce":
            self.model = net
            self.model.compile(optimizer=optimizer, loss=PartialCrossEntropy(), jit_compile=False)
        else:
            store = ProposalStore()
            stage_a = StageA(source, net, store, every=every, batch_size=BATCH, overlap=overlap,
                             progress=False, pool=shared_pool(), energy=energy,
                             warm_start=energy == "authors")
            stage_a.run_round()                       # proposals exist: windows start at epoch M
            self.store, self.overlap = store, overlap
            self.model = TrustRegionModel(net)
            self.model.compile(optimizer=optimizer, jit_compile=False)
            self.callbacks, proposals = [stage_a], store.lookup
        self.dataset = make_training_dataset(source, batch_size=BATCH, seed=0,
                                             augmentation=Augmentation.medical(),
                                             proposals=proposals)
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=self.steps, verbose=0)  # tracing

    def window(self):
        """Seconds of epochs M .. 2M-1, holding exactly one stage-A round for the trust region."""
        store = getattr(self, "store", None)
        if store is not None and not self.overlap:
            # A fit that starts at epoch M takes the latest round as epoch M's (blocking: made
            # at its start); with none left, it makes that round, blocking, as a run would.
            store.restore(0, {})
        rounds = store.rounds if store is not None else 0
        start = time.perf_counter()
        self.model.fit(self.dataset, epochs=2 * self.every, initial_epoch=self.every,
                       steps_per_epoch=self.steps, callbacks=self.callbacks, verbose=0)
        seconds = time.perf_counter() - start
        if store is not None and store.rounds - rounds != 1:
            raise RuntimeError(f"the timed window held {store.rounds - rounds} stage-A rounds; "
                               "expected exactly 1.")
        return seconds


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--energy", choices=("library", "authors"), default="library",
                        help="stage-A energy (authors: with their warm start)")
    args = parser.parse_args()
    count, every, repeats = (48, 2, 2) if args.quick else (160, 5, 3)
    source = SyntheticShapes(num_samples=count, size=SIDE, channels=1, num_classes=CLASSES,
                             split="train")
    shared_pool()                                     # start the workers outside the timings
    runners = {"pce": Runner("pce", source, every),
               "tr_overlap": Runner("tr", source, every, overlap=True, energy=args.energy),
               "tr_blocking": Runner("tr", source, every, overlap=False, energy=args.energy)}
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            times[name].append(runner.window())
    close_shared_pool()
    medians = {k: statistics.median(v) for k, v in times.items()}
    epoch = {k: v / every for k, v in medians.items()}
    rows = [(k, count, every, epoch[k], epoch[k] / epoch["pce"]) for k in times]
    common.print_table(["method", "images", "M", "s/epoch", "x pCE"], rows)
    result = {
        "tr_over_pce_epoch_time": epoch["tr_overlap"] / epoch["pce"],
        "tr_blocking_over_pce_epoch_time": epoch["tr_blocking"] / epoch["pce"],
        "seconds_per_epoch": epoch, "energy": args.energy, "images": count, "every": every,
        "side": SIDE, "batch": BATCH, "repeats": repeats, "quick": bool(args.quick),
    }
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
