"""CCNN constraint builder: the paper's tag and size constraints, boxes, regions, bad input."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_regseg.methods import ccnn_constraints
from keras_regseg.methods.ccnn_constraints import (
    HARD_SLACK, TagConstraintConfig, box_masks, tag_constraints, tags_from_class_lists)


def expected_tag_bounds(tags, size_bits=None, config=TagConstraintConfig()):
    """The paper's rules written out per image and class, as plain loops."""
    batch, classes = tags.shape
    lower, lower_slack = np.zeros((batch, classes)), np.zeros((batch, classes))
    upper, upper_slack = np.ones((batch, classes)), np.zeros((batch, classes))
    forbidden = np.zeros((batch, classes), bool)
    bg = config.background_class
    for b in range(batch):
        present = tags[b] > 0.5
        if not present.any():
            continue
        has_foreground = any(present[k] for k in range(classes) if k != bg)
        for k in range(classes):
            if not present[k]:
                forbidden[b, k] = True
            elif k == bg:
                lower[b, k], lower_slack[b, k] = config.background_lower, config.background_slack
                if has_foreground:
                    upper[b, k] = config.background_upper
                    upper_slack[b, k] = config.background_slack
            elif size_bits is None:
                lower[b, k], lower_slack[b, k] = config.foreground_lower, config.foreground_slack
            elif size_bits[b, k] > 0.5:
                lower[b, k], lower_slack[b, k] = config.large_lower, config.foreground_slack
            else:
                upper[b, k], upper_slack[b, k] = config.small_upper, config.foreground_slack
    return lower, lower_slack, upper, upper_slack, forbidden


