"""Does a trained network know where each class is, even where its argmax never picks it?

A network trained from image-level constraints (CCNN on tags) can meet every
constraint by spreading a class's required share of probability evenly over
the image: its argmax is then background everywhere (Dice 0) although the loss
is satisfied. This scores, on the dense labels of a run's training images and
per class:

- ``true_fraction`` / ``argmax_fraction``: the share of pixels the dense labels
  and the network's argmax give the class;
- ``mean_p_inside`` / ``mean_p_outside``: the class's mean probability on its
  own pixels and on the other pixels of images that contain it;
- ``auc``: within each image containing the class, the probability that one of
  its pixels ranks above one of the other pixels (ties count half), averaged
  over images weighted by the class's pixels. 0.5 means no localization at all.

    python benchmarks/class_localization.py --run FOLDER [--run FOLDER ...]
        [--images N] [--quick] [--json PATH] [--threads N]

``--quick`` scores 32 images.
"""

import os

import common


class Localization:
    """Accumulates the per-class localization figures over batches of images."""

    def __init__(self, num_classes, ignore_value=255):
        import numpy as np

        self.num_classes, self.ignore_value = num_classes, ignore_value
        self.pixels = 0
        self.sums = {key: np.zeros(num_classes) for key in
                     ("true", "argmax", "inside", "n_inside", "outside", "n_outside", "auc")}

    def update(self, probabilities, dense_labels):
        """``probabilities`` [B, H, W, K] softmax; ``dense_labels`` [B, H, W] class ids."""
        import numpy as np
        from scipy.stats import rankdata

        argmax = probabilities.argmax(-1)
        for image, labels, predicted in zip(probabilities, dense_labels, argmax):
            valid = labels != self.ignore_value
            self.pixels += int(valid.sum())
            self.sums["true"] += np.bincount(labels[valid], minlength=self.num_classes)
            self.sums["argmax"] += np.bincount(predicted[valid], minlength=self.num_classes)
            for k in range(self.num_classes):
                inside, outside = valid & (labels == k), valid & (labels != k)
                n_in, n_out = int(inside.sum()), int(outside.sum())
                if n_in == 0 or n_out == 0:
                    continue
                p_in, p_out = image[..., k][inside], image[..., k][outside]
                self.sums["inside"][k] += p_in.sum()
                self.sums["outside"][k] += p_out.sum()
                self.sums["n_inside"][k] += n_in
                self.sums["n_outside"][k] += n_out
                ranks = rankdata(np.concatenate([p_in, p_out]))[:n_in]   # Mann-Whitney U
                self.sums["auc"][k] += (ranks.sum() - n_in * (n_in + 1) / 2) / n_out

    def result(self):
        """``{name: [value per class]}``."""
        import numpy as np

        s, safe = self.sums, lambda x: np.maximum(x, 1)
        values = {"true_fraction": s["true"] / safe(self.pixels),
                  "argmax_fraction": s["argmax"] / safe(self.pixels),
                  "mean_p_inside": s["inside"] / safe(s["n_inside"]),
                  "mean_p_outside": s["outside"] / safe(s["n_outside"]),
                  "auc": s["auc"] / safe(s["n_inside"])}
        return {name: [float(v) for v in array] for name, array in values.items()}


def score_run(run, num_images):
    """The :class:`Localization` result of ``run``'s final network on its training images."""
    import numpy as np
    from tqdm.auto import tqdm

    import keras
    import keras_regseg
    from keras_regseg.training.config import TrainConfig
    from keras_regseg.training.data_setup import build_training_data

    config = TrainConfig.from_yaml(os.path.join(run, "config.yaml"))
    network = keras_regseg.load_model(os.path.join(run, "model.keras"))
    network = getattr(network, "network", network)   # a method's saved model holds it
    source = build_training_data(config.data).train
    indices = np.unique(np.linspace(0, len(source) - 1, min(num_images, len(source))).astype(int))
    scores = Localization(source.num_classes)
    batch_size = config.training.batch_size
    for start in tqdm(range(0, len(indices), batch_size), desc=os.path.basename(run), unit="batch"):
        samples = [source.load(int(i)) for i in indices[start:start + batch_size]]
        images = np.stack([s["image"] for s in samples]).astype("float32")
        dense = np.stack([np.asarray(s["dense_label"]).reshape(s["image"].shape[:2])
                          for s in samples])
        logits = network(images, training=False)
        scores.update(keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1)), dense)
    return config, source, scores.result()


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True,
                        help="a finished run folder (config.yaml, model.keras); repeatable")
    parser.add_argument("--images", type=int, default=400,
                        help="training images scored, evenly spaced (default 400)")
    parser.add_argument("--threads", type=int, help="cores for TensorFlow")
    args = parser.parse_args()
    common.limit_threads(args.threads)
    for run in args.run:
        for name in ("config.yaml", "model.keras"):
            if not os.path.exists(os.path.join(run, name)):
                parser.error(f"--run {run}: no {name} there; expected a finished run folder")
    num_images = 32 if args.quick else args.images
    rows, results = [], {}
    for run in args.run:
        config, source, figures = score_run(run, num_images)
        names = common.class_names(source)
        results[os.path.abspath(run)] = {"method": config.method, "classes": names, **figures}
        for k, name in enumerate(names):
            rows.append([common.short_path(run), name, figures["true_fraction"][k],
                         figures["argmax_fraction"][k],
                         figures["mean_p_inside"][k], figures["mean_p_outside"][k],
                         figures["auc"][k]])
    common.print_table(["run", "class", "true share", "argmax share", "mean p inside",
                        "mean p outside", "AUC"], rows)
    common.write_json(args.json, {"images": num_images, "runs": results,
                                  "quick": bool(args.quick)})


if __name__ == "__main__":
    main()
