"""``python train.py`` / ``keras-regseg-train``: train one method from a config.

Examples::

    python train.py                                   # pCE on the built-in synthetic data
    python train.py --method gd --config configs/gd_grid_acdc.yaml --data-path ../shared/data/acdc
    python train.py --config configs/pce_acdc.yaml --epochs 3 --output runs/try
    python train.py --method gd --tune --trials 8      # search gd's learning rate and weight
    python train.py --config configs/ccnn_acdc.yaml --set ccnn.boxes=true   # any config key

Flags override the YAML file; the YAML file overrides the built-in defaults.
Rerunning the same command resumes an interrupted run from its last epoch; a
finished run is left alone unless --overwrite is given. Data, config and model
errors print one line (exit status 2; --verbose shows the traceback).
``--tune`` trains one configuration per trial instead, the first the one given,
and writes the best to ``<output>/tuning/best_config.yaml``
(see ``keras_regseg.training.tuning``).
"""

import argparse
import os
import sys

from keras_regseg.cli.errors import run_reporting_errors
from keras_regseg.cli.help_text import description_and_epilog
from keras_regseg.cli.quiet import load_tensorflow_quietly
from keras_regseg.methods import registry
from keras_regseg.training.config import DATASETS, DISTRIBUTE, PRECISIONS, ConfigError, TrainConfig
from keras_regseg.training.tuning_options import DEFAULT_TRIALS, TUNERS, check_options

__all__ = ["build_parser", "config_from_args", "main", "run", "tuning_options"]


DESCRIPTION, EPILOG = description_and_epilog(__doc__)

def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-regseg-train", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG)
    parser.add_argument("--method", choices=registry.names(), metavar="METHOD",
                        help="training method (default: pce): " + "; ".join(
                            f"{record.name}: {record.summary}"
                            for record in registry.records().values()))
    parser.add_argument("--config", help="YAML file with any of the config keys")
    parser.add_argument("--data", choices=DATASETS, help="dataset (default: synthetic)")
    parser.add_argument("--data-path", help="folder of the dataset (ACDC h5 folder, VOC root)")
    parser.add_argument("--fold", type=int, help="ACDC cross-validation fold, 1..5")
    parser.add_argument("--epochs", type=int,
                        help="number of epochs (iterations = epochs x steps per epoch)")
    parser.add_argument("--steps-per-epoch", type=int, help="optimizer steps per epoch")
    parser.add_argument("--iterations", type=int, help="total optimizer steps (alternative to --epochs)")
    parser.add_argument("--batch-size", type=int, help="images per step")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic TensorFlow ops (bit-identical CPU runs)")
    parser.add_argument("--output", help="run folder (default: runs/<method>_<data>)")
    parser.add_argument("--distribute", choices=DISTRIBUTE,
                        help="none (default), mirrored (the devices of this host) or multiworker "
                             "(the hosts of TF_CONFIG); --batch-size is the global batch")
    parser.add_argument("--mixed-precision", nargs="?", const="float16", choices=PRECISIONS,
                        help="float16 (the default when the flag is given) or bfloat16 compute; "
                             "variables, outputs and losses stay float32")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, e.g. --set ccnn.boxes=true --set "
                             "gd.weight=0.5 (values read as YAML; repeatable; applied last)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train again into an --output that holds a finished run")
    parser.add_argument("--verbose", action="store_true",
                        help="tracebacks instead of one-line errors")
    tuning = parser.add_argument_group("hyperparameter search")
    tuning.add_argument("--tune", action="store_true",
                        help="search the method's hyperparameters (default output: "
                             "runs/<method>_<data>_tuning)")
    tuning.add_argument("--tuner", choices=TUNERS,
                        help="random (default) or bayesian search; needs --tune")
    tuning.add_argument("--trials", type=int,
                        help="number of trials, the given configuration first (default "
                             f"{DEFAULT_TRIALS}); needs --tune")
    return parser


def config_from_args(args):
    """The :class:`TrainConfig` of parsed command-line ``args``."""
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    steps = args.steps_per_epoch or config.training.steps_per_epoch
    iterations = args.iterations
    if args.epochs is not None:
        if iterations is not None:
            raise ConfigError("--epochs and --iterations both given; use one of them.")
        iterations = args.epochs * steps
    return config.override(**{
        "method": args.method, "output": args.output, "data.name": args.data,
        "data.path": args.data_path, "data.fold": args.fold,
        "training.iterations": iterations, "training.steps_per_epoch": args.steps_per_epoch,
        "training.batch_size": args.batch_size, "training.seed": args.seed,
        "training.deterministic": args.deterministic,
        "training.distribute": args.distribute,
        "training.mixed_precision": args.mixed_precision,
        "optimizer.learning_rate": args.learning_rate,
    }).with_settings(args.set)


def tuning_options(args, config):
    """``(trials, tuner)`` of parsed ``args``; ``ValueError`` for options without ``--tune``."""
    if not args.tune:
        if args.trials is not None or args.tuner is not None:
            raise ValueError("--trials and --tuner need --tune.")
        return None, None
    trials = DEFAULT_TRIALS if args.trials is None else args.trials
    tuner = args.tuner or "random"
    check_options(trials, tuner, config.training.distribute)
    return trials, tuner


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), args.verbose)


def run(args):
    config = config_from_args(args)
    trials, tuner = tuning_options(args, config)
    load_tensorflow_quietly(args.verbose)
    if args.tune:
        from keras_regseg.training.tuning import tune

        tune(config, trials=trials, tuner=tuner)
        return 0
    from keras_regseg.training.callbacks import NonFiniteLossError
    from keras_regseg.training.trainer import train  # TensorFlow loads only after the flags are valid

    try:
        train(config, overwrite=args.overwrite)
    except NonFiniteLossError as error:   # the message names the step and what was kept
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
