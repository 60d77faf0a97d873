"""``keras-regseg-evaluate``: score a saved network on a dataset's validation split.

Examples::

    keras-regseg-evaluate --model runs/pce_acdc/model.keras --data acdc \\
        --data-path ../shared/data/acdc/ACDC_training_volumes --fold 1 --size 128
    keras-regseg-evaluate --model saved_models/unet_acdc/1 --config configs/pce_acdc.yaml
    keras-regseg-evaluate --model runs/gd_voc/model.keras --images my/images --masks my/masks
    keras-regseg-evaluate --model runs/my_mri/model.keras --config runs/my_mri/config.yaml \
        --split test

Only the scored split is read (``--split``; by default the split training
validated on, but the test split of your own volumes). Volumes (ACDC, your
NIfTI / h5 data) are scored by the WSL4MIS protocol (per-volume 3D Dice and
HD95, in millimetres when the files give the voxel spacing); 2D datasets by
mIoU, pixel accuracy and trimap boundary accuracy; ``--images``/``--masks`` score a plain folder of images
against label PNGs of the same names (mIoU, pixel accuracy, per-class IoU and
Dice). ``--model`` takes a ``.keras`` file or a SavedModel folder; a model
whose channels or classes differ from the data's is refused. Per-class values
are printed and written with the rest.
"""

import argparse
import json
import os
import sys

from keras_regseg.cli.errors import run_reporting_errors
from keras_regseg.cli.help_text import description_and_epilog
from keras_regseg.cli.quiet import load_tensorflow_quietly
from keras_regseg.training.config import DATASETS, TrainConfig

__all__ = ["build_parser", "evaluate_folders", "load_checked_segmenter", "main", "run"]


DESCRIPTION, EPILOG = description_and_epilog(__doc__)

def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-evaluate", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG)
    parser.add_argument("--model", required=True, help=".keras file or SavedModel folder")
    parser.add_argument("--config", help="YAML config whose data section to use")
    parser.add_argument("--data", choices=DATASETS, help="dataset (default: synthetic)")
    parser.add_argument("--data-path", help="folder of the dataset")
    parser.add_argument("--fold", type=int, help="ACDC fold, 1..5")
    parser.add_argument("--size", type=int, help="network input side (ACDC slices are resized to it)")
    parser.add_argument("--split", help="the split to score (default: the validation split; "
                             "data.test_split for volumes)")
    parser.add_argument("--images", help="a folder of images to score instead of a dataset")
    parser.add_argument("--masks", help="with --images: the folder of their label PNGs "
                                        "(same names; pixel values = classes)")
    parser.add_argument("--void-value", type=int, default=255,
                        help="mask value without ground truth (default 255)")
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow model files holding code or ops beyond tensor arithmetic "
                             "(trusted files only)")
    parser.add_argument("--verbose", action="store_true",
                        help="tracebacks instead of one-line errors")
    return parser


def load_checked_segmenter(path, data, unsafe=False):
    """The :class:`~keras_regseg.prediction.Segmenter` of ``path``, refused (``ValueError``
    naming the file) unless it takes the data's channels and predicts its classes."""
    from keras_regseg.prediction import load_segmenter

    segmenter = load_segmenter(path, unsafe=unsafe)
    if (segmenter.channels, segmenter.num_classes) != (data.channels, data.num_classes):
        raise ValueError(
            f"{path}: the model takes {segmenter.channels}-channel images and predicts "
            f"{segmenter.num_classes} classes; the data has {data.channels} channel(s) and "
            f"{data.num_classes} classes.")
    return segmenter


def evaluate_folders(args):
    """Metrics of ``--model`` on ``--images`` scored against ``--masks``."""
    from keras_regseg.evaluation.evaluate import evaluate_images
    from keras_regseg.evaluation.folders import folder_samples
    from keras_regseg.prediction import load_segmenter
    from keras_regseg.training.evaluation import flatten, name_classes

    segmenter = load_segmenter(args.model, unsafe=args.unsafe)
    samples = folder_samples(args.images, args.masks, segmenter.channels,
                             segmenter.num_classes, args.void_value)
    result = evaluate_images(segmenter.predict, samples, num_classes=segmenter.num_classes)
    return flatten(name_classes(result, None))


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), args.verbose)


def run(args):
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    config = config.override(**{"data.name": args.data, "data.path": args.data_path,
                                "data.fold": args.fold, "data.size": args.size})
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: model not found; expected a .keras file or a "
                                "SavedModel folder.")
    if (args.images is None) != (args.masks is None):
        raise ValueError("--images and --masks go together: a folder of images and the "
                         "folder of their masks.")
    load_tensorflow_quietly(args.verbose)
    if args.images is not None:
        metrics = evaluate_folders(args)
    else:
        from keras_regseg.training.data_setup import build_evaluation_data
        from keras_regseg.training.evaluation import evaluate_run

        data = build_evaluation_data(config.data, args.split)
        segmenter = load_checked_segmenter(args.model, data, unsafe=args.unsafe)
        metrics = evaluate_run(segmenter.predict, data)
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    if args.json:
        from keras_regseg.utils.files import write_json

        write_json(args.json, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
