"""CCNN accuracy on the built-in synthetic shapes: tags only, tags + size bits, against scribbles.

Every row trains the same UNet from scratch for the same budget
(configs/ccnn_synthetic.yaml: 64x64, batch 8, 1200 iterations) and reports the
validation mIoU, per-class IoU and pixel accuracy. ``pce`` (scribbles) and
``full`` (dense masks) bracket the image-level methods.

    python benchmarks/ccnn_synthetic.py [--quick] [--json PATH]
"""

import os

import common

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                      "ccnn_synthetic.yaml")
ROWS = {
    "ccnn_tags": {"method": "ccnn", "ccnn.size_bits": False},
    "ccnn_size": {"method": "ccnn", "ccnn.size_bits": True},
    "pce": {"method": "pce"},
    "full": {"method": "full"},
}


def main():
    args = common.parser(__doc__.split("\n")[0]).parse_args()
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.trainer import train

    base = TrainConfig.from_yaml(CONFIG)
    if args.quick:
        base = base.override(**{"training.iterations": 40, "training.steps_per_epoch": 20})
    runs = os.path.join("runs", "bench_ccnn_synthetic" + ("_quick" if args.quick else ""))
    table, rows = {}, []
    for name, overrides in ROWS.items():
        config = base.override(**{"output": os.path.join(runs, name), **overrides})
        metrics = train(config, verbose=0).metrics
        per_class = {k: v for k, v in metrics.items() if k.startswith("iou_per_class")}
        table[name] = {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
                       "wall_s": metrics["wall_s"], **per_class}
        rows.append([name, metrics["miou"], metrics["pixel_accuracy"], metrics["wall_s"]])
        print(f"{name}: mIoU {metrics['miou']:.4f}", flush=True)
    common.print_table(["method", "val mIoU", "pixel acc", "wall s"], rows)
    common.write_json(args.json, {
        "budget": {"iterations": base.training.iterations, "batch": base.training.batch_size,
                   "size": base.data.size},
        "ccnn": {k: v for k, v in base.to_dict()["ccnn"].items()},
        "quick": args.quick, "methods": table})


if __name__ == "__main__":
    main()
