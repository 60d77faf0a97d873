"""Accuracy on ACDC cardiac MRI with real scribbles (WSL4MIS protocol), one row per method.

Profiles (the budget is written into the JSON and is the same for every method):
- ``cpu``: fold 1, slices resized to 128x128, batch 8, 2000 iterations, poly lr 0.01.
- ``paper``: folds 1..5, 256x256, batch 12, 60000 iterations (a GPU job).

Regularized methods (``gd``, ``adm``, ``trust_region``) start from the pCE
network of the same fold and budget (pCE pretraining shared), then train for
the same number of iterations again. Finished runs are reused: each method's
run folder is kept under ``--runs`` and a method with a finished run is read
back, not retrained (``--fresh`` retrains).

    python benchmarks/acdc.py --profile cpu [--methods pce,full] [--quick] [--json PATH]
"""

import json
import os
import time

import common

PROFILES = {
    "cpu": dict(folds=[1], size=128, batch=8, iterations=2000, steps_per_epoch=200,
                learning_rate=0.01),
    "paper": dict(folds=[1, 2, 3, 4, 5], size=256, batch=12, iterations=60000,
                  steps_per_epoch=2000, learning_rate=0.01),
}
QUICK = dict(iterations=20, steps_per_epoch=10)
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def section_overrides(config_file, section):
    """``{"section.key": value}`` of one section of a file in ``configs/``."""
    import yaml

    with open(os.path.join(CONFIGS, config_file), encoding="utf-8") as f:
        values = yaml.safe_load(f)[section]
    return {f"{section}.{key}": value for key, value in values.items() if key != "size_bits"}


CCNN_ACDC = section_overrides("ccnn_acdc.yaml", "ccnn")
# Method name in the table -> overrides of the training config.
METHODS = {
    "pce": {"method": "pce"},
    # Control for the fine-tuned rows: pCE alone for the same second-phase budget.
    "pce_continued": {"method": "pce"},
    "full": {"method": "full"},
    "grid_gd": {"method": "gd", "gd.regularizer": "grid", "gd.weight": 1.0},
    "dense_gd": {"method": "gd", "gd.regularizer": "dense"},
    # Discrete solvers in the loop, the authors' weights (configs/adm_acdc.yaml,
    # configs/trust_region_acdc.yaml).
    "adm": {"method": "adm"},
    "trust_region": {"method": "trust_region"},
    # Trust-region sweeps, one knob each around the authors' values (lambda 0.05, epsilon 0.717
    # for K = 4, M = 5 passes). The Potts weight needs no row of its own: stage A's solution
    # depends on lambda alone (solver unary = lambda x potts), the Potts weight only scales it.
    "tr_every2": {"method": "trust_region", "trust_region.every": 2},
    "tr_lambda0.025": {"method": "trust_region", "trust_region.lambda_weight": 0.025},
    "tr_lambda0.1": {"method": "trust_region", "trust_region.lambda_weight": 0.1},
    "tr_eps0.3": {"method": "trust_region", "trust_region.epsilon": 0.3},
    "tr_eps0.74": {"method": "trust_region", "trust_region.epsilon": 0.74},
    "tr_learn_eps": {"method": "trust_region", "trust_region.learn_epsilon": True},
    # Image-level tags only, no scribble seen: trained from scratch like pce and full.
    # Bounds of configs/ccnn_acdc.yaml (the heart covers a few percent of a slice).
    "ccnn_tags": {"method": "ccnn", **CCNN_ACDC},
    "ccnn_size": {"method": "ccnn", **CCNN_ACDC, "ccnn.size_bits": True},
}
FINETUNED = {"pce_continued", "grid_gd", "dense_gd", "adm", "trust_region",
             *(name for name in METHODS if name.startswith("tr_"))}
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                            "data", "acdc", "ACDC_training_volumes")


def budget_of(args):
    budget = dict(PROFILES[args.profile])
    if args.quick:
        budget.update(QUICK)
    return budget


def method_config(name, budget, fold, data_path, runs, init_from=None):
    from keras_regseg.training.config import TrainConfig

    config = TrainConfig.from_yaml(os.path.join(CONFIGS, "pce_acdc.yaml"))
    overrides = {
        "output": os.path.join(runs, f"fold{fold}", name),
        "data.path": data_path, "data.fold": fold, "data.size": budget["size"],
        "training.iterations": budget["iterations"],
        "training.steps_per_epoch": budget["steps_per_epoch"],
        "training.batch_size": budget["batch"],
        "optimizer.learning_rate": budget["learning_rate"],
        "training.init_from": init_from,
    }
    overrides.update(METHODS[name])
    return config.override(source=f"benchmarks/acdc.py ({name})", **overrides)


