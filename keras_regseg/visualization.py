"""Colour label maps and draw the figures a run writes (curves, prediction grids)."""

import matplotlib

matplotlib.use("Agg")  # files only: training runs headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX  # noqa: E402

__all__ = ["colorize", "curve_panels", "overlay_scribbles", "palette", "prediction_grid",
           "training_curves"]


def palette(num_classes):
    """The Pascal VOC colour palette, ``uint8 [max(num_classes, 256), 3]``.

    >>> palette(21)[1].tolist()
    [128, 0, 0]
    """
    colours = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[index] = (r, g, b)
    return colours


def colorize(labels, num_classes, unlabeled=(255, 255, 255)):
    """RGB ``uint8 [H, W, 3]`` of a label map; unlabeled and padding pixels get ``unlabeled``."""
    labels = np.asarray(labels)
    rgb = palette(num_classes)[np.clip(labels, 0, 255)]
    rgb[(labels == IGNORE_INDEX) | (labels == PAD_INDEX)] = unlabeled
    return rgb


def _as_rgb(image):
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def overlay_scribbles(image, weak_label, num_classes):
    """The image with seed pixels painted in their class colour."""
    rgb = _as_rgb(image).copy()
    seeds = (weak_label >= 0) & (weak_label < num_classes)
    rgb[seeds] = palette(num_classes)[weak_label[seeds]] / 255.0
    return rgb


def prediction_grid(path, images, weak_labels, predictions, dense_labels, num_classes,
                    titles=None, extra=None):
    """Save a PNG grid, one row per image: image, scribbles, prediction, ground truth.

    ``extra`` optionally maps a column title to a list of label maps (e.g.
    trust-region proposals) shown before the ground truth.
    """
    columns = [("image", [_as_rgb(im) for im in images]),
               ("scribbles", [overlay_scribbles(im, w, num_classes)
                              for im, w in zip(images, weak_labels)]),
               ("prediction", [colorize(p, num_classes) for p in predictions])]
    for title, maps in (extra or {}).items():
        columns.append((title, [colorize(m, num_classes) for m in maps]))
    columns.append(("ground truth", [colorize(d, num_classes) for d in dense_labels]))
    rows = len(images)
    figure, axes = plt.subplots(rows, len(columns), figsize=(2.2 * len(columns), 2.2 * rows),
                                squeeze=False)
    for col, (title, pictures) in enumerate(columns):
        for row in range(rows):
            axis = axes[row, col]
            axis.imshow(pictures[row], interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
            if col == 0 and titles is not None:
                axis.set_ylabel(str(titles[row]), fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def curve_panels(history):
    """``[(title, keys)]``: the panels of :func:`training_curves`, in order.

    Losses share a panel; each validation metric gets its own (Dice in [0, 1]
    and HD95 in pixels do not share a scale), except that a trust-region
    ``proposal_<m>`` shares its panel with the network's ``network_<m>`` (what
    stage A adds); the learning rate comes last. Series without a finite value
    are left out.

    >>> panels = curve_panels({"loss": [1.0], "proposal_miou": [0.6], "network_miou": [0.5],
    ...                        "val_dice": [0.7], "learning_rate": [0.01]})
    >>> [title for title, _ in panels]
    ['loss', 'miou: stage A vs network', 'val_dice', 'learning rate']
    >>> panels[1][1]
    ['proposal_miou', 'network_miou']
    """
    series = [k for k, v in history.items() if len(v) and np.isfinite(v).any()]
    losses = [k for k in series if "loss" in k]
    metrics = [k for k in series if k not in losses and k != "learning_rate"]
    paired = {k: "network_" + k[len("proposal_"):] for k in metrics
              if k.startswith("proposal_") and "network_" + k[len("proposal_"):] in metrics}
    panels = [("loss", losses)] if losses else []
    for key in metrics:
        if key in paired:
            panels.append((key[len("proposal_"):] + ": stage A vs network", [key, paired[key]]))
        elif key not in paired.values():
            panels.append((key, [key]))
    if "learning_rate" in series:
        panels.append(("learning rate", ["learning_rate"]))
    return panels


def training_curves(path, history):
    """Save a PNG of every logged series against the epoch (panels: :func:`curve_panels`)."""
    series = {k: v for k, v in history.items() if len(v) and np.isfinite(v).any()}
    panels = curve_panels(series)
    columns = min(max(len(panels), 1), 4)
    rows = -(-max(len(panels), 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            values = np.asarray(series[key], np.float64)
            epochs = np.arange(1, len(values) + 1)
            shown = np.isfinite(values)        # epochs without validation are skipped
            axis.plot(epochs[shown], values[shown], marker="o", markersize=3, label=key)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if len(keys) > 1:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
