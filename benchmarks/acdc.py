"""Accuracy on ACDC cardiac MRI with real scribbles: methods x scribble lengths x seeds.

Every *cell* of the experiment is one training run: a scribble length (the
real scribbles shortened by ``shorten_scribbles`` to a ratio of their length:
1, 0.3, or 0 = one click per scribble), a method and a seed (network
initialization and data order). Fine-tuned methods (GD, ADM, trust region,
the pCE control) start from the pCE network of the same length and seed, so
the table reads each method's *paired* difference to Grid-GD over seeds, not
only two means.

Profiles (the budget is written into the JSON and is the same for every cell):
- ``cpu``: fold 1, slices resized to 128x128, batch 8, 2000 iterations, poly lr 0.01
  (fine-tuned methods: 2000 more from the pCE network).
- ``paper``: 256x256, batch 12, 60000 iterations (a GPU job); ``--fold`` picks one of 1..5.

The grid is many CPU-hours: finished cells are reused (their run folders under
``--runs``, and their records: every finished cell's final metrics are copied to
``--records``, by default ``benchmarks/results/acdc_cells/<profile>/fold<f>[_holdout<n>]``,
committed, so a result outlives the machine that trained it; only a fine-tuned cell
whose pCE network is gone retrains that pCE cell), an interrupted cell resumes from its last epoch, ``--status``
lists what is done and missing, ``--ratios``/``--methods``/``--seeds`` limit
a run to some cells, and ``--jobs N`` trains N cells at once, each on its
share of the cores (on 2 cores two one-thread runs train 1.55x the images
per second of one two-thread run). Each cell is a plain ``train.py`` run of
the ``config.yaml`` written in its folder.

    python benchmarks/acdc.py --status
    python benchmarks/acdc.py --jobs 2 --json benchmarks/results/acdc_cpu.json
    python benchmarks/acdc.py --ratios 0 --methods pce,grid_gd --seeds 0,1
    python benchmarks/acdc.py --no-train --json benchmarks/results/acdc_cpu.json   # table only
"""

import json
import os
import statistics
import subprocess
import sys
import time

import common

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CONFIGS = os.path.join(ROOT, "configs")
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "acdc", "ACDC_training_volumes")

PROFILES = {
    "cpu": dict(fold=1, size=128, batch=8, iterations=2000, steps_per_epoch=200,
                learning_rate=0.01, validate_every=5),
    "paper": dict(fold=1, size=256, batch=12, iterations=60000,
                  steps_per_epoch=2000, learning_rate=0.01, validate_every=5),
}
QUICK = dict(iterations=10, steps_per_epoch=5, validate_every=1)
RATIOS = ("1", "0.3", "0")


def section_overrides(config_file, section, skip=()):
    """``{"section.key": value}`` of one section of a file in ``configs/``."""
    import yaml

    with open(os.path.join(CONFIGS, config_file), encoding="utf-8") as f:
        values = yaml.safe_load(f)[section]
    return {f"{section}.{key}": value for key, value in values.items() if key not in skip}


CCNN_ACDC = section_overrides("ccnn_acdc.yaml", "ccnn", skip=("size_bits",))
METHODS = {
    "pce": {"method": "pce"},
    # Control for the fine-tuned rows: pCE alone for the same second-phase budget.
    "pce_continued": {"method": "pce"},
    # The upper bound: WSL4MIS's 0.5 * (CE + Dice) on dense masks (and CE alone, its old row).
    "full": {"method": "full"},
    "full_ce": {"method": "full", "full.loss": "ce"},
    "entropy": {"method": "entropy"},
    "grid_gd": {"method": "gd", "gd.regularizer": "grid", "gd.weight": 1.0},
    "dense_gd": {"method": "gd", "gd.regularizer": "dense"},
    # Discrete solvers in the loop (configs/adm_acdc.yaml, configs/trust_region_acdc.yaml).
    "adm": {"method": "adm"},
    "trust_region": {"method": "trust_region"},
    "tr_authors": {"method": "trust_region", "trust_region.energy": "authors",
                   "trust_region.warm_start": True, "trust_region.normalization": "seeds"},
    # Image-level tags only, from scratch (bounds of configs/ccnn_acdc.yaml).
    "ccnn_tags": {"method": "ccnn", **CCNN_ACDC},
    "ccnn_size": {"method": "ccnn", **CCNN_ACDC, "ccnn.size_bits": True},
    # Boxes (one per connected component of each structure, from the masks) and tags.
    "ccnn_box": {"method": "ccnn", **CCNN_ACDC, "ccnn.boxes": True},
    # Seeds kept exactly + each structure's size within 10 % (Kervadec et al.'s setting),
    # from the pCE network: with full scribbles, and with one click per scribble (ratio 0).
    "scribbles_size": {"method": "ccnn", **CCNN_ACDC, "ccnn.seeds": True, "ccnn.tags": False,
                       "ccnn.sizes": True},
    "clicks_size": {"method": "ccnn", **CCNN_ACDC, "ccnn.seeds": True, "ccnn.tags": False,
                    "ccnn.sizes": True},
    # Few scribbles, many tags: pCE on the scribbles of 10 % of the training patients (the
    # same budget as a pCE cell), then CCNN from the tags of all of them.
    "ccnn_tags_from_subset": {"method": "ccnn", **CCNN_ACDC, "training.pretrain_subset": 0.1},
    "ccnn_size_from_subset": {"method": "ccnn", **CCNN_ACDC, "ccnn.size_bits": True,
                              "training.pretrain_subset": 0.1},
}
FINETUNED = {"pce_continued", "entropy", "grid_gd", "dense_gd", "adm", "trust_region", "tr_authors",
             "scribbles_size", "clicks_size"}
