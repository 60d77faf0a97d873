"""Weak labels from masks: scribbles against brute-force geometry, shortening against
hand-computed geodesic positions, tags and size bits against direct counts."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from keras_regseg.data.spec import IGNORE_INDEX, PAD_INDEX
from keras_regseg.data.weak_labels import (
    scribbles_from_mask,
    shorten_scribbles,
    size_bits_from_mask,
    tags_from_mask,
)

EIGHT = np.ones((3, 3), bool)
HYPOTHESIS = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- helpers

@st.composite
def masks(draw, max_classes=4, void=True):
    """Blocky random masks (coarse labels upsampled), some with ignore/pad pixels."""
    num_classes = draw(st.integers(1, max_classes))
    coarse = draw(hnp.arrays(np.int32, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                             elements=st.integers(0, num_classes - 1)))
    scale = draw(st.integers(1, 4))
    mask = np.kron(coarse, np.ones((scale, scale), np.int32))
    if void and draw(st.booleans()):
        holes = draw(hnp.arrays(np.int32, mask.shape,
                                elements=st.sampled_from([0, 0, 0, IGNORE_INDEX, PAD_INDEX])))
        mask = np.where(holes > 0, holes, mask)
    return mask, num_classes


def regions_of(mask, num_classes):
    """List of boolean masks, one per 8-connected region of each class."""
    out = []
    for k in range(num_classes):
        labeled, n = ndimage.label(mask == k, structure=EIGHT)
        out += [labeled == i for i in range(1, n + 1)]
    return out


def brute_depth(mask, num_classes, margin):
    """1 + largest m <= margin with the (2m+1)^2 window inside the image and of one class."""
    h, w = mask.shape
    depth = np.zeros(mask.shape, int)
    for y in range(h):
        for x in range(w):
            if mask[y, x] >= num_classes:
                continue
            depth[y, x] = 1
            for m in range(1, margin + 1):
                if y - m < 0 or x - m < 0 or y + m >= h or x + m >= w:
                    break
                if np.any(mask[y - m:y + m + 1, x - m:x + m + 1] != mask[y, x]):
                    break
                depth[y, x] = m + 1
    return depth


def stroke_neighbour_counts(stroke):
    """Number of 8-neighbours of each pixel inside the boolean ``stroke``."""
    padded = np.pad(stroke, 1).astype(int)
    counts = sum(padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    return counts


def monotone_path(start_row, steps, col0=1):
    """Pixels of an 8-path moving one column right per step, rows changing by ``steps``."""
    rows = start_row + np.concatenate([[0], np.cumsum(np.asarray(steps, int))]).astype(int)
    cols = col0 + np.arange(len(rows))
    return rows, cols


# ---------------------------------------------------------------- scribbles_from_mask

@HYPOTHESIS
@given(masks(), st.integers(0, 3), st.integers(1, 6))
def test_scribbles_lie_inside_their_regions_and_every_region_gets_one(case, margin, min_area):
    mask, num_classes = case
    weak = scribbles_from_mask(mask, num_classes, margin=margin, min_area=min_area)
    labeled = weak != IGNORE_INDEX
    assert weak.dtype == np.int32 and weak.shape == mask.shape
    np.testing.assert_array_equal(weak == PAD_INDEX, mask == PAD_INDEX)
    seeds = labeled & (weak != PAD_INDEX)
    np.testing.assert_array_equal(weak[seeds], mask[seeds])
    depth = brute_depth(mask, num_classes, margin)
    for region in regions_of(mask, num_classes):
        stroke = seeds & region
        if region.sum() < min_area:
            assert not stroke.any()
            continue
        # One connected, one-pixel-thin stroke: a simple path (ends have 1 neighbour).
        assert ndimage.label(stroke, structure=EIGHT)[1] == 1
        counts = stroke_neighbour_counts(stroke)[stroke]
        if stroke.sum() == 1:
            assert counts.tolist() == [0]
        else:
            assert sorted(counts.tolist())[:2] == [1, 1] and counts.max() <= 2
        # Away from the boundary by margin, or as far as the region allows.
        region_margin = min(margin, depth[region].max() - 1)
        assert depth[stroke].min() > region_margin


@HYPOTHESIS
@given(masks(void=False), st.integers(2, 3), st.integers(0, 2**16))
def test_wider_scribbles_grow_the_thin_ones_inside_the_region(case, width, seed):
    mask, num_classes = case
    thin = scribbles_from_mask(mask, num_classes, margin=1)
    wide = scribbles_from_mask(mask, num_classes, margin=1, width=width)
    ranged = scribbles_from_mask(mask, num_classes, margin=1, width=(1, 3), rng=seed)
    np.testing.assert_array_equal(ranged, scribbles_from_mask(mask, num_classes, margin=1,
                                                              width=(1, 3), rng=seed))
    for result in (wide, ranged):
        labeled = result != IGNORE_INDEX
        np.testing.assert_array_equal(result[labeled], mask[labeled])
        assert np.all(labeled[thin != IGNORE_INDEX])            # contains the thin stroke
        for region in regions_of(mask, num_classes):
            near_thin = ndimage.binary_dilation(region & (thin != IGNORE_INDEX), EIGHT)
            assert np.all(near_thin[labeled & region])          # grown by at most 1 pixel


def test_batch_gives_the_same_scribbles_as_single_masks():
    rng = np.random.default_rng(0)
    batch = np.kron(rng.integers(0, 3, (4, 4, 4)), np.ones((1, 5, 5), np.int64))
    batch[1, :3] = PAD_INDEX
    together = scribbles_from_mask(batch, 3, margin=2, width=2)
    alone = np.stack([scribbles_from_mask(m, 3, margin=2, width=2) for m in batch])
    np.testing.assert_array_equal(together, alone)


def test_disk_scribble_crosses_the_centre():
    yy, xx = np.mgrid[0:31, 0:31]
    mask = ((yy - 15) ** 2 + (xx - 15) ** 2 <= 10 ** 2).astype(np.int32)
    weak = scribbles_from_mask(mask, 2, margin=2)
    rows, cols = np.nonzero(weak == 1)
    assert np.hypot(rows - 15, cols - 15).min() <= 1.0
    # A diameter of the eroded disk (radius 8): its ends lie far apart.
    assert np.ptp(rows) ** 2 + np.ptp(cols) ** 2 >= 14 ** 2


def test_scribbles_follow_a_long_corridor_not_its_walls():
    mask = np.zeros((15, 40), np.int32)
    mask[4:11, 2:38] = 1                                  # 7 rows: centre row 7
    weak = scribbles_from_mask(mask, 2, margin=1)
    rows, cols = np.nonzero(weak == 1)
    assert np.ptp(cols) >= 30
    middle = (cols >= 10) & (cols <= 29)
    assert np.all(rows[middle] == 7)


def test_void_only_mask_gives_no_scribbles():
    mask = np.full((6, 6), IGNORE_INDEX)
    mask[0] = PAD_INDEX
    weak = scribbles_from_mask(mask, 3)
    assert np.all(weak[1:] == IGNORE_INDEX) and np.all(weak[0] == PAD_INDEX)


def test_custom_ignore_index_is_skipped_and_written():
    mask = np.full((12, 12), 4)                            # ACDC style: 4 = unannotated
    mask[2:10, 2:10] = 1
    weak = scribbles_from_mask(mask, 4, ignore_index=4, margin=1)
    assert set(np.unique(weak).tolist()) == {1, 4}


@pytest.mark.parametrize("kwargs, match", [
    (dict(mask=np.zeros(5, int)), "shape"),
    (dict(mask=np.zeros((1, 2, 3, 4), int)), "shape"),
    (dict(mask=np.zeros((4, 4), np.float32)), "integer"),
    (dict(mask=np.full((4, 4), 3)), "value 3"),
    (dict(mask=np.full((4, 4), -1)), "value -1"),
    (dict(mask=np.full((4, 4), 2**33)), "value 8589934592"),
    (dict(num_classes=0), "num_classes"),
    (dict(num_classes=255), "num_classes"),
    (dict(num_classes=2.0), "num_classes"),
    (dict(ignore_index=1), "ignore_index"),
    (dict(margin=-1), "margin"),
    (dict(width=0), "width"),
    (dict(width=(3, 1)), "low <= high"),
    (dict(min_area=0), "min_area"),
])
def test_scribbles_reject_bad_input(kwargs, match):
    args = dict(mask=np.zeros((4, 4), int), num_classes=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        scribbles_from_mask(**args)


# ---------------------------------------------------------------- shorten_scribbles

@HYPOTHESIS
@given(st.lists(st.integers(-1, 1), min_size=0, max_size=25), st.floats(0, 1),
       st.integers(0, 5))
def test_shortening_a_thin_path_keeps_its_middle_part(steps, ratio, cls):
    """Brute force: on a simple path, geodesic position = cumulative step length."""
    rows, cols = monotone_path(30, steps)
    weak = np.full((61, len(rows) + 2), IGNORE_INDEX, np.int32)
    weak[rows, cols] = cls
    position = np.concatenate([[0.0], np.cumsum([math.sqrt(2) if s else 1.0 for s in steps])])
    length = position[-1]
    offset = np.abs(position - (length - position))
    tied = np.flatnonzero(offset <= offset.min() + 1e-6)
    click = tied[np.argmin(rows[tied] * weak.shape[1] + cols[tied])]  # lowest raster index
    keep = np.minimum(position, length - position) >= (1 - ratio) / 2 * length - 1e-6
    keep = keep if ratio > 0 else np.zeros_like(keep)
    keep[click] = True
    if ratio == 1:
        keep[:] = True
    expected = np.full_like(weak, IGNORE_INDEX)
    expected[rows[keep], cols[keep]] = cls
    np.testing.assert_array_equal(shorten_scribbles(weak, ratio), expected)


def test_shortened_line_has_the_asked_geodesic_length():
    weak = np.full((5, 45), IGNORE_INDEX, np.int32)
    weak[2, 2:43] = 1                                     # 41 pixels, length 40
    for ratio, expected_length in ((1.0, 40), (0.8, 32), (0.5, 20), (0.3, 12), (0.0, 0)):
        cols = np.flatnonzero(shorten_scribbles(weak, ratio)[2] == 1)
        assert cols.max() - cols.min() == expected_length
        assert cols.min() + cols.max() == 2 + 42           # centred


@HYPOTHESIS
@given(masks(), st.lists(st.floats(0, 1), min_size=2, max_size=4), st.integers(1, 3))
def test_shortening_is_monotone_and_ends_in_one_click_per_scribble(case, ratios, width):
    mask, num_classes = case
    weak = scribbles_from_mask(mask, num_classes, margin=1, width=width)
    seeds = (weak != IGNORE_INDEX) & (weak != PAD_INDEX)
    np.testing.assert_array_equal(shorten_scribbles(weak, 1.0), weak)
    previous = seeds
    for ratio in sorted(ratios, reverse=True) + [0.0]:
        short = shorten_scribbles(weak, ratio)
        kept = (short != IGNORE_INDEX) & (short != PAD_INDEX)
        np.testing.assert_array_equal(short[kept], weak[kept])
        np.testing.assert_array_equal(short == PAD_INDEX, weak == PAD_INDEX)
        assert np.all(previous[kept])                      # a subset of the longer one
        previous = kept
    # Ratio 0: exactly one pixel in every scribble.
    for k in range(num_classes):
        labeled, n = ndimage.label(weak == k, structure=EIGHT)
        clicks = labeled[previous & (weak == k)]
        assert sorted(clicks.tolist()) == list(range(1, n + 1))


def test_click_radius_draws_a_disk_inside_the_scribble():
    weak = np.full((9, 30), IGNORE_INDEX, np.int32)
    weak[3:6, 2:28] = 2                                   # a thick stroke
    click = np.argwhere(shorten_scribbles(weak, 0.0) == 2)
    disk = shorten_scribbles(weak, 0.0, click_radius=2)
    assert len(click) == 1
    (cy, cx), = click
    yy, xx = np.mgrid[0:9, 0:30]
    expected = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 4) & (weak == 2)
    np.testing.assert_array_equal(disk == 2, expected)
    assert cy == 4 and cx in (14, 15)                      # the middle of the stroke


def test_shortening_keeps_custom_ignore_value():
    weak = np.full((3, 13), 4, np.int32)
    weak[1, 1:12] = 0                                     # length 10: keep positions 3..7
    short = shorten_scribbles(weak, 0.5, ignore_index=4)
    assert set(np.unique(short).tolist()) == {0, 4} and (short == 0).sum() == 5


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_shortening_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        shorten_scribbles(np.zeros((3, 3), int), ratio)


@pytest.mark.parametrize("weak, kwargs, match", [
    (np.zeros((3,), int), {}, "shape"),
    (np.zeros((3, 3), float), {}, "integer"),
    (np.full((3, 3), 300), {}, "value 300"),
    (np.zeros((3, 3), int), dict(click_radius=-1), "click_radius"),
])
def test_shortening_rejects_bad_input(weak, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        shorten_scribbles(weak, 0.5, **kwargs)


# ---------------------------------------------------------------- tags and size bits

@HYPOTHESIS
@given(masks(max_classes=5), st.floats(0, 1))
@example((np.zeros((1, 1), np.int32), 1), 0.9999999999999999)   # float32 rounds it to 1
def test_tags_and_size_bits_match_direct_counts(case, threshold):
    mask, num_classes = case
    tags = tags_from_mask(mask, num_classes)
    bits = size_bits_from_mask(mask, num_classes, threshold)
    image_pixels = max((mask != PAD_INDEX).sum(), 1)
    for k in range(num_classes):
        assert tags[k] == float((mask == k).any())
        assert bits[k] == float((mask == k).sum() / image_pixels > threshold)
    assert tags.dtype == bits.dtype == np.float32
    batch = np.stack([mask, np.zeros_like(mask)])
    np.testing.assert_array_equal(tags_from_mask(batch, num_classes)[0], tags)
    np.testing.assert_array_equal(size_bits_from_mask(batch, num_classes, threshold)[0], bits)


def test_size_bits_need_strictly_more_than_the_threshold_of_the_unpadded_image():
    mask = np.zeros((10, 10), np.int32)
    mask[0, :] = 1                                        # exactly 10% of the image
    mask[1, :5] = 2                                       # 5%
    assert size_bits_from_mask(mask, 3).tolist() == [1.0, 0.0, 0.0]
    mask[5:, :] = PAD_INDEX                               # now 20% and 10% of 50 pixels
    assert size_bits_from_mask(mask, 3).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("function, kwargs, match", [
    (tags_from_mask, dict(mask=np.full((2, 2), 5)), "value 5"),
    (tags_from_mask, dict(mask=np.zeros((2, 2, 2, 2), int)), "shape"),
    (size_bits_from_mask, dict(threshold=1.5), "threshold"),
    (size_bits_from_mask, dict(num_classes=-1), "num_classes"),
])
def test_tags_and_size_bits_reject_bad_input(function, kwargs, match):
    args = dict(mask=np.zeros((2, 2), int), num_classes=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        function(**args)
