"""Does a refactor change what training computes? Every method trained with two versions.

Checks out ``--base`` (a git revision) into a temporary worktree, trains every
registered method briefly with its code and with the code of this tree (the
same synthetic data, seed, augmentation, dropout and pCE pretraining), and
compares the trained networks' weights. Identical weights mean the two versions
train identically, so the results measured with the older one (benchmark
records, finished runs) carry over. Run from the project root::

    python benchmarks/same_weights.py --base HEAD~1 --json benchmarks/results/same_weights.json
"""

import argparse
import os
import subprocess
import sys
import tempfile

import common

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VARIANTS = {"pce": {}, "full": {}, "entropy": {}, "gd_grid": {"gd": {"regularizer": "grid"}},
            "gd_dense": {"gd": {"regularizer": "dense"}}, "adm": {}, "trust_region": {},
            "ccnn": {}}
"""Runs (method or ``gd_<regularizer>``) -> config sections they change."""


def base_config(quick):
    """A small synthetic run with everything that draws random numbers switched on."""
    iterations = 4 if quick else 12
    return {
        "data": {"name": "synthetic", "size": 32, "num_train": 16, "num_val": 2},
        "model": {"name": "unet", "options": {"filters": [8, 16], "dropout": 0.3}},
        "training": {"iterations": iterations, "steps_per_epoch": 4, "batch_size": 4,
                     "num_grid_images": 1, "validate_every": 3, "seed": 5,
                     "pretrain_iterations": 4},
        "optimizer": {"learning_rate": 0.05},
        "adm": {"processes": 0},
        "trust_region": {"every": 1, "processes": 0},
        "ccnn": {"downscale": 8, "max_iterations": 50},
    }


def train_all(tree, output, quick, names):
    """(In a subprocess) train ``names`` with the code of ``tree``; weights to ``output`` (npz)."""
    sys.path.insert(0, tree)
    import numpy as np

    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    weights, runs = {}, tempfile.mkdtemp()
    for name in names:
        values = base_config(quick)
        for section, changes in VARIANTS[name].items():
            values.setdefault(section, {}).update(changes)
        method = "gd" if name.startswith("gd_") else name
        result = train(TrainConfig.from_dict(dict(values, method=method,
                                                  output=os.path.join(runs, name))), verbose=0)
        for index, array in enumerate(result.network.get_weights()):
            weights[f"{name}/{index}"] = array
    np.savez(output, **weights)


def compare(base_file, head_file, names):
    import numpy as np

    base, head = np.load(base_file), np.load(head_file)
    rows = {}
    for name in names:
        keys = [key for key in base.files if key.startswith(name + "/")]
        if sorted(keys) != sorted(key for key in head.files if key.startswith(name + "/")):
            rows[name] = {"max_abs_difference": None, "identical": False}
            continue
        difference = max(float(np.abs(base[key] - head[key]).max()) for key in keys)
        rows[name] = {"max_abs_difference": difference, "identical": difference == 0.0}
    return rows


def main():
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--methods", default=",".join(VARIANTS),
                        help=f"comma-separated among {', '.join(VARIANTS)}")
    parser.add_argument("--worker", nargs=2, metavar=("TREE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = [name for name in args.methods.split(",") if name]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; expected among "
                     f"{', '.join(VARIANTS)}")
    if args.worker:
        train_all(args.worker[0], args.worker[1], args.quick, names)
        return
    base_commit = subprocess.run(["git", "-C", ROOT, "rev-parse", args.base], check=True,
                                 capture_output=True, text=True).stdout.strip()
    scratch = tempfile.mkdtemp()
    base_tree = os.path.join(scratch, "base")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", base_tree, base_commit],
                   check=True, capture_output=True)
    try:
        files = {}
        for label, tree in (("base", base_tree), ("head", ROOT)):
            files[label] = os.path.join(scratch, f"{label}.npz")
            print(f"training {len(names)} runs with the code of {label} ({tree})", flush=True)
            subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", tree,
                            files[label], "--methods", ",".join(names)]
                           + (["--quick"] if args.quick else []), check=True)
        rows = compare(files["base"], files["head"], names)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base_tree],
                       capture_output=True)
    common.print_table(["run", "max |base - head| weight", "identical"],
                       [[name, row["max_abs_difference"], row["identical"]]
                        for name, row in rows.items()])
    common.write_json(args.json, {"base": args.base, "base_commit": base_commit, "quick": args.quick, "runs": rows,
                                  "all_identical": all(r["identical"] for r in rows.values())})


if __name__ == "__main__":
    main()
