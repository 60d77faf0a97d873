"""Export trained networks for serving: a versioned SavedModel, ONNX or LiteRT."""

from keras_regseg.export.portable import FORMATS, export_file, run_litert, run_onnx
from keras_regseg.export.saved_model import (LoadedServing, export_saved_model, load_serving,
                                             pad_to_multiple)
from keras_regseg.export.serving_model import network_of, serving_model

__all__ = ["FORMATS", "LoadedServing", "export_file", "export_saved_model", "load_serving",
           "network_of", "pad_to_multiple", "run_litert", "run_onnx", "serving_model"]