BY_LENGTH = {
    # The trust region as its authors ran it (alpha_expansion.cpp's energy, warm starts):
    # tr_weight 0.05 and error probability 0.944 (K = 21) for full scribbles, 0.1 and 0.9516
    # for shortened ones, the error model carried over to K = 4 classes (default_epsilon).
    "tr_authors": {"1": {"trust_region.lambda_weight": 0.05, "voc_epsilon": 0.944},
                   "short": {"trust_region.lambda_weight": 0.1, "voc_epsilon": 0.9516}},
}
"""Overrides that depend on the scribble length ("1", or "short" for 0.3 and 0)."""
DENSE = {"full", "full_ce"}
"""Methods trained on dense masks: the scribble length does not apply, they appear under "1"."""
SOLVER_METHODS = {"adm": "adm.processes", "trust_region": "trust_region.processes",
                  "tr_authors": "trust_region.processes"}

PLAN = {
    "1": {"pce": 3, "full": 3, "grid_gd": 3, "trust_region": 3,
          "pce_continued": 2, "entropy": 2, "dense_gd": 2, "adm": 2, "tr_authors": 2,
          "scribbles_size": 2, "ccnn_box": 2, "ccnn_tags": 2, "ccnn_size": 2,
          "ccnn_tags_from_subset": 2, "ccnn_size_from_subset": 2,
          # Why full supervision trails the reference: its augmentation, and CE alone.
          "full[data.augmentation=wsl4mis]": 3, "full_ce": 1,
          "full_ce[data.augmentation=wsl4mis]": 1},
    "0.3": {"pce": 2, "grid_gd": 2, "dense_gd": 2, "trust_region": 2, "tr_authors": 2},
    "0": {"pce": 2, "grid_gd": 2, "dense_gd": 2, "trust_region": 2, "tr_authors": 2,
          "clicks_size": 2},
}
"""Seeds per cell of the experiment: more where the comparison matters most."""
QUICK_PLAN = {"1": {"pce": 2, "grid_gd": 2}, "0": {"pce": 2, "grid_gd": 2}}
REFERENCE = "grid_gd"
"""Paired differences are taken against this method, seed by seed."""


def parse_variant(name):
    """``"base[key=value,...]"`` -> ``(base, {dotted key: value})``.

    A variant is a method of :data:`METHODS` with config overrides, e.g.
    ``trust_region[lambda_weight=0.003]``; a key without a section is in the
    method's own section (``trust_region.lambda_weight``).

    >>> parse_variant("trust_region[lambda_weight=0.003,every=2]")
    ('trust_region', {'trust_region.lambda_weight': 0.003, 'trust_region.every': 2})
    """
    import yaml

    if "[" not in name:
        return name, {}
    if not name.endswith("]"):
        raise SystemExit(f"error: method variant {name!r}: expected base[key=value,...]")
    base, body = name[:-1].split("[", 1)
    section = METHODS.get(base, {}).get("method", base)
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"error: method variant {name!r}: {item!r} is not key=value")
        key = key.strip() if "." in key else f"{section}.{key.strip()}"
        overrides[key] = yaml.safe_load(value)
    return base, overrides


