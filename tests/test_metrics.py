"""Metrics against brute-force definitions: confusion/IoU, trimap bands, 3D Dice and HD95."""

import itertools

import numpy as np
import pytest

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.evaluation import (
    ConfusionAccumulator,
    TrimapAccumulator,
    boundary_mask,
    confusion_matrix,
    dice,
    dice_hd95,
    hd95,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    trimap_bands,
    trimap_metrics,
    volume_metrics,
)
from keras_regseg.evaluation.volume import surface_distances, symmetric_surface_distances


# ---------------------------------------------------------------- confusion / IoU

def _random_labels(rng, shape, num_classes, void_fraction=0.2):
    labels = rng.integers(0, num_classes, shape)
    void = rng.random(shape) < void_fraction
    labels[void] = rng.choice([IGNORE_INDEX, PAD_INDEX], size=int(void.sum()))
    return labels


def _brute_confusion(labels, preds, num_classes):
    cm = np.zeros((num_classes, num_classes), np.int64)
    for label, pred in zip(labels.ravel(), preds.ravel()):
        if label not in (IGNORE_INDEX, PAD_INDEX):
            cm[label, pred] += 1
    return cm


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    labels = _random_labels(rng, (3, 7, 9), k)
    preds = rng.integers(0, k, labels.shape)
    np.testing.assert_array_equal(confusion_matrix(labels, preds, k),
                                  _brute_confusion(labels, preds, k))


def test_confusion_ignores_out_of_range_predictions_on_void_pixels_only():
    labels = np.array([0, IGNORE_INDEX, PAD_INDEX, 1])
    preds = np.array([1, 7, 9, 1])
    assert confusion_matrix(labels, preds, 2).tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="labels contain \\[3\\]"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)


def _brute_iou(labels, preds, k):
    valid = (labels != IGNORE_INDEX) & (labels != PAD_INDEX)
    out = []
    for c in range(k):
        inter = np.sum(valid & (labels == c) & (preds == c))
        union = np.sum(valid & ((labels == c) | (preds == c)))
        out.append(inter / union if union else None)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_iou_and_accuracy_match_definitions(seed):
    rng = np.random.default_rng(seed)
    labels = _random_labels(rng, (6, 6), 4)
    labels[labels == 3] = 0                      # class 3: in predictions only
    preds = rng.integers(0, 4, labels.shape)
    cm = confusion_matrix(labels, preds, 5)      # class 4: absent from both
    expected = _brute_iou(labels, preds, 5)
    iou = iou_per_class(cm)
    assert expected[4] is None and np.isnan(iou[4])
    np.testing.assert_allclose(iou[:4], expected[:4])
    assert mean_iou(cm) == pytest.approx(np.mean(expected[:4]))
    valid = (labels != IGNORE_INDEX) & (labels != PAD_INDEX)
    assert pixel_accuracy(cm) == pytest.approx(np.mean(labels[valid] == preds[valid]))


