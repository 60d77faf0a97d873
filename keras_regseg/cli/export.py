"""``keras-regseg-export``: write a trained network for serving, versioned.

Examples::

    keras-regseg-export --model runs/pce_acdc/model.keras --name unet_acdc
    # -> saved_models/unet_acdc/1/ (TF SavedModel; signature serving_default:
    #    images float32 [B, H, W, C] (any H, W) -> probabilities [B, H, W, K], labels [B, H, W])
    keras-regseg-export --model runs/tr/model.keras --name tr --format onnx     # .../2/model.onnx
    keras-regseg-export --model runs/tr/model.keras --name tr --format litert   # .../3/model.tflite

Any method's saved model exports its network. ONNX and LiteRT need the export
extra: pip install 'keras_regseg[export]'.
"""

import argparse
import os
import sys

from keras_regseg.cli.errors import run_reporting_errors
from keras_regseg.cli.help_text import description_and_epilog
from keras_regseg.cli.quiet import load_tensorflow_quietly

__all__ = ["build_parser", "main", "run"]


DESCRIPTION, EPILOG = description_and_epilog(__doc__)

def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-export", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG)
    parser.add_argument("--model", required=True, help="trained network (.keras file)")
    parser.add_argument("--name", help="model name (default: the .keras file's folder name)")
    parser.add_argument("--root", default="saved_models", help="folder of exported models")
    parser.add_argument("--version", type=int, help="version number (default: next free one)")
    parser.add_argument("--format", default="saved_model", choices=("saved_model", "onnx", "litert"),
                        help="saved_model (TF Serving; default), onnx (onnxruntime) or litert "
                             "(TFLite interpreter); all take images of any size")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow a .keras file holding Python code (trusted files only)")
    parser.add_argument("--verbose", action="store_true",
                        help="tracebacks instead of one-line errors")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), args.verbose)


def run(args):
    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"{args.model}: no such file; expected a .keras model file.")
    load_tensorflow_quietly(args.verbose)
    from keras_regseg.export import FORMATS, export_file, export_saved_model
    from keras_regseg.export.saved_model import next_version
    from keras_regseg.prediction import load_keras_model

    name = args.name or os.path.basename(os.path.dirname(os.path.abspath(args.model)))
    model = load_keras_model(args.model, unsafe=args.unsafe)
    folder = os.path.join(args.root, name)
    if args.format == "saved_model":
        path = export_saved_model(model, folder, version=args.version)
    else:
        version = next_version(folder) if args.version is None else args.version
        path = os.path.join(folder, str(version), "model" + FORMATS[args.format])
        if os.path.exists(os.path.dirname(path)):
            raise FileExistsError(f"export version {os.path.dirname(path)} already exists; "
                                  "pick another --version or leave it out for the next one.")
        export_file(model, path, args.format)
    print(f"exported {args.model} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
