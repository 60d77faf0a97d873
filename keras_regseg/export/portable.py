"""Single-file exports for other runtimes: ONNX (onnxruntime) and LiteRT (TFLite).

Both hold the :func:`~keras_regseg.export.serving_model.serving_model`: one
input ``images`` float32 ``[B, H, W, C]`` of any height and width, outputs
``probabilities`` ``[B, H, W, K]`` and ``labels`` ``[B, H, W]`` (int32), the
same numbers as the Keras network (``tests/test_export_formats.py`` compares
them on an image whose sides are not multiples of the network's stride).
They need the ``export`` extra (``pip install keras_regseg[export]``: tf2onnx
to convert, onnxruntime and ai-edge-litert to run them).

LiteRT keeps the sizes dynamic: before running an image of another size,
resize the input (``interpreter.resize_tensor_input(index, image.shape)``, then
``allocate_tensors()``); :func:`run_litert` does so.
"""

from __future__ import annotations

import os
import tempfile
import typing

import numpy as np

from keras_regseg.export.serving_model import input_signature, serving_model

if typing.TYPE_CHECKING:   # names for the type hints only
    import keras

__all__ = ["export_file", "FORMATS", "run_litert", "run_onnx"]

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}
"""Export format -> file extension."""


def export_file(model: keras.Model, path: str | os.PathLike, export_format: str) -> str:
    """Write ``model``'s network as one ``.onnx`` or ``.tflite`` file at ``path`` (atomically).

    ``export_format`` is ``"onnx"`` or ``"litert"``; returns ``path``.

    >>> import os, tempfile
    >>> from keras_regseg.models import UNet
    >>> path = os.path.join(tempfile.mkdtemp(), "unet.tflite")
    >>> path = export_file(UNet(num_classes=2, depth=3), path, "litert")
    >>> outputs = run_litert(path, np.zeros((1, 20, 20, 1), np.float32))   # any size
    >>> outputs["probabilities"].shape, outputs["labels"].shape
    ((1, 20, 20, 2), (1, 20, 20))
    """
    if export_format not in FORMATS:
        raise ValueError(f"export format {export_format!r}; expected one of {', '.join(FORMATS)}.")
    _check_extra(export_format)
    serving = serving_model(model)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".export-", suffix=FORMATS[export_format],
                                         dir=folder)
    os.close(handle)
    try:
        serving.export(temporary, format=export_format, verbose=False,
                       input_signature=input_signature(serving))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _check_extra(export_format):
    import importlib.util

    needed = {"onnx": ("tf2onnx", "onnx"), "litert": ()}[export_format]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"--format {export_format} needs {', '.join(missing)}: "
                          "pip install 'keras_regseg[export]'.")


def run_onnx(path: str | os.PathLike, images: np.ndarray) -> dict[str, np.ndarray]:
    """``{"probabilities", "labels"}`` of an exported ``.onnx`` file, by onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: np.asarray(images, np.float32)})
    return dict(zip((o.name for o in session.get_outputs()), outputs))


def run_litert(path: str | os.PathLike, images: np.ndarray) -> dict[str, np.ndarray]:
    """``{"probabilities", "labels"}`` of an exported ``.tflite`` file, by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    images = np.asarray(images, np.float32)
    interpreter = Interpreter(model_path=path)
    entry = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(entry["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], images)
    interpreter.invoke()
    result = {}
    for output in interpreter.get_output_details():   # named by the converter: tell by rank
        value = interpreter.get_tensor(output["index"])
        result["probabilities" if value.ndim == 4 else "labels"] = value
    return result
