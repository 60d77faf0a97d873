"""Where the trust region's stage-A proposals beat the network: per class and near boundaries.

For a finished trust-region run folder (``config.yaml``), one stage-A round is
solved from each network given, over the run's training images and with the
run's stage-A settings. By default the networks are the one the run started
from (``training.init_from``: its first round) and the run's final
``model.keras``. The proposals and the network's argmax are scored against
the dense labels of the training images: accuracy, mIoU, IoU per class, and
accuracy and IoU per class within 2 px of a boundary of the dense labels
(:class:`keras_regseg.methods.stage_a_diagnostics.RoundDiagnostics`).

    python benchmarks/tr_proposals.py --run FOLDER [--networks a.keras,b.keras]
        [--quick] [--json PATH] [--threads N]

``--quick`` scores the first 64 training images.
"""

import os

import common


def score_round(network_path, config, train_source):
    """The :class:`RoundDiagnostics` of one stage-A round solved from ``network_path``."""
    from tqdm.auto import tqdm

    import keras_regseg
    from keras_regseg.methods.latent_solve import shared_pool
    from keras_regseg.methods.stage_a_diagnostics import RoundDiagnostics
    from keras_regseg.methods.trust_region_stage_a import proposal_dataset

    network = keras_regseg.load_model(network_path)
    network = getattr(network, "network", network)   # a method's saved model holds it
    tr, batch_size = config.trust_region, config.training.batch_size
    dataset = proposal_dataset(train_source, network, batch_size, shared_pool(tr.processes),
                               **tr.solver_settings())
    diagnostics = RoundDiagnostics(train_source.num_classes)
    with tqdm(total=len(train_source), desc=common.short_path(network_path), unit="img") as bar:
        for batch in dataset.take(-(-len(train_source) // batch_size)):
            diagnostics.update(batch["proposal"].numpy(), batch["argmax"].numpy(),
                               batch["dense_label"].numpy())
            bar.update(len(batch["id"]))
    return diagnostics


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trust-region run folder (config.yaml)")
    parser.add_argument("--networks", help="comma-separated .keras files (default: the run's "
                                           "training.init_from and its model.keras)")
    parser.add_argument("--threads", type=int, help="cores for TensorFlow")
    args = parser.parse_args()
    common.limit_threads(args.threads)
    from keras_regseg.data.subset import SubsetSource
    from keras_regseg.methods.latent_solve import close_shared_pool
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import build_training_data

    config_path = os.path.join(args.run, "config.yaml")
    if not os.path.exists(config_path):
        parser.error(f"--run {args.run}: no config.yaml there; expected a run folder")
    config = TrainConfig.from_yaml(config_path)
    if config.method != "trust_region":
        parser.error(f"--run {args.run}: method is {config.method!r}; expected trust_region")
    networks = (args.networks.split(",") if args.networks
                else [p for p in (config.training.init_from,
                                  os.path.join(args.run, "model.keras")) if p])
    missing = [p for p in networks if not os.path.exists(p)]
    if missing:
        parser.error(f"network file {missing[0]} does not exist")
    train_source = build_training_data(config.data).train
    if args.quick:
        train_source = SubsetSource(train_source, range(min(64, len(train_source))))
    names = common.class_names(train_source)
    rows, results = [], {}
    try:
        for path in networks:
            diagnostics = score_round(path, config, train_source)
            scalars, per_class = diagnostics.result(), diagnostics.per_class()
            results[path] = {**scalars, **per_class}
            for labeling in ("network", "proposal"):
                rows.append([common.short_path(path), labeling,
                             scalars[f"{labeling}_accuracy"], scalars[f"{labeling}_miou"],
                             scalars[f"{labeling}_boundary_accuracy"],
                             *per_class[f"{labeling}_iou"],
                             *per_class[f"{labeling}_boundary_iou"]])
    finally:
        close_shared_pool()
    common.print_table(["network", "labeling", "accuracy", "mIoU", "boundary acc.",
                        *(f"IoU {n}" for n in names), *(f"bnd IoU {n}" for n in names)], rows)
    common.write_json(args.json, {"run": os.path.abspath(args.run), "images": len(train_source),
                                  "classes": names, "networks": results,
                                  "quick": bool(args.quick)})


if __name__ == "__main__":
    main()