def split_methods(text):
    """Comma-separated method names, commas inside a variant's brackets kept.

    >>> split_methods("pce,trust_region[lambda_weight=0.2,every=2],grid_gd")
    ['pce', 'trust_region[lambda_weight=0.2,every=2]', 'grid_gd']
    """
    import re

    return [name for name in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", text) if name.strip()]


def method_overrides(name, ratio):
    """The config overrides of method (or variant) ``name`` at scribble length ``ratio``."""
    from keras_regseg.losses.robust_ce import default_epsilon

    base, extra = parse_variant(name)
    overrides = dict(METHODS[base])
    by_length = BY_LENGTH.get(base, {}).get("1" if ratio == "1" else "short", {})
    for key, value in by_length.items():
        if key == "voc_epsilon":   # the authors' K = 21 value, carried over to ACDC's 4 classes
            overrides["trust_region.epsilon"] = round(default_epsilon(4, reference=value), 4)
        else:
            overrides[key] = value
    overrides.update(extra)
    return overrides


class Cell:
    """One training run of the grid: ``(ratio, method, seed)``."""

    def __init__(self, ratio, method, seed):
        self.ratio, self.method, self.seed = ratio, method, int(seed)

    @property
    def key(self):
        return f"{self.ratio}:{self.method}:{self.seed}"

    @property
    def base(self):
        return parse_variant(self.method)[0]

    def folder(self, runs):
        if self.base in DENSE:
            return os.path.join(runs, self.method, f"seed{self.seed}")
        return os.path.join(runs, f"ratio{self.ratio}", self.method, f"seed{self.seed}")

    def record(self, records):
        """The committed JSON record of this cell's final metrics."""
        return self.folder(records) + ".json"

    def dependency(self):
        """The pCE cell this one starts from, or ``None``."""
        return Cell(self.ratio, "pce", self.seed) if self.base in FINETUNED else None

    def __repr__(self):
        return self.key


def planned_cells(args):
    """The cells asked for: the plan, limited by ``--ratios``, ``--methods`` and ``--seeds``.

    A method outside the plan at some length runs there only with explicit ``--seeds``.
    Cells come method by method, in the order of ``--methods``.
    """
    plan = QUICK_PLAN if args.quick else PLAN
    ratios = args.ratios.split(",") if args.ratios else list(plan)
    for ratio in ratios:
        if ratio not in RATIOS:
            raise SystemExit(f"error: --ratios: {ratio!r} is not among {', '.join(RATIOS)}")
    methods = (split_methods(args.methods) if args.methods
               else list(dict.fromkeys(m for r in ratios for m in plan.get(r, {}))))
    for method in methods:
        if parse_variant(method)[0] not in METHODS:
            raise SystemExit(f"error: --methods: unknown method {method!r}; "
                             f"expected among {', '.join(METHODS)} (or base[key=value,...])")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    cells = []
    for method in methods:
        for ratio in ratios:
            if parse_variant(method)[0] in DENSE and ratio != "1":
                continue
            count = plan.get(ratio, {}).get(method)
            if seeds is not None:
                cells.extend(Cell(ratio, method, seed) for seed in seeds)
            elif count:
                cells.extend(Cell(ratio, method, seed) for seed in range(count))
    return cells


def budget_of(args):
    budget = dict(PROFILES[args.profile])
    if args.quick:
        budget.update(QUICK)
    if args.fold is not None:
        budget["fold"] = args.fold
    return budget


def cell_config(cell, budget, args, threads):
    """The ``TrainConfig`` of one cell (written to its folder as ``config.yaml``)."""
    from keras_regseg.training.config import TrainConfig

    config = TrainConfig.from_yaml(os.path.join(CONFIGS, "pce_acdc.yaml"))
    dependency = cell.dependency()
    overrides = {
        "output": cell.folder(args.runs),
        "data.path": os.path.abspath(args.data_path), "data.fold": budget["fold"],
        "data.size": budget["size"], "data.scribble_ratio": float(cell.ratio),
        "training.iterations": budget["iterations"],
        "training.steps_per_epoch": budget["steps_per_epoch"],
        "training.batch_size": budget["batch"], "training.seed": cell.seed,
        "training.validate_every": budget["validate_every"],
        "optimizer.learning_rate": budget["learning_rate"],
        "training.init_from": (os.path.join(dependency.folder(args.runs), "model.keras")
                               if dependency else None),
    }
    if args.holdout:
        overrides["data.holdout_patients"] = args.holdout
    overrides.update(method_overrides(cell.method, cell.ratio))
    if overrides.get("training.pretrain_subset"):   # its own pCE phase, a pCE cell's budget
        overrides["training.pretrain_iterations"] = budget["iterations"]
    if cell.base in SOLVER_METHODS:
        # One solver worker per core left to this cell; none: solve in the training process.
        overrides[SOLVER_METHODS[cell.base]] = max(threads - 1, 0)
    return config.override(source=f"benchmarks/acdc.py ({cell.key})", **overrides)


def finished_metrics(folder):
    """The final metrics of a finished run folder, or ``None``."""
    path = os.path.join(folder, "metrics.json")
    if not (os.path.exists(os.path.join(folder, "model.keras")) and os.path.exists(path)):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("final")


def write_record(cell, args):
    """Copy a finished cell's final metrics from its run folder to its record."""
    metrics = finished_metrics(cell.folder(args.runs))
    if metrics is None or args.records is None:
        return
    path = cell.record(args.records)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"cell": cell.key, "final": cell_row(metrics),
                   "overrides": method_overrides(cell.method, cell.ratio)}, f, indent=1)
        f.write("\n")


