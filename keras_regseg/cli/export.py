"""``keras-regseg-export``: write a versioned TF SavedModel for serving.

Example::

    keras-regseg-export --model runs/pce_acdc/model.keras --name unet_acdc
    # -> saved_models/unet_acdc/1/ ; signature serving_default:
    #    images float32 [B, H, W, C] (any H, W) -> probabilities [B, H, W, K], labels [B, H, W]
"""

import argparse
import os
import sys

from keras_regseg.cli.errors import run_reporting_errors


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-export", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("--model", required=True, help="trained network (.keras file)")
    parser.add_argument("--name", help="model name (default: the .keras file's folder name)")
    parser.add_argument("--root", default="saved_models", help="folder of exported models")
    parser.add_argument("--version", type=int, help="version number (default: next free one)")
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_regseg.export import export_saved_model
    from keras_regseg.prediction import load_keras_model

    name = args.name or os.path.basename(os.path.dirname(os.path.abspath(args.model)))
    model = load_keras_model(args.model, unsafe=args.unsafe)
    path = export_saved_model(model, os.path.join(args.root, name), version=args.version)
    print(f"exported {args.model} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
