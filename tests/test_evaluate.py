"""Evaluation routines with oracle / shifted prediction functions on tiny synthetic data."""

import numpy as np
import pytest
from scipy.ndimage import zoom

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.evaluation import (
    ConfusionAccumulator,
    TrimapAccumulator,
    evaluate_images,
    evaluate_volumes,
    predict_labels,
    predict_volume,
)

K = 4


def _encode(label):
    """Image whose intensity is the label: lets a predict_fn read the ground truth back."""
    return (np.asarray(label) / (K - 1)).astype(np.float32)


def _oracle(images, shift=0):
    """One-hot scores of the label encoded in the image, optionally rolled along x."""
    labels = np.rint(images[..., 0] * (K - 1)).astype(int)
    scores = np.eye(K, dtype=np.float32)[labels]
    return np.roll(scores, shift, axis=2)


def _box_volume(shape=(4, 12, 10)):
    label = np.zeros(shape, np.uint8)
    label[1:3, 2:6, 2:6] = 1        # 2 slices x 4 x 4 box: every voxel is surface
    label[1:3, 7:10, 5:9] = 2
    label[0:4, 1:11, 0:1] = 3
    return label


def _volumes(n=3, shape=(4, 12, 10)):
    return [{"id": f"v{i}", "image": _encode(_box_volume(shape)), "label": _box_volume(shape)}
            for i in range(n)]


def test_predict_labels_batches_and_checks_output_shape():
    rng = np.random.default_rng(0)
    images = rng.random((5, 3, 4, 2)).astype(np.float32)
    weights = rng.standard_normal((2, 3)).astype(np.float32)
    calls = []

    def predict(batch):
        calls.append(batch.shape[0])
        return batch @ weights

    labels = predict_labels(predict, images, batch_size=2)
    assert calls == [2, 2, 1]
    np.testing.assert_array_equal(labels, np.argmax(images @ weights, -1))
    with pytest.raises(ValueError, match="predict_fn must return"):
        predict_labels(lambda b: b[:, :2], images, batch_size=2)
    with pytest.raises(ValueError, match="\\[N, H, W, C\\]"):
        predict_labels(predict, images[0], batch_size=2)


def _wsl4mis_predict_volume(predict_fn, image, size):
    """WSL4MIS test_single_volume, slice by slice (reference for predict_volume)."""
    prediction = np.zeros(image.shape, np.int64)
    for z, slice_ in enumerate(image):
        x, y = slice_.shape
        small = zoom(slice_, (size / x, size / y), order=0)
        out = np.argmax(predict_fn(small[None, :, :, None])[0], -1)
        prediction[z] = zoom(out, (x / size, y / size), order=0)
    return prediction


@pytest.mark.parametrize("native, size", [((4, 12, 10), 16), ((3, 23, 17), 8), ((2, 9, 9), 9)])
def test_predict_volume_matches_wsl4mis_slice_loop(native, size):
    rng = np.random.default_rng(1)
    image = _encode(rng.integers(0, K, native))
    np.testing.assert_array_equal(predict_volume(_oracle, image, size, batch_size=2),
                                  _wsl4mis_predict_volume(_oracle, image, size))


def test_oracle_prediction_gives_perfect_scores():
    names = ("bg", "RV", "Myo", "LV")
    # input 16 >= native 12 x 10: the nearest zoom round trip is the identity.
    result = evaluate_volumes(_oracle, _volumes(), input_size=16, num_classes=K,
                              batch_size=3, progress=False, class_names=names)
    assert result["mean_dice"] == 1.0 and result["hd95"] == 0.0
    assert result["dice_per_class"] == {"RV": 1.0, "Myo": 1.0, "LV": 1.0}
    assert result["hd95_per_class"] == {"RV": 0.0, "Myo": 0.0, "LV": 0.0}
    assert result["num_volumes"] == 3 and [v["id"] for v in result["volumes"]] == ["v0", "v1", "v2"]


def _shifted_result(spacing=None, volumes=None):
    # Roll by one pixel along x at native resolution (input_size = native size).
    # Class 1 (4 x 4 box, 2 slices, all surface) loses one of 4 columns:
    # Dice = 3/4, surface distances are 1 px on 8 of 32 voxels per direction -> HD95 = 1 px.
    return evaluate_volumes(lambda x: _oracle(x, shift=1), volumes or _volumes(shape=(4, 10, 10)),
                            input_size=10, num_classes=K, spacing=spacing, progress=False)


def test_shifted_prediction_gives_known_dice_and_hd95():
    result = _shifted_result()
    assert result["dice_per_class"][1] == pytest.approx(3 / 4)
    assert result["dice_per_class"][2] == pytest.approx(3 / 4)
    assert result["dice_per_class"][3] == 0.0          # 1-px wide strip, moved off itself
    assert result["hd95_per_class"][1] == pytest.approx(1.0)
    assert result["mean_dice"] == pytest.approx((0.75 + 0.75 + 0.0) / 3)
    row = result["volumes"][0]
    assert row["mean_dice"] == pytest.approx(result["mean_dice"])
    assert row["mean_hd95"] == pytest.approx(np.mean(list(row["hd95"].values())))


