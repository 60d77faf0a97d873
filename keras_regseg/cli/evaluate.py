"""``keras-regseg-evaluate``: score a saved network on a dataset's validation split.

Examples::

    keras-regseg-evaluate --model runs/pce_acdc/model.keras --data acdc \\
        --data-path ../shared/data/acdc/ACDC_training_volumes --fold 1 --size 128
    keras-regseg-evaluate --model saved_models/unet_acdc/1 --config configs/pce_acdc.yaml

ACDC is scored by the WSL4MIS protocol (per-volume 3D Dice and HD95 on the
test patients of the fold); 2D datasets by mIoU, pixel accuracy and trimap
boundary accuracy. ``--model`` takes a ``.keras`` file or a SavedModel folder.
"""

import argparse
import json
import os
import sys

from keras_regseg.training.config import DATASETS, ConfigError, TrainConfig


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-evaluate", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("--model", required=True, help=".keras file or SavedModel folder")
    parser.add_argument("--config", help="YAML config whose data section to use")
    parser.add_argument("--data", choices=DATASETS, help="dataset (default: synthetic)")
    parser.add_argument("--data-path", help="folder of the dataset")
    parser.add_argument("--fold", type=int, help="ACDC fold, 1..5")
    parser.add_argument("--size", type=int, help="network input side (ACDC slices are resized to it)")
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    return parser


def load_predict_fn(path):
    """``images -> probabilities`` from a ``.keras`` file or a SavedModel folder."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: model not found; expected a .keras file or a SavedModel folder.")
    if os.path.isdir(path):
        import tensorflow as tf

        serving = tf.saved_model.load(path).signatures["serving_default"]
        return lambda images: serving(tf.constant(images, tf.float32))["probabilities"].numpy()
    from keras_regseg.inference import make_predict_fn
    from keras_regseg.saving import load_model

    return make_predict_fn(load_model(path), batch_size=32)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
        config = config.override(**{"data.name": args.data, "data.path": args.data_path,
                                    "data.fold": args.fold, "data.size": args.size})
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_regseg.training.data_setup import build_training_data
    from keras_regseg.training.evaluation import evaluate_run

    metrics = evaluate_run(load_predict_fn(args.model), build_training_data(config.data))
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    if args.json:
        from keras_regseg.utils.files import write_json

        write_json(args.json, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