def cell_result(cell, args):
    """A finished cell's table row: from its run folder, else from its record, else ``None``."""
    metrics = finished_metrics(cell.folder(args.runs))
    if metrics is not None:
        return cell_row(metrics)
    if args.records and os.path.exists(cell.record(args.records)):
        with open(cell.record(args.records), encoding="utf-8") as f:
            return json.load(f)["final"]
    return None


def started(folder):
    return os.path.isdir(os.path.join(folder, "backup"))


def print_status(cells, args):
    rows = []
    for cell in cells:
        metrics = cell_result(cell, args)
        state = ("done" if metrics else "interrupted" if started(cell.folder(args.runs))
                 else "missing")
        dice = metrics.get("mean_dice") if metrics else None
        rows.append([cell.ratio, cell.method, cell.seed, state, "-" if dice is None else dice])
    common.print_table(["ratio", "method", "seed", "state", "mean_dice"], rows)
    counts = {s: sum(r[3] == s for r in rows) for s in ("done", "interrupted", "missing")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))


def launch(cell, budget, args, threads):
    """Start ``train.py`` for ``cell`` in a subprocess limited to ``threads`` cores."""
    import yaml

    config = cell_config(cell, budget, args, threads)
    os.makedirs(config.output, exist_ok=True)
    config_path = os.path.join(config.output, "cell.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    log = open(os.path.join(config.output, "train.log"), "a", encoding="utf-8")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                                "--config", config_path], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    process.log = log
    return process


def run_cells(cells, budget, args):
    """Train every unfinished cell, ``args.jobs`` at a time, pCE before what starts from it."""
    pending = [c for c in cells if not cell_result(c, args)]
    keys = {c.key for c in pending}
    for cell in list(pending):   # a fine-tuned cell needs its pCE network
        dependency = cell.dependency()
        if (dependency and dependency.key not in keys
                and not finished_metrics(dependency.folder(args.runs))):
            pending.insert(0, dependency)
            keys.add(dependency.key)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    running, failed = {}, []
    total, done = len(pending), 0
    while pending or running:
        for cell in [c for c in pending if len(running) < args.jobs]:
            dependency = cell.dependency()
            if dependency and not finished_metrics(dependency.folder(args.runs)):
                if dependency.key in {c.key for c in failed}:
                    pending.remove(cell)
                    failed.append(cell)
                continue
            if len(running) >= args.jobs:
                break
            pending.remove(cell)
            running[cell.key] = (cell, launch(cell, budget, args, threads), time.time())
            print(f"{time.strftime('%H:%M')} started {cell.key} in {cell.folder(args.runs)}",
                  flush=True)
        time.sleep(2 if args.quick else 10)
        for key, (cell, process, start) in list(running.items()):
            if process.poll() is None:
                continue
            process.log.close()
            del running[key]
            done += 1
            metrics = finished_metrics(cell.folder(args.runs))
            if process.returncode or metrics is None:
                failed.append(cell)
                print(f"{time.strftime('%H:%M')} FAILED {key} (exit {process.returncode}); "
                      f"see {cell.folder(args.runs)}/train.log", flush=True)
            else:
                write_record(cell, args)
                print(f"{time.strftime('%H:%M')} finished {key} [{done}/{total}]: mean Dice "
                      f"{metrics['mean_dice']:.4f} in {(time.time() - start) / 60:.1f} min",
                      flush=True)
    return failed


def cell_row(metrics):
    row = {"mean_dice": metrics.get("mean_dice"), "hd95": metrics.get("hd95"),
           "potts_energy": metrics.get("potts_energy"), "wall_s": metrics.get("wall_s")}
    for short, name in (("rv", "RV"), ("myo", "Myo"), ("lv", "LV")):
        row[f"dice_{short}"] = metrics.get(f"dice_per_class/{name}")
    return row


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired_difference(by_seed, reference_by_seed):
    """Mean and sd over the shared seeds of (method - reference) mean Dice, seed by seed."""
    seeds = sorted(s for s in by_seed if s in reference_by_seed)
    mean, sd = mean_sd([by_seed[s]["mean_dice"] - reference_by_seed[s]["mean_dice"]
                        for s in seeds])
    return {"mean": mean, "sd": sd, "seeds": seeds}


def summarize(cells, args):
    """``{ratio: {method: summary}}`` over the finished cells, with paired differences."""
    finished = {}
    for cell in cells:
        row = cell_result(cell, args)
        if row:
            finished.setdefault(cell.ratio, {}).setdefault(cell.method, {})[cell.seed] = row
    lengths = {}
    for ratio, methods in finished.items():
        reference = methods.get(REFERENCE, {})
        lengths[ratio] = {}
        for method, by_seed in methods.items():
            seeds = sorted(by_seed)
            dice = [by_seed[s]["mean_dice"] for s in seeds]
            mean, sd = mean_sd(dice)
            summary = {"mean_dice": mean, "sd_dice": sd, "seeds": seeds, "dice_per_seed": dice}
            for key in ("dice_rv", "dice_myo", "dice_lv", "hd95", "potts_energy", "wall_s"):
                summary[key] = mean_sd([by_seed[s].get(key) for s in seeds])[0]
            summary["paired_vs_grid_gd"] = paired_difference(by_seed, reference)
            summary["paired_vs_pce"] = paired_difference(by_seed, methods.get("pce", {}))
            base = parse_variant(method)[0]
            if base != method and base in methods:   # a variant against its plain method
                summary["paired_vs_base"] = paired_difference(by_seed, methods[base])
            lengths[ratio][method] = summary
    return lengths


def add_dense_rows(lengths):
    """Full supervision, trained once, is the upper bound at every scribble length."""
    dense = {m: s for m, s in lengths.get("1", {}).items() if m == "full"}
    for ratio, methods in lengths.items():
        if ratio != "1":
            for method, summary in dense.items():
                methods.setdefault(method, dict(summary, paired_vs_grid_gd=None,
                                                paired_vs_pce=None))
    return lengths


def print_lengths(lengths):
    for ratio in RATIOS:
        if ratio not in lengths:
            continue
        print(f"\nscribble length {ratio}")
        rows = []
        for method, s in sorted(lengths[ratio].items(), key=lambda kv: -(kv[1]["mean_dice"] or 0)):
            paired = s.get("paired_vs_grid_gd") or {}
            versus_pce = s.get("paired_vs_pce") or {}
            versus_base = s.get("paired_vs_base") or {}
            rows.append([method, len(s["seeds"]), _pm(s["mean_dice"], s["sd_dice"]),
                         _pm(paired.get("mean"), paired.get("sd"), signed=True)
                         if method != REFERENCE else "-",
                         _pm(versus_pce.get("mean"), versus_pce.get("sd"), signed=True)
                         if method != "pce" else "-",
                         _pm(versus_base.get("mean"), versus_base.get("sd"), signed=True),
                         "-" if s["hd95"] is None else f"{s['hd95']:.1f}",
                         "-" if s["potts_energy"] is None else f"{s['potts_energy']:.4f}"])
        common.print_table(["method", "seeds", "mean Dice", "paired vs grid_gd",
                            "paired vs pce", "variant vs base", "HD95", "Potts/px"], rows)


def _pm(mean, sd, signed=False):
    if mean is None:
        return "-"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return text + ("" if sd is None else f" ± {sd:.3f}")


def plot_lengths(lengths, path):
    """Mean Dice against scribble length, one line per method, error bars = sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    methods = sorted({m for by_method in lengths.values() for m in by_method})
    for method in methods:
        points = [(float(r), lengths[r][method]) for r in RATIOS
                  if r in lengths and method in lengths[r]]
        if not points:
            continue
        xs = [x for x, _ in points]
        ys = [s["mean_dice"] for _, s in points]
        errors = [s["sd_dice"] or 0.0 for _, s in points]
        style = "--" if parse_variant(method)[0] in DENSE else "-"
        axis.errorbar(xs, ys, yerr=errors, marker="o", linestyle=style, capsize=3, label=method)
    axis.set_xlabel("scribble length (ratio kept; 0 = one click per scribble)")
    axis.set_ylabel("mean 3D Dice (test volumes)")
    axis.set_xticks([float(r) for r in RATIOS])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    axis.set_title("ACDC fold 1: Dice by scribble length (mean ± sd over seeds)")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {path}")


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--ratios", help=f"comma-separated scribble lengths among {', '.join(RATIOS)}")
    parser.add_argument("--methods", help=f"comma-separated, among {', '.join(METHODS)}")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the plan's count per cell)")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained at once (default 1)")
    parser.add_argument("--threads", type=int,
                        help="cores per cell (default: the machine's cores / --jobs; lower it "
                             "when another benchmark shares the machine)")
    parser.add_argument("--status", action="store_true", help="list done and missing cells, train nothing")
    parser.add_argument("--no-train", action="store_true", help="table and JSON of finished cells only")
    parser.add_argument("--holdout", type=int, default=0,
                        help="hold this many training patients out and score on them, never "
                             "on the test fold: the split to choose settings on (e.g. 16)")
    parser.add_argument("--fold", type=int, help="cross-validation fold (default: the profile's, 1)")
    parser.add_argument("--data-path", default=DEFAULT_DATA, help="folder of the ACDC h5 volumes")
    parser.add_argument("--runs", help="run folders (default runs/bench_acdc_<profile>)")
    parser.add_argument("--records", help="where finished cells' final metrics are kept "
                                          "(default benchmarks/results/acdc_cells/...; "
                                          "none for --quick)")
    parser.add_argument("--plot", help="where to draw Dice against scribble length "
                                       "(default: beside --json, acdc_lengths.png; with "
                                       "--holdout only where --plot says)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    budget = budget_of(args)
    args.runs = os.path.abspath(args.runs or os.path.join(
        "runs", f"bench_acdc_{args.profile}" + ("_quick" if args.quick else ""),
        f"fold{budget['fold']}" + (f"_holdout{args.holdout}" if args.holdout else "")))
    if args.records is None and not args.quick:
        args.records = os.path.join(ROOT, "benchmarks", "results", "acdc_cells", args.profile,
                                    f"fold{budget['fold']}"
                                    + (f"_holdout{args.holdout}" if args.holdout else ""))
    cells = planned_cells(args)
    for cell in cells:
        write_record(cell, args)
    if args.status:
        print_status(cells, args)
        return 0
    failed = [] if args.no_train else run_cells(cells, budget, args)
    lengths = add_dense_rows(summarize(cells, args))
    print_lengths(lengths)
    # The default plot is the test fold's: a held-out run must not draw over it.
    plot = args.plot or (os.path.join(os.path.dirname(os.path.abspath(args.json)),
                                      "acdc_lengths.png")
                         if args.json and not args.holdout else None)
    if plot and lengths:
        plot_lengths(lengths, plot)
    methods = {m: {k: v for k, v in s.items() if k not in ("seeds", "dice_per_seed",
                                                            "paired_vs_grid_gd", "sd_dice")}
               for m, s in lengths.get("1", {}).items()}
    common.write_json(args.json, {
        "profile": args.profile, "quick": args.quick,
        "evaluated_on": (f"{args.holdout} held-out training patients" if args.holdout
                         else "the test patients of the fold"),
        "budget": {"iterations": budget["iterations"], "batch": budget["batch"],
                   "size": budget["size"], "fold": budget["fold"],
                   "learning_rate": budget["learning_rate"], "schedule": "poly 0.9",
                   "finetuned_methods_start_from": "pce of the same scribble length and seed"},
        "methods": methods,
        "lengths": lengths,
        "cells_missing": [c.key for c in cells if not cell_result(c, args)],
    })
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
