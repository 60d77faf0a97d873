"""CCNN with what users have: seeds, sizes and boxes beside tags (targets, constraints, loss)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers
from keras_regseg.data.augment import Augmentation
from keras_regseg.data.base import InMemorySource
from keras_regseg.data.pipeline import DictTargets, make_training_dataset, rasterize_boxes
from keras_regseg.data.weak_labels import boxes_from_mask, class_sizes_from_mask
from keras_regseg.losses.cross_entropy import PartialCrossEntropy
from keras_regseg.methods.ccnn_constraints import HARD_SLACK, tag_constraints
from keras_regseg.methods.ccnn_dual import solve_dual
from keras_regseg.methods.ccnn_model import CCNNModel
from keras_regseg.training.config import ConfigError, TrainConfig

CLASSES = 3


def two_object_masks(count=4, size=16):
    """Background with a class-1 rectangle and a class-2 square in each image."""
    masks = np.zeros((count, size, size), np.int32)
    masks[:, 2:7, 1:12] = 1
    masks[:, 9:15, 8:14] = 2
    return masks


def test_boxes_from_mask_one_box_per_component_largest_kept():
    mask = np.zeros((10, 10), np.int32)
    mask[0:2, 0:2] = 1          # 4 pixels
    mask[5:10, 5:10] = 1        # 25 pixels, a second component of class 1
    mask[0, 9] = 2              # 1 pixel
    boxes, classes = boxes_from_mask(mask, 3, max_boxes=2)
    assert classes.tolist() == [1, 1]
    np.testing.assert_allclose(boxes, [[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.2, 0.2]])
    with pytest.raises(ValueError, match="max_boxes"):
        boxes_from_mask(mask, 3, max_boxes=0)


def test_rasterized_box_of_a_component_covers_exactly_its_bounding_rectangle():
    mask = two_object_masks(1)[0]
    boxes, classes = boxes_from_mask(mask, CLASSES, max_boxes=3)
    raster = rasterize_boxes(tf.constant(boxes), 16, 16).numpy()
    for r, label in enumerate(classes):
        if label < 0:
            assert raster[..., r].sum() == 0
            continue
        rows, cols = np.nonzero(mask == label)
        expected = np.zeros((16, 16), np.int32)
        expected[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = 1
        np.testing.assert_array_equal(raster[..., r], expected)


def test_dict_targets_sizes_and_boxes_follow_the_augmentation():
    masks = two_object_masks()
    weak = np.full_like(masks, 255)
    weak[:, 4, 4], weak[:, 12, 10] = 1, 2
    source = InMemorySource(np.random.default_rng(0).random((4, 16, 16, 1), np.float32),
                            weak, num_classes=CLASSES, dense_labels=masks)
    augmentation = Augmentation(rot90=True, hflip=True, vflip=True)
    dataset = make_training_dataset(
        source, batch_size=4, seed=3, augmentation=augmentation, crop_size=12,
        target=DictTargets(("seeds", "sizes", "boxes", "tags"), max_boxes=3))
    _, y = next(iter(dataset))
    assert sorted(y) == ["box_classes", "box_masks", "seeds", "sizes", "tags"]
    seeds, masks_out = y["seeds"].numpy(), y["box_masks"].numpy()
    for b in range(4):
        # Seeds moved with the image: each seed class is still inside a box of its class.
        for label in (1, 2):
            at = np.argwhere(seeds[b] == label)
            boxes_of_label = [r for r in range(3) if y["box_classes"][b, r] == label]
            for row, col in at:
                assert any(masks_out[b, row, col, r] == 1 for r in boxes_of_label)
        # Sizes are fractions of the augmented, cropped image (padding excluded) and sum to 1.
        assert y["sizes"][b].numpy().sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(y["tags"].numpy(), np.ones((4, 3)))


def test_size_bounds_hold_on_a_feasible_problem():
    logits = np.zeros((2, 8, 8, 3), np.float32)
    logits[..., 0] = 4.0                      # the network says "all background"
    sizes = np.array([[0.7, 0.2, 0.1], [0.9, 0.1, 0.0]], np.float32)
    constraints = tag_constraints(np.zeros((2, 3), np.float32)).with_size_bounds(
        sizes, margin=0.1, slack=1000.0)
    solution = solve_dual(logits, constraints, tolerance=1e-4, jit_compile=False)
    mass = solution.latent.numpy().mean(axis=(1, 2))
    assert np.all(mass >= 0.9 * sizes - 2e-3) and np.all(mass <= 1.1 * sizes + 2e-3)
    assert mass[1, 2] == 0.0                  # size 0: suppressed exactly


def test_box_constraints_hold_on_a_feasible_problem():
    logits = np.zeros((1, 8, 8, 2), np.float32)
    logits[..., 0] = 3.0
    box = np.zeros((1, 1, 8, 8), np.float32)
    box[0, 0, 2:6, 1:5] = 1.0                 # 16 of 64 cells
    constraints = tag_constraints(np.ones((1, 2), np.float32)).with_box_masks(
        box, [[1]], inside_fraction=0.75, slack=10.0)
    solution = solve_dual(logits, constraints, tolerance=1e-4, jit_compile=False)
    latent = solution.latent.numpy()[0, ..., 1]
    assert latent[box[0, 0] > 0].mean() >= 0.75 - 2e-3
    assert latent[box[0, 0] == 0].max() == 0.0


def test_a_small_box_is_met_as_closely_as_the_image():
    # A box of 16 of 4096 cells: its bound's violation is read against the box, so a
    # tolerance of 1e-3 leaves 0.1 % of the box short, not 0.1 % of the image (4 cells).
    logits = np.zeros((1, 64, 64, 2), np.float32)
    logits[..., 0] = 4.0
    box = np.zeros((1, 1, 64, 64), np.float32)
    box[0, 0, 10:14, 20:24] = 1.0
    constraints = tag_constraints(np.ones((1, 2), np.float32)).with_box_masks(
        box, [[1]], inside_fraction=0.7, slack=HARD_SLACK)
    solution = solve_dual(logits, constraints, tolerance=1e-3, jit_compile=False)
    latent = solution.latent.numpy()[0, ..., 1]
    assert latent[box[0, 0] > 0].mean() >= 0.7 * (1 - 1e-3) - 1e-6
    assert bool(solution.converged.numpy()[0])


def test_a_soft_box_bound_caps_how_far_a_box_lifts_its_class():
    logits = np.zeros((1, 16, 16, 2), np.float32)
    logits[..., 0] = 4.0
    box = np.zeros((1, 1, 16, 16), np.float32)
    box[0, 0, 4:8, 4:8] = 1.0

    def box_mass(slack):   # (no tags: the box bound is the only one)
        constraints = tag_constraints(np.zeros((1, 2), np.float32)).with_box_masks(
            box, [[1]], inside_fraction=0.7, slack=slack)
        latent = solve_dual(logits, constraints, jit_compile=False).latent.numpy()[0, ..., 1]
        return latent[box[0, 0] > 0].mean()

    # Slack 2 adds at most 2 logits: sigmoid(2 - 4) = 0.12 of the box, far from 0.7.
    assert box_mass(2.0) < 0.2
    assert box_mass(HARD_SLACK) >= 0.7 - 1e-3


def test_balanced_boxes_weigh_box_cells_and_the_rest_as_two_terms():
    images, _ = seeded_batch()
    boxes = [boxes_from_mask(m, CLASSES, 3) for m in two_object_masks()]
    y = {"box_classes": np.stack([c for _, c in boxes]),
         "box_masks": np.stack([rasterize_boxes(tf.constant(b), 16, 16).numpy()
                                for b, _ in boxes]).astype(np.float32)}
    model = CCNNModel(helpers.tiny_network(0, 16), downscale=2, solver_jit_compile=False)
    assert model.balance_boxes   # the default
    logits = model(images)
    latent, coarse, _ = model.latent_targets(y, logits)
    latent_ce = -np.sum(latent.numpy() * tf.nn.log_softmax(coarse).numpy(), axis=-1)
    in_box = model.coarse_mean(y["box_masks"]).numpy().max(-1) > 0
    assert 0 < in_box.mean() < 0.7
    loss = model.loss_terms(y, logits)["loss"]
    assert float(tf.reduce_mean(loss)) == pytest.approx(
        latent_ce[in_box].mean() + latent_ce[~in_box].mean(), rel=1e-5)
    # Off: one mean over all cells.
    model.balance_boxes = False
    assert float(tf.reduce_mean(model.loss_terms(y, logits)["loss"])) == pytest.approx(
        latent_ce.mean(), rel=1e-5)


def seeded_batch():
    masks = two_object_masks()
    seeds = np.full_like(masks, 255)
    seeds[:, 3, 2:10] = 1
    seeds[:, 11, 9:13] = 2
    seeds[:, 0, :] = 0
    sizes = class_sizes_from_mask(masks, CLASSES)
    images = (masks[..., None] / 2.0 + np.random.default_rng(1).normal(
        0, 0.1, masks.shape + (1,))).astype(np.float32)
    return images, {"seeds": seeds, "sizes": sizes}


def test_seeds_are_kept_exactly_and_the_loss_is_pce_plus_latent_ce_off_seeds():
    images, y = seeded_batch()
    model = CCNNModel(helpers.tiny_network(0, 16), downscale=2, solver_jit_compile=False)
    logits = model(images)
    latent, coarse, _ = model.latent_targets(y, logits)
    seeded, pinned = model.seed_cells(y["seeds"])
    latent, pinned, seeded = latent.numpy(), pinned.numpy(), seeded.numpy()
    one_class = pinned < CLASSES
    assert one_class.sum() > 10
    np.testing.assert_array_equal(latent[one_class].argmax(-1), pinned[one_class])
    np.testing.assert_allclose(latent[one_class].max(-1), 1.0)

    terms = model.loss_terms(y, logits)
    latent_ce = -np.sum(latent * tf.nn.log_softmax(coarse).numpy(), axis=-1)
    expected = (float(PartialCrossEntropy()(y["seeds"], logits))
                + latent_ce[~seeded].mean())
    assert float(tf.reduce_mean(terms["loss"])) == pytest.approx(expected, rel=1e-5)


def small_network():
    """Two 3x3 layers of 16 channels: enough to place the objects, unlike helpers'."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(hidden)
    return keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1)(hidden))


