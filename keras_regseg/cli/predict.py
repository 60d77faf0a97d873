"""``keras-regseg-predict``: label maps (and probabilities, overlays) for image files.

Examples::

    keras-regseg-predict --model runs/pce_acdc/model.keras --input scans/ --output predictions
    keras-regseg-predict --model saved_models/unet_acdc --input "scans/**/*.png" --output out \\
        --overlays
    keras-regseg-predict --model model.keras --input a.jpg b.jpg --output out --probabilities
    keras-regseg-predict --model runs/my_mri/model.keras --config runs/my_mri/config.yaml \
        --input scans/*.nii.gz --output predictions

Outputs, one per image ``<name>.<ext>``:

    <output>/labels/<name>.png          palette PNG, pixel value = class index (VOC colours)
    <output>/probabilities/<name>.npy   float16 [H, W, K] softmax (--probabilities)
    <output>/overlays/<name>.png        the image blended with the class colours (--overlays)

Volumes (NIfTI .nii / .nii.gz, h5) give label volumes instead:
<output>/labels/<name>.nii.gz with the source's affine and header (h5: a
``label`` dataset), read, normalized and resized as the run's config says
(--config: data.normalization, data.slice_axis, data.size; --size overrides).

Images of any size; greyscale and RGB files are converted to the network's
channels. Unreadable files are skipped with a warning, and the exit status is
then 1 (0: every image predicted; 2: bad arguments or model). A .keras file
holding Python code (a Lambda layer), or a SavedModel whose graph holds ops
beyond tensor arithmetic (file, network or Python ops), is refused unless
--unsafe is given. Images larger than --max-pixels are skipped unread.
"""

import argparse
import os
import sys
import warnings

from keras_regseg.cli.errors import run_reporting_errors
from keras_regseg.cli.help_text import description_and_epilog
from keras_regseg.cli.quiet import load_tensorflow_quietly
from keras_regseg.constants import MAX_IMAGE_PIXELS

__all__ = ["build_parser", "main", "predict_volumes", "run"]


DESCRIPTION, EPILOG = description_and_epilog(__doc__)

def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-predict", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG)
    parser.add_argument("--model", required=True, help=".keras file or SavedModel folder")
    parser.add_argument("--input", required=True, nargs="+",
                        help="image files, folders (sub-folders included; the outputs mirror "
                             "the tree) or glob patterns (quote patterns)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write float16 probability maps (.npy)")
    parser.add_argument("--overlays", action="store_true",
                        help="also write the images blended with the class colours")
    parser.add_argument("--batch-size", type=int, default=8, help="images per network call")
    parser.add_argument("--config", help="volumes: the run's config.yaml (data.normalization, "
                                         "data.slice_axis, data.size)")
    parser.add_argument("--size", type=int, help="volumes: the side slices are predicted at "
                                                 "(default: the config's data.size)")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow .keras files holding Python code and SavedModels holding "
                             "ops beyond tensor arithmetic (trusted files only)")
    parser.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS,
                        help="skip images whose header declares more pixels (default "
                             f"{MAX_IMAGE_PIXELS}, 4096 x 4096)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="tracebacks instead of one-line errors")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), args.verbose)


def run(args):
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such file or folder; expected a .keras file "
                                "or a SavedModel folder.")
    load_tensorflow_quietly(args.verbose)
    from keras_regseg.volume_prediction import find_volumes

    volumes_per_input = [find_volumes([item], skip_folder=args.output) for item in args.input]
    if any(volumes_per_input):
        if not all(volumes_per_input):
            raise ValueError("--input mixes volumes (.nii, .nii.gz, .h5) and images; predict "
                             "them in separate calls.")
        return predict_volumes(args, [p for found in volumes_per_input for p in found])
    import tqdm

    from keras_regseg.prediction import SkippedImageWarning, predict_files  # loads TensorFlow

    def show_warning(message, category, *_args, **_kwargs):
        tqdm.tqdm.write(f"warning: {message}", file=sys.stderr)  # keeps the progress bar intact

    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedImageWarning)
        warnings.showwarning = show_warning
        summary = predict_files(args.model, args.input, args.output,
                                save_probabilities=args.probabilities,
                                save_overlays=args.overlays, batch_size=args.batch_size,
                                progress=not args.quiet, unsafe=args.unsafe,
                                max_pixels=args.max_pixels)
    print(summary)
    return 1 if summary.skipped else 0


def predict_volumes(args, paths):
    """Label volumes of the volume files ``paths`` with the settings of ``--config``."""
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.volume_prediction import predict_volume_files

    data = (TrainConfig.from_yaml(args.config) if args.config else TrainConfig()).data
    paths = list(dict.fromkeys(paths))
    size = args.size or (data.size if args.config else None)
    print(predict_volume_files(args.model, paths, args.output, size=size,
                               normalization=data.normalization, slice_axis=data.slice_axis,
                               progress=not args.quiet, unsafe=args.unsafe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
