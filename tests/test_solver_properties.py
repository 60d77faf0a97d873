"""Property-based tests of the solver front end: no input crashes the process.

Random shapes, class counts, probability maps with NaN, inf, huge, tiny and
negative values, seeds with odd labels and dtypes, mismatched sizes, odd
weights and non-contiguous arrays go to :func:`solve_alpha_expansion`,
:meth:`SolverPool.solve_batch` (in-process and with a worker process) and
:func:`~keras_regseg.methods.latent_solve.solve_labelings`. Each call either
returns labels that are valid (the right shape, classes the solver may use,
seeds kept, padding kept, an energy no worse than the starting labeling) or
raises a ``ValueError``; inputs drawn valid must be solved, inputs drawn
invalid must be refused, and any other exception type fails the test.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_regseg.methods.latent_solve import solve_labelings
from keras_regseg.solvers import SolverPool, grid_pairs, solve_alpha_expansion, starting_solution
from keras_regseg.solvers.energy import (IGNORE_INDEX, PAD_INDEX, PROBABILITY_TOLERANCE,
                                         present_labels)

PROPERTIES = settings(max_examples=40, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])

ODD_PROBABILITIES = [np.nan, np.inf, -np.inf, 1e300, -1e300, 2.0, -0.5, 1 + 2e-3]
EDGE_PROBABILITIES = [0.0, 1.0, 1e-300, 5e-324, -1e-300, 1 + 1e-4, -1e-4]   # all accepted
ODD_SEEDS = [-1, 253, 256, 1000, 2 ** 31 - 1]
WEIGHTS = [0.0, 1e-12, 0.05, 1.0, 100.0, 1e6, 1e300]
BAD_WEIGHTS = [np.nan, np.inf, -1.0]


def strided(array, rng):
    """The same values in a non-contiguous layout (a strided view or a Fortran-order copy)."""
    if array.ndim < 2 or rng.random() < 0.3:
        return np.asfortranarray(array)
    big = np.zeros((array.shape[0] * 2, *array.shape[1:]), array.dtype)
    big[::2] = array
    view = big[::2]
    assert not view.flags.c_contiguous or array.shape[0] == 1 or array.size == 0
    return view


MODES = ["valid", "probabilities", "seeds", "image", "weights", "any"]
"""How a problem is drawn: valid throughout, invalid in one part only (so that each check
is exercised alone), or anything in every part."""


@st.composite
def problems(draw, mode=None):
    """``(kwargs for solve_alpha_expansion, reasons)``: ``reasons`` names what was drawn
    invalid (``probabilities``, ``seeds``, ``image``, ``edges``, ``weights``), empty for a
    valid problem; ``"maybe"`` marks draws that may or may not be valid."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    height, width, classes = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(
        st.integers(1, 5))
    reasons = set()
    mode = mode or draw(st.sampled_from(MODES))

    def pick(part, valid_choices, invalid_choices):
        if mode == "any":
            return draw(st.sampled_from(valid_choices + invalid_choices))
        return draw(st.sampled_from(invalid_choices if mode == part else valid_choices))

    probabilities = rng.dirichlet(np.ones(classes), size=(height, width))
    probabilities = probabilities.astype(draw(st.sampled_from(
        [np.float64, np.float32, np.float16])))
    special = pick("probabilities", ["none", "edge", "integers"], ["odd", "logits", "shape"])
    if special == "edge":
        flat = probabilities.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = rng.choice(EDGE_PROBABILITIES, 3)
    elif special == "odd":
        flat = probabilities.reshape(-1)
        with np.errstate(over="ignore"):   # 1e300 is inf in float16: refused all the same
            flat[rng.integers(0, flat.size)] = draw(st.sampled_from(ODD_PROBABILITIES))
        reasons.add("probabilities")
    elif special == "integers":    # one-hot maps as integers are probabilities too
        dtype = draw(st.sampled_from([np.int8, np.uint8, np.int32, np.int64] + (
            [np.bool_] if mode in ("probabilities", "any") else [])))
        probabilities = np.eye(classes, dtype=dtype)[rng.integers(0, classes, (height, width))]
        if dtype is np.bool_:
            reasons.add("probabilities")   # not numbers
    elif special == "logits":   # mostly out of range; at a scale of 1e-4, within tolerance
        probabilities = rng.normal(0, draw(st.sampled_from([5.0, 1e-4])), (height, width, classes))
        reasons.add("probabilities" if (probabilities.min() < -PROBABILITY_TOLERANCE or
                                        probabilities.max() > 1 + PROBABILITY_TOLERANCE)
                    else "maybe")
    elif special == "shape":
        probabilities = draw(st.sampled_from([
            probabilities[..., 0], probabilities[None], probabilities[..., :0],
            np.zeros((height, width, 255))]))
        reasons.add("probabilities")

    seeds = np.full((height, width), IGNORE_INDEX, np.int64)
    marked = rng.random((height, width)) < draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    seeds[marked] = rng.integers(0, classes, marked.sum())
    if draw(st.booleans()):
        seeds[rng.random((height, width)) < 0.3] = PAD_INDEX
    seed_kind = pick("seeds", ["int", "float"], ["odd", "float_fraction", "shape"])
    if seed_kind == "odd":
        seeds[rng.integers(0, height), rng.integers(0, width)] = draw(st.sampled_from(
            ODD_SEEDS + [classes]))
        reasons.add("seeds")
    seeds = seeds.astype(draw(st.sampled_from([np.int64, np.int32, np.int16, np.uint8]))
                         if seed_kind != "odd" else np.int64)
    if seed_kind == "float":
        seeds = seeds.astype(np.float32)        # integral floats are accepted
    elif seed_kind == "float_fraction":
        seeds = seeds.astype(np.float64) + 0.5
        reasons.add("seeds")
    elif seed_kind == "shape":
        seeds = np.full((height + 1, width), IGNORE_INDEX)
        reasons.add("seeds")

    image_kind = pick("image", ["grey", "rgb", "2d", "edges"], ["none", "nan", "shape",
                                                                "bad_edges"])
    image, edge_weights = rng.random((height, width, 3 if image_kind == "rgb" else 1)), None
    if image_kind == "2d":
        image = image[..., 0] * 255
    elif image_kind == "none":
        image = None
        reasons.add("image")
    elif image_kind == "nan":
        image[0, 0, 0] = np.nan
        reasons.add("image")
    elif image_kind == "shape":
        image = rng.random((height, width + 2, 1))
        reasons.add("image")
    elif image_kind in ("edges", "bad_edges"):
        image = None
        edge_weights = rng.random(grid_pairs(height, width)[0].size)
        if image_kind == "bad_edges":
            edge_weights = draw(st.sampled_from([
                np.append(edge_weights, 1.0), -1.0 - edge_weights,
                np.full_like(edge_weights, np.nan) if edge_weights.size else np.ones(1)]))
            reasons.add("edges")

    unary_weight = pick("weights", WEIGHTS, BAD_WEIGHTS)
    potts_weight = draw(st.sampled_from(WEIGHTS + (BAD_WEIGHTS if mode == "any" else [])))
    if unary_weight in BAD_WEIGHTS or potts_weight in BAD_WEIGHTS:
        reasons.add("weights")

    if draw(st.booleans()):   # the same values, laid out differently
        probabilities, seeds = strided(probabilities, rng), strided(seeds, rng)
        if image is not None:
            image = strided(image, rng)
    kwargs = dict(probabilities=probabilities, image=image, seeds=seeds,
                  unary_weight=unary_weight, potts_weight=potts_weight,
                  max_iterations=draw(st.sampled_from([1, 5, None])),
                  restrict_labels=draw(st.booleans()), edge_weights=edge_weights,
                  warm_start=draw(st.booleans()), image_id="prop")
    return kwargs, reasons


