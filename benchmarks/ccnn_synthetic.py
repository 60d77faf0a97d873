"""CCNN on the built-in synthetic shapes: which weak supervision to use, over seeds.

Every row trains the same UNet from scratch for the same budget
(configs/ccnn_synthetic.yaml: 64x64, batch 8, 1200 iterations), once per seed,
and reports the validation mIoU (mean ± sd over seeds) and its paired
difference, seed by seed, to the pCE row of the same scribble length:

- ``full`` (dense masks) and ``pce`` (scribbles) / ``pce_clicks`` (one click per
  scribble) bracket the rest;
- ``ccnn_tags``, ``ccnn_size`` (tags + size bits): image-level facts only;
- ``ccnn_box``: tags + one box per connected component of each class;
- ``scribbles_size`` / ``clicks_size``: the seeds kept exactly, plus each class's
  size within 10 % (Kervadec et al.'s setting), at full length and as clicks;
- ``scribbles_tags``: the seeds plus tags;
- ``ccnn_tags_from_subset`` / ``ccnn_size_from_subset``: pCE on the scribbles of
  10 % of the images, then tags (and size bits) on all of them (few scribbles,
  many tags).

A row may carry config overrides, ``ccnn_box[box_slack=1000,balance_boxes=true]``
(keys without a section are the method's). Finished runs are reused
(``runs/bench_ccnn_synthetic/<row>/seed<n>``), and each one's final metrics are kept in a
record (``benchmarks/results/ccnn_synthetic_cells/<row>/seed<n>.json``, committed), so a
table spans sessions and checkouts without retraining.

    python benchmarks/ccnn_synthetic.py [--quick] [--json PATH] [--rows a,b] [--seeds 0,1,2]
        [--threads N] [--no-train]
"""

import json
import os
import statistics

import common
from acdc import parse_variant, split_methods

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                      "ccnn_synthetic.yaml")
CLICKS = {"data.scribble_ratio": 0.0}
ROWS = {
    "pce": {"method": "pce"},
    "scribbles_size": {"method": "ccnn", "ccnn.seeds": True, "ccnn.tags": False,
                       "ccnn.sizes": True},
    "pce_clicks": {"method": "pce", **CLICKS},
    "clicks_size": {"method": "ccnn", "ccnn.seeds": True, "ccnn.tags": False,
                    "ccnn.sizes": True, **CLICKS},
    "ccnn_box": {"method": "ccnn", "ccnn.boxes": True},
    "full": {"method": "full"},
    "ccnn_tags": {"method": "ccnn"},
    "ccnn_size": {"method": "ccnn", "ccnn.size_bits": True},
    "scribbles_tags": {"method": "ccnn", "ccnn.seeds": True},
    # pCE on the scribbles of 10 % of the images (a pCE run's budget), then tags on all.
    "ccnn_tags_from_subset": {"method": "ccnn", "training.pretrain_iterations": 1200,
                              "training.pretrain_subset": 0.1},
    "ccnn_size_from_subset": {"method": "ccnn", "ccnn.size_bits": True,
                              "training.pretrain_iterations": 1200,
                              "training.pretrain_subset": 0.1},
}
REFERENCE = {"pce_clicks": None, "clicks_size": "pce_clicks"}
"""Each row's paired reference (default ``pce``; ``None``: none)."""


def row_overrides(name):
    """The config overrides of a row or of a variant ``row[key=value,...]``."""
    base, extra = parse_variant(name)
    method = ROWS[base]["method"]
    return {**ROWS[base], **{key.replace(f"{base}.", f"{method}.", 1): value
                             for key, value in extra.items()}}


RECORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "ccnn_synthetic_cells")
RECORDED = ("miou", "pixel_accuracy", "wall_s")


def finished(folder):
    path = os.path.join(folder, "metrics.json")
    if not (os.path.exists(path) and os.path.exists(os.path.join(folder, "model.keras"))):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("final")


def record_path(name, seed):
    return os.path.join(RECORDS, name, f"seed{seed}.json")


def read_record(name, seed):
    """A finished run's recorded final metrics, or ``None``."""
    path = record_path(name, seed)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)["final"]


