"""Export a segmentation network as a versioned TensorFlow SavedModel for serving.

The SavedModel needs neither keras_regseg nor Keras to run: its
``serving_default`` signature takes float32 images ``[B, H, W, C]`` in
``[0, 1]`` of any height and width and returns

- ``"probabilities"``: float32 ``[B, H, W, K]``, softmax of the logits;
- ``"labels"``: int32 ``[B, H, W]``, their argmax.

Networks that need sizes divisible by ``model.size_divisor`` get the images
padded at the bottom and right to the next multiple (reflection, or zeros when
the image is too small to reflect) and the outputs cropped back.

Versions follow TF Serving's layout ``export_dir/<integer>/``.

>>> import tempfile, numpy as np
>>> from keras_regseg.models import UNet
>>> model = UNet(num_classes=3, filters=(4, 8), dropout=0.0)
>>> root = tempfile.mkdtemp()
>>> path = export_saved_model(model, root)
>>> os.path.basename(path)
'1'
>>> serve = load_serving(root)
>>> out = serve(np.zeros((1, 5, 7, 1), "float32"))
>>> tuple(out["probabilities"].shape), out["labels"].dtype.name
((1, 5, 7, 3), 'int32')
"""

from __future__ import annotations

import os
import shutil
import tempfile
import typing

import tensorflow as tf

from keras_regseg.export.graph_check import check_saved_model
from keras_regseg.export.serving_model import input_signature, serving_model
from keras_regseg.ops.padding import pad_to_multiple  # noqa: F401 (re-exported)
from keras_regseg.utils.files import chmod_tree_to_umask

if typing.TYPE_CHECKING:   # names for the type hints only
    import keras

__all__ = ["export_saved_model", "load_serving", "LoadedServing", "next_version", "SIGNATURE_KEY"]

SIGNATURE_KEY = "serving_default"


def _versions(export_dir):
    """Integer version directories under ``export_dir``."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(d) for d in os.listdir(export_dir)
                  if d.isdigit() and os.path.isdir(os.path.join(export_dir, d)))


def next_version(export_dir):
    """One more than the largest version under ``export_dir`` (1 for the first)."""
    return (_versions(export_dir) or [0])[-1] + 1


def export_saved_model(model: keras.Model, export_dir: str | os.PathLike,
                       version: int | None = None) -> str:
    """Write ``model`` as a SavedModel in ``export_dir/<version>/`` and return that path.

    Args:
        model: Keras model mapping float32 ``[B, H, W, C]`` images to logits
            ``[B, H, W, K]`` (an optional ``size_divisor`` attribute gives the
            multiple that input sizes are padded to), or a method's model
            holding one (:func:`~keras_regseg.export.serving_model.network_of`).
        export_dir: parent directory of the versions (created if missing).
        version: non-negative int; ``None``: one more than the largest existing
            version (1 for the first).

    The SavedModel is written to a hidden temporary directory next to the
    versions and renamed into place, so a server polling ``export_dir`` never
    sees a half-written version.
    """
    serving = serving_model(model)
    if version is None:
        version = next_version(export_dir)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version must be a non-negative int or None; got {version!r}.")
    final_dir = os.path.join(export_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"export version {final_dir} already exists; pick another version "
                              f"or version=None for the next free one.")
    os.makedirs(export_dir, exist_ok=True)

    temp_dir = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=export_dir)
    try:
        serving.export(temp_dir, format="tf_saved_model", verbose=False,
                       input_signature=input_signature(serving))
        if os.path.exists(final_dir):  # another exporter won the race
            raise FileExistsError(f"export version {final_dir} appeared while exporting.")
        chmod_tree_to_umask(temp_dir)
        os.rename(temp_dir, final_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return final_dir


class LoadedServing:
    """Callable wrapper of a loaded ``serving_default`` signature.

    Keeps the loaded SavedModel alive (its variables die with it) and takes the
    images positionally: ``serve(images) -> {"probabilities", "labels"}``.
    """

    def __init__(self, path: str | os.PathLike, unsafe: bool = False):
        self.path = path
        if not unsafe:
            check_saved_model(path)
        self._loaded = tf.saved_model.load(path)
        if SIGNATURE_KEY not in self._loaded.signatures:
            raise ValueError(f"{path}: SavedModel without a {SIGNATURE_KEY!r} signature; expected "
                             "one written by keras-regseg-export.")
        self.signature = self._loaded.signatures[SIGNATURE_KEY]
        inputs = self.signature.structured_input_signature[1]
        outputs = self.signature.structured_outputs
        if "images" not in inputs or "probabilities" not in outputs:
            raise ValueError(
                f"{path}: its {SIGNATURE_KEY!r} signature takes {sorted(inputs)} and returns "
                f"{sorted(outputs)}; expected images -> probabilities (a keras-regseg-export "
                "SavedModel).")

    @property
    def channels(self):
        """Image channels the model takes (None when its signature leaves them open)."""
        return self.signature.structured_input_signature[1]["images"].shape[-1]

    @property
    def num_classes(self):
        """Classes the model predicts (None when its signature leaves them open)."""
        return self.signature.structured_outputs["probabilities"].shape[-1]

    def __call__(self, images):
        return self.signature(images=tf.convert_to_tensor(images, tf.float32))


def load_serving(export_dir: str | os.PathLike, version: int | None = None,
                 unsafe: bool = False) -> LoadedServing:
    """Load a SavedModel written by :func:`export_saved_model` for inference.

    ``export_dir`` is either a version directory (holding ``saved_model.pb``) or
    the parent of versions, in which case ``version`` (default: the latest)
    picks one. Returns a :class:`LoadedServing`. Unless ``unsafe``, the graph
    is read first and refused when it holds ops the library's export never
    writes (:mod:`keras_regseg.export.graph_check`).
    """
    if version is None and os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        return LoadedServing(export_dir, unsafe)
    if version is None:
        versions = _versions(export_dir)
        if not versions:
            raise FileNotFoundError(f"no SavedModel in {export_dir!r}: expected saved_model.pb or "
                                    f"integer version subdirectories.")
        version = versions[-1]
    path = os.path.join(export_dir, str(version))
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"no SavedModel at {path!r} (saved_model.pb missing).")
    return LoadedServing(path, unsafe)
