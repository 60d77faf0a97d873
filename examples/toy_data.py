"""Made-up data shared by the examples: bright disks on a dark background.

Replace it with your images, scribbles (or clicks, tags, sizes, boxes).
"""

import numpy as np

IGNORE = 255   # keras_regseg.data.spec.IGNORE_INDEX: "no label here"


def make_data(count=32, size=32, seed=0):
    """``(images [N, H, W, 1] in [0, 1], scribbles [N, H, W], masks [N, H, W])``.

    One scribble stroke inside each disk and one in the background; the masks
    are for scoring only.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((count, size, size, 1), np.float32)
    scribbles = np.full((count, size, size), IGNORE, np.int32)
    masks = np.zeros((count, size, size), np.int32)
    for i in range(count):
        cy, cx, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(5, 9))]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        masks[i] = disk
        images[i, ..., 0] = 0.2 + 0.6 * disk + rng.normal(0, 0.05, (size, size))
        scribbles[i, cy, cx - r // 2:cx + r // 2] = 1       # a stroke inside the disk
        scribbles[i, 1, 2:size - 2] = 0                      # a stroke in the background
    return np.clip(images, 0, 1), scribbles, masks


def disk_iou(predicted, masks):
    """IoU of the disk class against the dense masks the network never saw."""
    return float(((predicted == 1) & (masks == 1)).sum() / ((predicted == 1) | (masks == 1)).sum())