def expectation(reasons):
    """``"refuse"`` if something was drawn invalid, ``"either"`` if maybe, else ``"solve"``."""
    if reasons - {"maybe"}:
        return "refuse"
    return "either" if reasons else "solve"


def check_labels(labels, seeds, classes, allowed=None):
    """Shape, dtype, padding, seeds and classes of one solved labeling."""
    seeds = np.asarray(seeds).astype(np.int64)
    assert labels.dtype == np.int32 and labels.shape == seeds.shape
    padding = seeds == PAD_INDEX
    assert (labels[padding] == PAD_INDEX).all()
    inside = labels[~padding]
    allowed = np.arange(classes) if allowed is None else allowed
    assert np.isin(inside, allowed).all(), (np.unique(inside), allowed)
    seeded = (seeds >= 0) & (seeds < classes)
    np.testing.assert_array_equal(labels[seeded], seeds[seeded])


def outcome(function, expect, **kwargs):
    """``function(**kwargs)``, or None after a ValueError; checks the expectation."""
    try:
        result = function(**kwargs)
    except ValueError as error:
        assert expect != "solve", f"valid input refused: {error}"
        assert str(error), "an empty error message"
        return None
    assert expect != "refuse", "invalid input was solved"
    return result


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTIES, max_examples=12)
@given(data=st.data())
def test_alpha_expansion_solves_valid_input_and_refuses_the_rest(mode, data):
    kwargs, reasons = data.draw(problems(mode))
    if mode != "any":
        assert reasons <= {mode, "maybe"} | ({"edges"} if mode == "image" else set())
    result = outcome(solve_alpha_expansion, expectation(reasons), **kwargs)
    if result is None:
        return
    labels, energy = result
    classes = np.shape(kwargs["probabilities"])[-1]
    seeds = np.asarray(kwargs["seeds"]).astype(np.int64)
    allowed = present_labels(seeds, classes) if kwargs["restrict_labels"] else None
    check_labels(labels, seeds, classes, allowed)
    assert isinstance(energy, float) and not np.isnan(energy) and energy >= 0
    start_kwargs = {k: v for k, v in kwargs.items() if k not in ("max_iterations", "warm_start")}
    _, start_energy = starting_solution(**start_kwargs)
    assert energy <= start_energy
    # The layout of the arrays does not matter.
    contiguous = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
                  for k, v in kwargs.items()}
    again, again_energy = solve_alpha_expansion(**contiguous)
    np.testing.assert_array_equal(again, labels)
    assert again_energy == energy