def accuracy_after_fit(y, steps=100):
    model = CCNNModel(small_network(), downscale=2, solver_jit_compile=False,
                      box_fraction=[0.75, 0.9, 0.9])
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=False)
    history = model.fit(seeded_batch()[0], y, batch_size=4, epochs=steps, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    predicted = model.predict(seeded_batch()[0], verbose=0).argmax(-1)
    return (predicted == two_object_masks()).mean()


def test_sizes_and_boxes_beside_the_seeds_beat_the_seeds_alone():
    _, y = seeded_batch()
    boxes = [boxes_from_mask(m, CLASSES, 3) for m in two_object_masks()]
    with_boxes = {"seeds": y["seeds"], "box_classes": np.stack([c for _, c in boxes]),
                  "box_masks": np.stack([rasterize_boxes(tf.constant(b), 16, 16).numpy()
                                         for b, _ in boxes]).astype(np.float32)}
    seeds_only = accuracy_after_fit({"seeds": y["seeds"]})   # pCE: no constraint
    assert accuracy_after_fit(y) > max(0.8, seeds_only + 0.1)
    assert accuracy_after_fit(with_boxes) > max(0.8, seeds_only + 0.1)


def test_bad_ccnn_supervision_is_refused_clearly():
    config = TrainConfig.from_yaml("configs/ccnn_synthetic.yaml")
    with pytest.raises(ConfigError, match="at least one of them true"):
        config.override(**{"ccnn.tags": False})
    with pytest.raises(ConfigError, match="box_fraction"):
        config.override(**{"ccnn.box_fraction": [0.5, "x"]})
    with pytest.raises(ConfigError, match="box_slack"):
        config.override(**{"ccnn.box_slack": -1.0})
    with pytest.raises(ValueError, match="box_slack"):
        CCNNModel(helpers.tiny_network(0, 16), box_slack=float("inf"))
    with pytest.raises(ValueError, match="one per class"):
        CCNNModel(helpers.tiny_network(0, 16), box_fraction=[0.5, 0.5])
    model = CCNNModel(helpers.tiny_network(0, 16), downscale=2, solver_jit_compile=False)
    with pytest.raises(ValueError, match="box_masks with box_classes"):
        model.loss_terms({"box_masks": np.zeros((1, 16, 16, 1), np.float32)},
                         model(np.zeros((1, 16, 16, 1), np.float32)))
    with pytest.raises(ValueError, match=r"box classes must be in \[0, 3\)"):
        model.loss_terms({"box_masks": np.ones((1, 16, 16, 1), np.float32),
                          "box_classes": np.array([[5]], np.int32)},
                         model(np.zeros((1, 16, 16, 1), np.float32)))


def test_group_subset_takes_whole_patients(tmp_path):
    from test_acdc import write_volume

    from keras_regseg.data.acdc import ACDCSlices
    from keras_regseg.data.subset import group_subset

    for patient in range(21, 31):   # ten training patients of fold 1, 3 slices each
        write_volume(str(tmp_path), patient, 1, (3, 20, 24), seed=patient)
        write_volume(str(tmp_path), patient, 12, (2, 20, 24), seed=100 + patient)
    slices = ACDCSlices(str(tmp_path), fold=1, split="train", size=16, progress=False)
    subset = group_subset(slices, 0.2)
    patients = {i.split("_")[0] for i in subset.ids()}
    assert len(patients) == 2
    assert sorted(subset.ids()) == sorted(i for i in slices.ids() if i.split("_")[0] in patients)
    batch = next(iter(make_training_dataset(subset, batch_size=2, seed=0)))
    assert batch[0].shape[0] == 2
    with pytest.raises(ValueError, match="fraction"):
        group_subset(slices, 0.0)


def test_pretrain_subset_trains_the_pce_phase_on_that_share(tmp_path, monkeypatch):
    from keras_regseg.training import trainer

    phases = []
    real_run_phase = trainer.run_phase

    def recording_run_phase(config, network, data, output, *args, **kwargs):
        phases.append((config.method, len(data.train)))
        return real_run_phase(config, network, data, output, *args, **kwargs)

    monkeypatch.setattr(trainer, "run_phase", recording_run_phase)
    config = TrainConfig.from_yaml("configs/ccnn_synthetic.yaml").override(**{
        "output": str(tmp_path / "run"), "data.num_train": 40, "data.num_val": 4,
        "training.iterations": 2, "training.steps_per_epoch": 2,
        "training.pretrain_iterations": 2, "training.pretrain_subset": 0.25})
    trainer.train(config, verbose=0)
    assert phases == [("pce", 10), ("ccnn", 40)]
    with pytest.raises(ConfigError, match="pretrain_subset"):
        config.override(**{"training.pretrain_subset": 1.5})


def voc_with_boxes(root, lines):
    image = np.zeros((10, 20, 3), np.uint8)
    scribble = np.full((10, 20), 255, np.uint8)
    helpers.make_voc(str(root), {"a": (image, scribble), "b": (image, scribble)})
    (root / "boxes.txt").write_text(lines)


def test_boxes_file_of_a_voc_folder_reaches_the_targets(tmp_path):
    from keras_regseg.data.voc import VOCFolder

    voc_with_boxes(tmp_path, "# id class x_min y_min x_max y_max\n"
                             "a 1 0 0 10 5\na 2 15 5 20 10\nb 2 5 0 10 10\n")
    voc = VOCFolder(str(tmp_path), num_classes=3, boxes_file="boxes.txt")
    sample = voc.load(0)
    np.testing.assert_allclose(sample["boxes"], [[0.0, 0.0, 0.5, 0.5], [0.5, 0.75, 1.0, 1.0]])
    assert sample["box_classes"].tolist() == [1, 2]
    assert voc.load(1)["box_classes"].tolist() == [2, -1]
    dataset = make_training_dataset(voc, batch_size=2, shuffle=False, seed=0,
                                    target=DictTargets(("boxes",), max_boxes=3))
    _, y = next(iter(dataset))
    assert y["box_classes"].numpy().tolist() == [[1, 2, -1], [2, -1, -1]]
    masks = y["box_masks"].numpy()
    assert masks[0, :5, :10, 0].all() and masks[0, :, :, 0].sum() == 50
    assert masks[1, :, 5:10, 0].all() and masks[1, :, :, 0].sum() == 50


@pytest.mark.parametrize("line, message", [
    ("a 1 0 0 21 5", r"boxes.txt:1: box \(0, 0\) - \(21, 5\) is empty or outside the 20x10"),
    ("a 1 3 2 3 5", r"boxes.txt:1: box .* is empty"),
    ("a 7 0 0 2 2", r"boxes.txt:1: box class 7 outside \[0, 3\)"),
    ("zz 1 0 0 2 2", r"boxes.txt:1: id 'zz' is not in the split"),
    ("a 1 0 0 2", r"boxes.txt:1: expected 'id class x_min y_min x_max y_max'"),
])
def test_bad_boxes_are_refused_naming_the_file_and_line(tmp_path, line, message):
    from keras_regseg.data.voc import VOCFolder

    voc_with_boxes(tmp_path, line + "\n")
    with pytest.raises(ValueError, match=message):
        VOCFolder(str(tmp_path), num_classes=3, boxes_file="boxes.txt")
