"""Write a tiny NIfTI dataset in the ``data.name: volumes`` layout, to try the walkthrough.

    python examples/make_demo_volumes.py demo_volumes

Eight made-up "scans" (a bright ball inside a darker shell, thick 5 mm slices,
MRI-like arbitrary intensities): five for training with simulated scribbles
(no masks), one for validation and two for testing, with masks. Replace them
with your subjects: the layout is the same.
"""

import os
import sys

import nibabel
import numpy as np

from keras_regseg.data.weak_labels import scribbles_from_mask

SPLITS = {"train": 5, "val": 1, "test": 2}
SHAPE = (64, 64, 10)                    # X, Y, Z: slices along the last axis, as NIfTI stores them
AFFINE = np.diag([1.25, 1.25, 5.0, 1.0])  # voxel size in mm
UNLABELED = 255


def make_subject(rng):
    """``(image, scribble, mask)`` of one made-up scan."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    cx, cy = rng.uniform(24, 40, 2)
    distance = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + ((z - 4.5) * 4.0) ** 2)
    mask = np.where(distance < 10, 1, np.where(distance < 18, 2, 0)).astype(np.uint8)
    image = 900.0 * (mask == 1) + 500.0 * (mask == 2) + 100 + rng.normal(0, 60, SHAPE)
    scribble = np.stack([scribbles_from_mask(mask[..., k], 3, rng=rng, margin=2)
                         for k in range(SHAPE[2])], axis=-1)
    return image.astype(np.float32), scribble.astype(np.uint8), mask


def main(root):
    rng = np.random.default_rng(0)
    for folder in ("images", "scribbles", "masks", "splits"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    number = 0
    for split, count in SPLITS.items():
        subjects = [f"subject{number + i:02d}" for i in range(count)]
        number += count
        with open(os.path.join(root, "splits", f"{split}.txt"), "w") as f:
            f.write("\n".join(subjects) + "\n")
        for subject in subjects:
            image, scribble, mask = make_subject(rng)
            files = {"images": image, "scribbles": scribble}
            if split != "train":
                files["masks"] = mask
            for folder, array in files.items():
                nibabel.save(nibabel.Nifti1Image(array, AFFINE),
                             os.path.join(root, folder, f"{subject}.nii.gz"))
    print(f"wrote {number} subjects into {root}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_volumes")