def write_record(name, seed, metrics):
    path = record_path(name, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"row": name, "seed": seed, "overrides": row_overrides(name),
                   "final": {key: metrics.get(key) for key in RECORDED}}, f, indent=1)
        f.write("\n")


def mean_sd(values):
    values = [v for v in values if v is not None]
    return (statistics.fmean(values) if values else None,
            statistics.stdev(values) if len(values) > 1 else None)


def pm(mean, sd, signed=False):
    if mean is None:
        return "-"
    return (f"{mean:+.3f}" if signed else f"{mean:.3f}") + ("" if sd is None else f" ± {sd:.3f}")


def budget(base, seeds, quick, runs_name):
    """``(config, seeds, runs folder)``: ``--quick`` trains 40 iterations for the first seed."""
    if quick:
        base = base.override(**{"training.iterations": 40, "training.steps_per_epoch": 20})
        seeds = seeds[:1]
    return base, seeds, os.path.join("runs", runs_name + ("_quick" if quick else ""))


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--rows", help=f"comma-separated, among {', '.join(ROWS)} "
                                       "(or row[key=value,...])")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--threads", type=int, help="cores for TensorFlow")
    parser.add_argument("--no-train", action="store_true",
                        help="table and JSON of the finished runs only")
    args = parser.parse_args()
    common.limit_threads(args.threads)
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    rows = split_methods(args.rows) if args.rows else list(ROWS)
    unknown = [r for r in rows if parse_variant(r)[0] not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row {unknown[0]!r}; expected among {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    base, seeds, runs = budget(TrainConfig.from_yaml(CONFIG), seeds, args.quick,
                               "bench_ccnn_synthetic")
    results = {}
    for seed in seeds:   # seed by seed: an interrupted run leaves every row comparable
        for name in rows:
            folder = os.path.join(runs, name, f"seed{seed}")
            metrics = finished(folder)
            if metrics is None and not args.quick:
                metrics = read_record(name, seed)
            if metrics is None and args.no_train:
                continue
            if metrics is None:
                config = base.override(**{"output": folder, "training.seed": seed,
                                          **row_overrides(name)})
                metrics = train(config, verbose=0).metrics
            if not args.quick:
                write_record(name, seed, metrics)
            results.setdefault(name, {})[seed] = metrics
            print(f"{name} seed {seed}: mIoU {metrics['miou']:.4f}", flush=True)
    table, printed = {}, []
    for name, by_seed in results.items():
        miou = [by_seed[s]["miou"] for s in seeds if s in by_seed]
        done = [s for s in seeds if s in by_seed]
        mean, sd = mean_sd(miou)
        reference = REFERENCE.get(parse_variant(name)[0], "pce")
        paired = None
        if reference and reference != name and reference in results:
            common_seeds = [s for s in done if s in results[reference]]
            differences = [by_seed[s]["miou"] - results[reference][s]["miou"]
                           for s in common_seeds]
            paired = dict(zip(("mean", "sd"), mean_sd(differences)), reference=reference,
                          seeds=common_seeds)
        table[name] = {"mean_miou": mean, "sd_miou": sd, "seeds": done, "miou_per_seed": miou,
                       "paired": paired,
                       "pixel_accuracy": mean_sd([by_seed[s]["pixel_accuracy"] for s in done])[0],
                       "wall_s": mean_sd([by_seed[s]["wall_s"] for s in done])[0]}
        printed.append([name, len(done), pm(mean, sd),
                        f"{pm(paired['mean'], paired['sd'], True)} vs {reference}"
                        if paired else "-", table[name]["wall_s"]])
    common.print_table(["row", "seeds", "val mIoU", "paired difference", "wall s"], printed)
    common.write_json(args.json, {
        "budget": {"iterations": base.training.iterations, "batch": base.training.batch_size,
                   "size": base.data.size},
        "ccnn": base.to_dict()["ccnn"], "rows": {n: row_overrides(n) for n in rows},
        "quick": args.quick, "methods": table})


if __name__ == "__main__":
    main()
