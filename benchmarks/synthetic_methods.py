"""Gradient descent against solvers in the loop on the synthetic shapes, over seeds and lengths.

The same experiment as ``benchmarks/acdc.py`` on data that costs minutes instead of
hours: per scribble length (``1``: full scribbles, ``0``: one click per scribble)
and seed, a pCE network is trained from scratch (configs/pce_synthetic.yaml:
64x64, batch 8, 1200 iterations), then every other row starts from it and trains
1200 more iterations: ``pce_continued`` (the control), ``grid_gd``, ``adm``,
``trust_region`` (the library's defaults) and ``tr_authors`` (the authors'
energy, lambda and error model, as in the ACDC grid). Scored by mIoU on 200
validation images with dense masks; mean ± sd over seeds and the paired
difference to Grid-GD seed by seed.

Runs are reused (``runs/bench_synthetic_methods/ratio<r>/<row>/seed<n>``), so an
interrupted benchmark resumes where it stopped.

    python benchmarks/synthetic_methods.py [--quick] [--json PATH] [--rows a,b]
        [--ratios 1,0] [--seeds 0,1,2] [--threads N] [--no-train]
"""

import os
import statistics

import common
from acdc import method_overrides, parse_variant, split_methods
from ccnn_synthetic import budget, finished, mean_sd, pm

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                      "pce_synthetic.yaml")
ROWS = ("pce", "pce_continued", "grid_gd", "adm", "trust_region", "tr_authors")
REFERENCE = "grid_gd"
VALIDATION_IMAGES = 200


def row_config(base, name, ratio, seed, runs):
    """The ``TrainConfig`` of one run; every row but pCE starts from the pCE run's network."""
    overrides = {"output": run_folder(runs, ratio, name, seed), "training.seed": seed,
                 "data.scribble_ratio": float(ratio), "data.num_val": VALIDATION_IMAGES,
                 **method_overrides(name, ratio)}
    if parse_variant(name)[0] != "pce":
        overrides["training.init_from"] = os.path.join(run_folder(runs, ratio, "pce", seed),
                                                       "model.keras")
    return base.override(source=f"benchmarks/synthetic_methods.py ({ratio}:{name}:{seed})",
                         **overrides)


def run_folder(runs, ratio, name, seed):
    return os.path.join(runs, f"ratio{ratio}", name, f"seed{seed}")


def summarize(results, seeds):
    """``{row: summary}`` with each row's paired difference to :data:`REFERENCE`."""
    table = {}
    reference = results.get(REFERENCE, {})
    for name, by_seed in results.items():
        done = [s for s in seeds if s in by_seed]
        miou = [by_seed[s]["miou"] for s in done]
        mean, sd = mean_sd(miou)
        common_seeds = [s for s in done if s in reference]
        paired = None
        if name != REFERENCE and common_seeds:
            differences = [by_seed[s]["miou"] - reference[s]["miou"] for s in common_seeds]
            paired = dict(zip(("mean", "sd"), mean_sd(differences)), seeds=common_seeds)
        table[name] = {"mean_miou": mean, "sd_miou": sd, "seeds": done, "miou_per_seed": miou,
                       "paired_vs_grid_gd": paired,
                       "wall_s": statistics.fmean(by_seed[s]["wall_s"] for s in done)}
    return table


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--rows", help=f"comma-separated, among {', '.join(ROWS)} "
                        "(or base[key=value,...])")
    parser.add_argument("--ratios", default="1,0", help="scribble lengths (default 1,0)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--threads", type=int, help="cores for TensorFlow and the solver")
    parser.add_argument("--no-train", action="store_true",
                        help="table and JSON of the finished runs only")
    args = parser.parse_args()
    common.limit_threads(args.threads)
    rows = split_methods(args.rows) if args.rows else list(ROWS)
    unknown = [r for r in rows if parse_variant(r)[0] not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row {unknown[0]!r}; expected among {', '.join(ROWS)}")
    if "pce" not in rows:   # every other row starts from it
        rows.insert(0, "pce")
    ratios = args.ratios.split(",")
    bad = [r for r in ratios if r not in ("1", "0.3", "0")]
    if bad:
        parser.error(f"--ratios: {bad[0]!r}; expected among 1, 0.3, 0")
    seeds = [int(s) for s in args.seeds.split(",")]

    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    base = TrainConfig.from_yaml(CONFIG)
    if args.threads:
        base = base.override(**{"trust_region.processes": max(args.threads - 1, 0),
                                "adm.processes": max(args.threads - 1, 0)})
    base, seeds, runs = budget(base, seeds, args.quick, "bench_synthetic_methods")
    results = {}
    for seed in seeds:   # seed by seed: an interrupted run leaves every row comparable
        for ratio in ratios:
            for name in rows:
                config = row_config(base, name, ratio, seed, runs)
                metrics = finished(config.output)
                if metrics is None and args.no_train:
                    continue
                if metrics is None:
                    metrics = train(config, verbose=0).metrics
                results.setdefault(ratio, {}).setdefault(name, {})[seed] = metrics
                print(f"length {ratio} {name} seed {seed}: mIoU {metrics['miou']:.4f}",
                      flush=True)
    lengths = {}
    for ratio in ratios:
        table = summarize(results.get(ratio, {}), seeds)
        lengths[ratio] = table
        print(f"\nscribble length {ratio}")
        common.print_table(
            ["row", "seeds", "val mIoU", "paired vs grid_gd", "wall s"],
            [[name, len(t["seeds"]), pm(t["mean_miou"], t["sd_miou"]),
              pm(t["paired_vs_grid_gd"]["mean"], t["paired_vs_grid_gd"]["sd"], True)
              if t["paired_vs_grid_gd"] else "-", t["wall_s"]] for name, t in table.items()])
    common.write_json(args.json, {
        "budget": {"iterations": base.training.iterations, "batch": base.training.batch_size,
                   "size": base.data.size, "validation_images": VALIDATION_IMAGES},
        "rows": {name: method_overrides(name, "1") for name in rows},
        "quick": args.quick, "lengths": lengths})


if __name__ == "__main__":
    main()