def test_iou_edge_cases():
    assert mean_iou([[5, 0], [0, 0]]) == 1.0              # class 1 absent: excluded, not 0
    assert mean_iou([[5, 3], [0, 0]]) == pytest.approx((5 / 8 + 0.0) / 2)  # predicted only: 0
    with pytest.raises(ValueError, match="no pixel"):
        mean_iou(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no pixel"):
        pixel_accuracy(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="square"):
        iou_per_class(np.zeros((2, 3)))


def test_accumulator_equals_one_matrix_over_everything():
    rng = np.random.default_rng(0)
    maps = [(_random_labels(rng, s, 3), rng.integers(0, 3, s)) for s in [(4, 5), (6, 3), (2, 2)]]
    acc = ConfusionAccumulator(3)
    for labels, preds in maps:
        acc.update(labels, preds)
    all_labels = np.concatenate([m[0].ravel() for m in maps])
    all_preds = np.concatenate([m[1].ravel() for m in maps])
    cm = _brute_confusion(all_labels, all_preds, 3)
    result = acc.result()
    np.testing.assert_array_equal(acc.matrix, cm)
    assert result["miou"] == pytest.approx(mean_iou(cm))
    assert result["pixel_accuracy"] == pytest.approx(pixel_accuracy(cm))
    assert result["pixels"] == cm.sum()
    acc.reset()
    with pytest.raises(ValueError):
        acc.result()


# ---------------------------------------------------------------- trimap

def _brute_boundary(labels, connectivity):
    h, w = labels.shape
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    if connectivity == 4:
        steps = [s for s in steps if 0 in s]
    void = (IGNORE_INDEX, PAD_INDEX)
    out = np.zeros((h, w), bool)
    for y, x in itertools.product(range(h), range(w)):
        if labels[y, x] in void:
            continue
        for dy, dx in steps:
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and labels[ny, nx] not in void \
                    and labels[ny, nx] != labels[y, x]:
                out[y, x] = True
    return out


def _brute_band(labels, width, connectivity):
    boundary = np.argwhere(_brute_boundary(labels, connectivity))
    points = np.argwhere(np.ones(labels.shape, bool))
    valid = ~np.isin(labels, (IGNORE_INDEX, PAD_INDEX)).ravel()
    if len(boundary) == 0:
        return np.zeros(labels.shape, bool)
    dist = np.sqrt(((points[:, None, :] - boundary[None, :, :]) ** 2).sum(-1)).min(1)
    return ((dist <= width) & valid).reshape(labels.shape)


def _blocky_labels(rng, shape, k):
    # Coarse blocks give real regions (boundaries not everywhere), plus some void.
    coarse = rng.integers(0, k, (shape[0] // 4 + 1, shape[1] // 4 + 1))
    labels = np.kron(coarse, np.ones((4, 4), int))[: shape[0], : shape[1]]
    labels[rng.random(shape) < 0.1] = IGNORE_INDEX
    labels[:, -2:] = PAD_INDEX
    return labels


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_boundary_and_band_match_brute_force(seed, connectivity):
    rng = np.random.default_rng(seed)
    labels = _blocky_labels(rng, (13, 17), 3)
    np.testing.assert_array_equal(boundary_mask(labels, connectivity),
                                  _brute_boundary(labels, connectivity))
    bands = trimap_bands(labels, widths=(1, 2.5), connectivity=connectivity)
    for width, band in bands.items():
        np.testing.assert_array_equal(band, _brute_band(labels, width, connectivity))


def test_void_edges_are_not_boundaries_and_no_boundary_gives_empty_band():
    labels = np.zeros((6, 6), int)
    labels[:, 3:] = IGNORE_INDEX
    assert not boundary_mask(labels, 8).any()
    assert not trimap_bands(labels, (100,))[100].any()
    assert trimap_metrics(labels, labels, 2, widths=(4,)) == {4: {"pixels": 0}}


@pytest.mark.parametrize("connectivity", [4, 8])
def test_trimap_metrics_match_brute_force_over_several_images(connectivity):
    rng = np.random.default_rng(1)
    acc = TrimapAccumulator(3, widths=(1, 3), connectivity=connectivity)
    expected = {1: [], 3: []}
    for shape in [(12, 9), (8, 14), (12, 9)]:
        labels = _blocky_labels(rng, shape, 3)
        preds = rng.integers(0, 3, shape)
        acc.update(labels, preds)
        for w in expected:
            band = _brute_band(labels, w, connectivity)
            expected[w].append((labels[band], preds[band]))
    result = acc.result()
    for w, pieces in expected.items():
        labels = np.concatenate([p[0] for p in pieces])
        preds = np.concatenate([p[1] for p in pieces])
        assert result[w]["pixels"] == labels.size
        assert result[w]["pixel_accuracy"] == pytest.approx(np.mean(labels == preds))
        ious = [v for v in _brute_iou(labels, preds, 3) if v is not None]
        assert result[w]["miou"] == pytest.approx(np.mean(ious))


def test_trimap_of_a_stack_equals_accumulating_its_images():
    rng = np.random.default_rng(2)
    labels = np.stack([_blocky_labels(rng, (10, 10), 2) for _ in range(3)])
    preds = rng.integers(0, 2, labels.shape)
    acc = TrimapAccumulator(2, widths=(2,))
    for lab, pred in zip(labels, preds):
        acc.update(lab, pred)
    assert trimap_metrics(labels, preds, 2, widths=(2,)) == acc.result()


# ---------------------------------------------------------------- 3D Dice / HD95

def _brute_surface(mask):
    # medpy: mask minus its erosion by the 6-neighbourhood; outside the array is background.
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for idx in np.argwhere(mask):
        p = tuple(idx + 1)
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            q = list(p)
            q[axis] += step
            if not padded[tuple(q)]:
                out[tuple(idx)] = True
    return out


def _brute_hd95(a, b, spacing):
    sa = np.argwhere(_brute_surface(a)) * spacing
    sb = np.argwhere(_brute_surface(b)) * spacing
    pairwise = np.sqrt(((sa[:, None, :] - sb[None, :, :]) ** 2).sum(-1))
    return np.percentile(np.hstack((pairwise.min(1), pairwise.min(0))), 95)


def _random_blob(rng, shape):
    mask = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        lo = [int(rng.integers(0, s - 1)) for s in shape]
        hi = [int(rng.integers(l + 1, s + 1)) for l, s in zip(lo, shape)]
        mask[tuple(slice(l, h) for l, h in zip(lo, hi))] = True
    mask ^= rng.random(shape) < 0.05            # a few holes and specks
    if not mask.any():
        mask[0, 0, 0] = True
    return mask


@pytest.mark.parametrize("spacing", [None, (10.0, 1.5, 0.7)])
@pytest.mark.parametrize("seed", range(6))
def test_dice_and_hd95_match_brute_force(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (4, 9, 11)
    a, b = _random_blob(rng, shape), _random_blob(rng, shape)
    expected_dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
    d, h = dice_hd95(a, b, spacing)
    assert d == pytest.approx(expected_dice)
    expected_hd95 = _brute_hd95(a, b, np.ones(3) if spacing is None else np.asarray(spacing))
    assert h == pytest.approx(expected_hd95)
    for method in ("edt", "kdtree"):
        assert hd95(a, b, spacing, method) == pytest.approx(expected_hd95)
        assert hd95(b, a, spacing, method) == pytest.approx(expected_hd95)   # symmetric


@pytest.mark.parametrize("spacing", [None, (3.0, 1.0, 0.5)])
def test_edt_and_kdtree_give_the_same_surface_distances(spacing):
    rng = np.random.default_rng(11)
    a, b = _random_blob(rng, (6, 20, 18)), _random_blob(rng, (6, 20, 18))
    b[rng.random(b.shape) < 0.01] = True         # scattered specks, as from a weak network
    for forward, backward in zip(symmetric_surface_distances(a, b, spacing, "edt"),
                                 symmetric_surface_distances(a, b, spacing, "kdtree")):
        np.testing.assert_allclose(forward, backward, rtol=1e-12)
    with pytest.raises(ValueError, match="method"):
        symmetric_surface_distances(a, b, method="fast")


def test_small_objects_far_from_the_array_border_are_exact():
    # The distance transforms run on a crop around the objects; check a case where
    # the crop matters (objects in the middle of a large array, not touching it).
    a = np.zeros((12, 40, 40), bool)
    b = np.zeros_like(a)
    a[5:8, 10:15, 10:16] = True
    b[4:8, 12:18, 11:14] = True
    for method in ("edt", "kdtree"):
        assert hd95(a, b, method=method) == pytest.approx(_brute_hd95(a, b, np.ones(3)))
        np.testing.assert_allclose(np.sort(surface_distances(a, b, method=method)),
                                   np.sort(surface_distances(a[3:9, 8:20, 8:20],
                                                             b[3:9, 8:20, 8:20], method="edt")))


def test_isotropic_spacing_scales_hd95():
    rng = np.random.default_rng(7)
    a, b = _random_blob(rng, (5, 8, 8)), _random_blob(rng, (5, 8, 8))
    assert hd95(a, b, spacing=2.5) == pytest.approx(2.5 * hd95(a, b))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, spacing=(1.0, 2.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, spacing=(1.0, 0.0, 1.0))


def test_wsl4mis_empty_class_convention():
    full = np.zeros((2, 5, 5), bool)
    full[:, 1:4, 1:4] = True
    empty = np.zeros_like(full)
    assert dice_hd95(empty, full) == (0.0, 0.0)      # missed class: (0, 0), as WSL4MIS
    assert dice_hd95(empty, empty) == (0.0, 0.0)     # absent everywhere: (0, 0) too
    assert dice(empty, empty) == 0.0
    with pytest.raises(ValueError, match="ground truth does not"):
        dice_hd95(full, empty)                       # medpy raises here


def test_volume_metrics_policies():
    label = np.zeros((2, 6, 6), int)
    label[:, 1:3, 1:3] = 1
    pred = label.copy()
    pred[:, 4:6, 4:6] = 3                             # class 3 absent from the ground truth
    with pytest.raises(ValueError, match="class 3"):
        volume_metrics(pred, label, 4)
    skipped = volume_metrics(pred, label, 4, absent_class="skip")
    assert skipped == {"dice": [1.0, None, None], "hd95": [0.0, None, None]}
    strict = volume_metrics(label, label, 4)         # class 2, 3 absent from both
    assert strict == {"dice": [1.0, 0.0, 0.0], "hd95": [0.0, 0.0, 0.0]}
    with pytest.raises(ValueError, match="absent_class"):
        volume_metrics(label, label, 4, absent_class="nan")