@pytest.mark.parametrize("with_size", [False, True])
@pytest.mark.parametrize("background", [0, 2, None])
def test_tag_constraints_follow_the_paper_rules(with_size, background):
    rng = np.random.default_rng(1)
    tags = (rng.random((40, 5)) < 0.5).astype(np.float32)
    tags[:3] = [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0]]   # untagged, one class
    size_bits = (rng.random((40, 5)) < 0.5).astype(np.float32) if with_size else None
    config = TagConstraintConfig(background_class=background)
    got = tag_constraints(tags, size_bits, config)
    want = expected_tag_bounds(tags, size_bits, config)
    for name, value in zip(("lower", "lower_slack", "upper", "upper_slack"), want[:4]):
        np.testing.assert_allclose(getattr(got, name).numpy(), value, rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(got.forbidden.numpy()[:, 0, 0, :], want[4])
    assert got.forbidden.shape == (40, 1, 1, 5) and got.regions is None


def test_paper_defaults():
    config = TagConstraintConfig()
    assert (config.foreground_lower, config.foreground_slack) == (0.05, 2.0)
    assert (config.background_lower, config.background_upper) == (0.3, 0.7)
    assert (config.large_lower, config.small_upper) == (0.1, 0.01)
    assert config.background_slack == HARD_SLACK
    assert TagConstraintConfig.from_config(config.get_config()) == config


@pytest.mark.parametrize("field,value,message", [
    ("foreground_lower", 1.5, "foreground_lower is a fraction"),
    ("small_upper", -0.1, "small_upper is a fraction"),
    ("foreground_slack", -1.0, "foreground_slack must be finite"),
    ("background_slack", np.inf, "background_slack must be finite"),
    ("background_class", -1, "background_class must be a class index"),
    ("background_class", 1.5, "background_class must be a class index"),
    ("background_lower", 0.9, "exceeds background_upper"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TagConstraintConfig(**{field: value})


def test_tag_input_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"tags must have shape \[B, K\]"):
        tag_constraints(np.ones((2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="background_class 4 is outside"):
        tag_constraints(np.ones((2, 3), np.float32), config=TagConstraintConfig(background_class=4))
    with pytest.raises(ValueError, match="size_bits must have the shape of tags"):
        tag_constraints(np.ones((2, 3), np.float32), size_bits=np.ones((2, 4), np.float32))


def test_tags_from_class_lists():
    np.testing.assert_array_equal(tags_from_class_lists([[2, 0], [], [1, 1]], 3),
                                  [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert tags_from_class_lists([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match=r"image 1: tag 3 is not a class index in \[0, 3\)"):
        tags_from_class_lists([[0], [3]], 3)
    with pytest.raises(ValueError, match=r"image 0: tag -1"):
        tags_from_class_lists([[-1]], 3)
    with pytest.raises(ValueError, match="tag 0.5"):
        tags_from_class_lists([[0.5]], 3)


def test_box_masks_match_supersampled_rasterization():
    rng = np.random.default_rng(3)
    corners = np.sort(rng.random((2, 3, 2, 2)), axis=2)             # [B, R, (start, stop), (y, x)]
    boxes = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1).astype(np.float32)
    boxes[0, 0] = [0.0, 0.0, 1.0, 1.0]                              # the whole image
    h, w, fine = 5, 7, 140
    got = box_masks(boxes, (h, w)).numpy()
    # Brute force: sample a fine grid of points, count those inside each box per cell.
    ys = (np.arange(h * fine) + 0.5) / (h * fine)
    xs = (np.arange(w * fine) + 0.5) / (w * fine)
    y0, x0, y1, x1 = (boxes[..., i, None, None] for i in range(4))
    inside = ((ys[:, None] >= y0) & (ys[:, None] <= y1) & (xs[None, :] >= x0) & (xs[None, :] <= x1))
    want = inside.reshape(2, 3, h, fine, w, fine).mean(axis=(3, 5))
    np.testing.assert_allclose(got, want, atol=2.0 / fine)
    np.testing.assert_allclose(got[0, 0], 1.0, rtol=1e-6)


def test_boxes_bound_their_area_and_suppress_their_class_outside():
    constraints = tag_constraints([[1.0, 1.0, 1.0]]).with_boxes(
        [[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]], [[1, 1, -1]],
        grid_shape=(4, 4), inside_fraction=0.75, slack=3.0)
    regions = constraints.regions
    np.testing.assert_allclose(regions.bounds.numpy(), [[0.75 * 4 / 16, 0.75 * 4 / 16, 0.0]])
    np.testing.assert_allclose(regions.slacks.numpy(), [[3.0, 3.0, 0.0]])   # padding: off
    np.testing.assert_allclose(regions.senses.numpy(), 1.0)
    assert regions.masks.numpy()[0, 2].max() == 0.0
    forbidden = constraints.forbidden.numpy()[0]
    union = np.zeros((4, 4), bool)
    union[:2, :2] = union[2:, 2:] = True
    np.testing.assert_array_equal(forbidden[..., 1], ~union)         # class 1 outside its boxes
    assert not forbidden[..., [0, 2]].any()                          # other classes untouched


def test_region_bounds_merge_and_reject_bad_input():
    base = tag_constraints([[1.0, 1.0], [1.0, 1.0]])
    mask = np.ones((2, 1, 3, 3), np.float32)
    mask[:, :, 0] = 0.0
    once = base.with_region_bounds(mask, [[1], [0]], fraction=0.5, sense="upper", slack=1.0)
    twice = once.with_region_bounds(mask, [[0], [1]], fraction=[[0.2], [0.4]])
    np.testing.assert_allclose(twice.regions.bounds.numpy(),
                               [[0.5 * 6 / 9, 0.2 * 6 / 9], [0.5 * 6 / 9, 0.4 * 6 / 9]], rtol=1e-6)
    np.testing.assert_array_equal(twice.regions.senses.numpy(), [[-1, 1], [-1, 1]])
    np.testing.assert_array_equal(twice.regions.classes.numpy(), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"region classes must be in \[0, 2\)"):
        base.with_region_bounds(mask, [[2], [0]], 0.5)
    with pytest.raises(ValueError, match="sense must be 'lower' or 'upper'"):
        base.with_region_bounds(mask, [[1], [0]], 0.5, sense=">=")
    with pytest.raises(ValueError, match=r"masks must have shape \[B, R, h, w\]"):
        base.with_region_bounds(mask[:, 0], [[1], [0]], 0.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="fraction must be <= 1"):
        base.with_region_bounds(mask, [[1], [0]], 1.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="region masks must be <= 1"):
        base.with_region_bounds(2.0 * mask, [[1], [0]], 0.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="box coordinates must be in"):
        base.with_boxes([[[0.0, 0.0, 1.5, 1.0]], [[0.0, 0.0, 1.0, 1.0]]], [[1], [1]], (3, 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="y0 <= y1"):
        base.with_boxes([[[0.6, 0.0, 0.5, 1.0]], [[0.0, 0.0, 1.0, 1.0]]], [[1], [1]], (3, 3))
    with pytest.raises(ValueError, match=r"forbidden must have shape \[B, h, w, 2\]"):
        base.with_suppression(np.zeros((2, 3, 3, 3), bool))


def test_constraints_build_inside_a_graph():
    @tf.function
    def build(tags, boxes, classes):
        return tag_constraints(tags).with_boxes(boxes, classes, grid_shape=(4, 4))

    built = build(tf.constant([[1.0, 0.0, 1.0]]), tf.constant([[[0.0, 0.0, 0.5, 1.0]]]),
                  tf.constant([[2]]))
    eager = tag_constraints([[1.0, 0.0, 1.0]]).with_boxes(
        [[[0.0, 0.0, 0.5, 1.0]]], [[2]], grid_shape=(4, 4))
    np.testing.assert_array_equal(built.forbidden.numpy(), eager.forbidden.numpy())
    np.testing.assert_allclose(built.regions.bounds.numpy(), eager.regions.bounds.numpy())


def test_docstring_examples():
    result = doctest.testmod(ccnn_constraints)
    assert result.attempted > 5 and result.failed == 0