def finished_metrics(output):
    path = os.path.join(output, "metrics.json")
    if not os.path.exists(os.path.join(output, "model.keras")) or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("final")


def run_method(name, budget, fold, args, data):
    from keras_regseg.training.trainer import train

    init_from = None
    if name in FINETUNED:
        pce_dir = os.path.join(args.runs, f"fold{fold}", "pce")
        run_method("pce", budget, fold, args, data)
        init_from = os.path.join(pce_dir, "model.keras")
    config = method_config(name, budget, fold, args.data_path, args.runs, init_from)
    metrics = None if args.fresh else finished_metrics(config.output)
    if metrics is None:
        print(f"== training {name} (fold {fold}) in {config.output}", flush=True)
        metrics = train(config, data=data, verbose=2).metrics
    if "potts_energy" not in metrics:   # runs finished before the energy was logged
        metrics["potts_energy"] = saved_model_energy(config.output, data)
    return metrics


def saved_model_energy(output, data):
    """Mean per-pixel Potts energy of a finished run's network on the test slices."""
    import keras

    from keras_regseg.inference import make_predict_fn
    from keras_regseg.training.evaluation import mean_potts_energy

    network = keras.saving.load_model(os.path.join(output, "model.keras"), compile=False)
    return mean_potts_energy(make_predict_fn(network, batch_size=32), data.validation)


def row_of(metrics):
    names = {"rv": "dice_per_class/RV", "myo": "dice_per_class/Myo", "lv": "dice_per_class/LV"}
    row = {"mean_dice": metrics.get("mean_dice"), "hd95": metrics.get("hd95"),
           "potts_energy": metrics.get("potts_energy"), "wall_s": metrics.get("wall_s")}
    for short, key in names.items():
        row[f"dice_{short}"] = metrics.get(key)
    return row


def mean_rows(rows):
    keys = rows[0].keys()
    return {k: (sum(r[k] for r in rows) / len(rows) if all(r[k] is not None for r in rows) else None)
            for k in keys}


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--methods", default="pce,full",
                        help=f"comma-separated, among {', '.join(METHODS)}")
    parser.add_argument("--data-path", default=DEFAULT_DATA, help="folder of the ACDC h5 volumes")
    parser.add_argument("--runs", default=None, help="run folders (default runs/bench_acdc_<profile>)")
    parser.add_argument("--fresh", action="store_true", help="retrain even if a finished run exists")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; expected among {', '.join(METHODS)}")
    budget = budget_of(args)
    args.runs = args.runs or os.path.join("runs", f"bench_acdc_{args.profile}" + ("_quick" if args.quick else ""))
    from keras_regseg.training.config import DataConfig
    from keras_regseg.training.data_setup import build_training_data

    results = {}
    for fold in budget["folds"][:1] if args.quick else budget["folds"]:
        data_config = DataConfig(name="acdc", path=args.data_path, fold=fold, size=budget["size"])
        started = time.time()
        data = build_training_data(data_config)
        print(f"loaded fold {fold} in {time.time() - started:.1f} s: {len(data.train)} training slices, "
              f"{len(data.volumes)} test volumes", flush=True)
        for name in methods:
            results.setdefault(name, []).append(row_of(run_method(name, budget, fold, args, data)))

    table = {name: mean_rows(rows) for name, rows in results.items()}
    columns = ["mean_dice", "dice_rv", "dice_myo", "dice_lv", "hd95", "potts_energy", "wall_s"]
    common.print_table(["method"] + columns,
                       [[name] + ["-" if row[c] is None else row[c] for c in columns]
                        for name, row in table.items()])
    common.write_json(args.json, {
        "profile": args.profile, "quick": args.quick,
        "budget": {"iterations": budget["iterations"], "batch": budget["batch"],
                   "size": budget["size"], "fold": budget["folds"],
                   "learning_rate": budget["learning_rate"], "schedule": "poly 0.9",
                   "finetuned_methods_start_from": "pce"},
        "methods": table,
    })


if __name__ == "__main__":
    main()