def test_spacing_scales_hd95_and_per_volume_spacing_overrides():
    voxels = _shifted_result()
    scaled = _shifted_result(spacing=(10.0, 2.0, 3.0))   # the shift is along x (3 mm)
    assert scaled["hd95_per_class"][1] == pytest.approx(3.0 * voxels["hd95_per_class"][1])
    assert scaled["dice_per_class"] == voxels["dice_per_class"]
    volumes = _volumes(shape=(4, 10, 10))
    volumes[0]["spacing"] = 2.0
    mixed = _shifted_result(spacing=1.0, volumes=volumes)
    assert mixed["volumes"][0]["hd95"][1] == pytest.approx(2.0)
    assert mixed["volumes"][1]["hd95"][1] == pytest.approx(1.0)


def test_class_absent_from_ground_truth():
    volumes = _volumes(n=2)
    volumes[1]["label"] = np.where(volumes[1]["label"] == 2, 0, volumes[1]["label"])
    # image still shows class 2, so the oracle predicts it where the truth has none
    with pytest.raises(ValueError, match="volume 'v1': class 2"):
        evaluate_volumes(_oracle, volumes, 16, K, progress=False)
    result = evaluate_volumes(_oracle, volumes, 16, K, progress=False, absent_class="skip")
    assert result["volumes"][1]["dice"][2] is None
    assert result["dice_per_class"][2] == 1.0           # mean over the one volume that has it
    assert result["mean_dice"] == 1.0


def test_evaluate_volumes_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        evaluate_volumes(_oracle, [], 16, K, progress=False)
    bad = _volumes(n=1)
    bad[0]["label"] = bad[0]["label"][:, :5]
    with pytest.raises(ValueError, match="'v0': label shape"):
        evaluate_volumes(_oracle, bad, 16, K, progress=False)


def _image_samples(rng):
    samples = []
    for i, shape in enumerate([(9, 11), (9, 11), (9, 11), (12, 8), (9, 11), (12, 8)]):
        label = rng.integers(0, K, (shape[0] // 3 + 1, shape[1] // 3 + 1))
        label = np.kron(label, np.ones((3, 3), int))[: shape[0], : shape[1]]
        dense = label.copy()
        dense[rng.random(shape) < 0.1] = IGNORE_INDEX
        dense[:, -1] = PAD_INDEX
        if i == 2:
            dense[:] = IGNORE_INDEX             # no ground truth: skipped
        samples.append({"image": _encode(label)[..., None], "dense_label": dense,
                        "weak_label": np.full(shape, IGNORE_INDEX), "id": str(i)})
    return samples


def test_evaluate_images_matches_direct_accumulation():
    rng = np.random.default_rng(3)
    samples = _image_samples(rng)
    batch_shapes = []

    def predict(images):
        batch_shapes.append(images.shape)
        noisy = _oracle(images)
        noisy[:, ::2, ::3] = noisy[:, ::2, ::3][..., ::-1]   # deterministic errors
        return noisy

    result = evaluate_images(predict, samples, K, batch_size=2, boundary_widths=(1, 3),
                             progress=False)
    # equal sizes grouped in order, at most 2 per call, skipped sample never predicted
    assert [s[:3] for s in batch_shapes] == [(2, 9, 11), (1, 12, 8), (1, 9, 11), (1, 12, 8)]
    confusion, trimap = ConfusionAccumulator(K), TrimapAccumulator(K, (1, 3))
    for sample in samples[:2] + samples[3:]:
        pred = np.argmax(predict(sample["image"][None])[0], -1)
        confusion.update(sample["dense_label"], pred)
        trimap.update(sample["dense_label"], pred)
    expected = confusion.result()
    assert 0.2 < expected["miou"] < 0.95       # the injected errors are visible
    for key in ("miou", "pixel_accuracy", "iou_per_class", "pixels"):
        assert result[key] == expected[key]
    assert result["trimap"] == trimap.result()
    assert result["num_images"] == 5 and result["num_skipped"] == 1


def test_evaluate_images_without_ground_truth_fails_clearly():
    samples = _image_samples(np.random.default_rng(0))[2:3]
    with pytest.raises(ValueError, match="1 skipped"):
        evaluate_images(_oracle, samples, K, progress=False)


def test_evaluate_images_names_a_sample_with_mismatched_shapes():
    samples = _image_samples(np.random.default_rng(0))[:2]
    samples[1]["dense_label"] = samples[1]["dense_label"][:, :4]
    with pytest.raises(ValueError, match="sample '1': image shape"):
        evaluate_images(_oracle, samples, K, progress=False)