@pytest.fixture(scope="module")
def in_process_pool():
    with SolverPool(processes=0) as pool:
        yield pool


@pytest.fixture(scope="module")
def worker_pool():
    with SolverPool(processes=1) as pool:
        yield pool


def check_batch(pool, batch, stacked=False):
    """``pool.solve_batch`` over the problems of ``batch``, with the first one's weights.

    Problems without an image (edge weights instead, which ``solve_batch`` does
    not take) get a valid one. ``stacked``: one problem as a ``[1, ...]`` batch.
    """
    probabilities, images, seeds, refusals = [], [], [], set()
    for kwargs, reasons in batch:
        probabilities.append(kwargs["probabilities"])
        seeds.append(kwargs["seeds"])
        image = kwargs["image"]
        if kwargs["image"] is None:
            image = np.zeros(np.shape(kwargs["probabilities"])[:2])
            reasons = reasons - {"image", "edges"}
        refusals |= reasons - {"weights", "edges"}
    first = batch[0][0]
    refusals |= batch[0][1] & {"weights"}
    settings_ = {k: first[k] for k in ("unary_weight", "potts_weight", "max_iterations",
                                       "restrict_labels")}
    if stacked:
        probabilities, images, seeds = (np.asarray(a)[None] for a in (probabilities[0], image,
                                                                      seeds[0]))
    else:
        images = [k["image"] if k["image"] is not None
                  else np.zeros(np.shape(k["probabilities"])[:2]) for k, _ in batch]
    result = outcome(pool.solve_batch, expectation(refusals), probabilities=probabilities,
                     images=images, seeds=seeds, ids=[f"p{i}" for i in range(len(batch))],
                     **settings_)
    if result is None:
        return
    labels, energies = result
    assert energies.shape == (len(batch),) and not np.isnan(energies).any()
    for label, (kwargs, _) in zip(labels, batch):
        classes = np.shape(kwargs["probabilities"])[-1]
        check_labels(np.asarray(label), kwargs["seeds"], classes)


@PROPERTIES
@given(st.lists(problems(), min_size=1, max_size=3))
def test_pool_batches_are_solved_or_refused_before_any_work(in_process_pool, batch):
    check_batch(in_process_pool, batch)


@PROPERTIES
@given(problems())
def test_pool_batch_arrays_are_solved_or_refused(in_process_pool, problem):
    check_batch(in_process_pool, [problem], stacked=True)


@settings(PROPERTIES, max_examples=12)
@given(st.lists(problems(), min_size=1, max_size=2))
def test_a_worker_process_pool_survives_the_same_inputs(worker_pool, batch):
    check_batch(worker_pool, batch)
    # The worker is still there and still solves.
    p = np.full((2, 2, 2), 0.5)
    labels, _ = worker_pool.solve_batch([p], [np.zeros((2, 2))], [np.array([[0, 255], [255, 1]])])
    assert labels[0][0, 0] == 0 and labels[0][1, 1] == 1 and worker_pool.failed_ids == []


@PROPERTIES
@given(st.lists(problems(), min_size=1, max_size=3))
def test_latent_labelings_never_stop_training(in_process_pool, batch):
    """``solve_labelings`` (ADM, stage A) answers every image: a labeling, the starting
    labeling or the seeds alone, with a warning for the images it could not solve."""
    probabilities = [k["probabilities"] for k, _ in batch]
    images = [k["image"] if k["image"] is not None else np.zeros(np.shape(k["seeds"]))
              for k, _ in batch]
    seeds = [k["seeds"] for k, _ in batch]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            labels, energies = solve_labelings(probabilities, images, seeds, pool=in_process_pool,
                                               max_iterations=1)
    except ValueError as error:   # only for input no image can be read from
        assert str(error)
        return
    assert len(labels) == len(batch) and energies.shape == (len(batch),)
    for label, seed in zip(labels, seeds):
        assert np.asarray(label).shape == np.shape(seed)


@pytest.mark.parametrize("mode", MODES[:-1])
def test_each_mode_draws_what_it_says(mode):
    """A valid mode draws valid problems; an invalid one, problems invalid in that part."""
    seen = []

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(problems(mode))
    def collect(problem):
        seen.append(problem[1])

    collect()
    if mode == "valid":
        assert all(reasons <= {"maybe"} for reasons in seen)
    else:
        assert sum(mode in reasons for reasons in seen) >= 10, seen
