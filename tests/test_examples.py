"""Every example of examples/ runs as a user would and learns the disks from scribbles."""

import importlib
import os

import keras
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


# Background everywhere gives IoU 0; the scribbles alone cover a few % of each disk. In these
# few epochs pCE alone reaches 0.65-0.8 here, the regularized methods 0.78-0.99 (CPU threads
# make runs differ).
@pytest.mark.parametrize("name, epochs, least_iou", [
    ("fit_your_own_data", 12, 0.6), ("fit_gd", 12, 0.7), ("fit_ccnn", 12, 0.7),
    ("fit_adm", 8, 0.7), ("fit_trust_region", 8, 0.7)])
def test_example_learns_from_scribbles(name, epochs, least_iou, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)      # as `python examples/<name>.py` would see it
    keras.utils.set_random_seed(0)
    example = importlib.import_module(name)
    assert example.main(epochs=epochs) > least_iou
