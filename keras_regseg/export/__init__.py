"""Export trained networks for serving."""

from keras_regseg.export.saved_model import (LoadedServing, export_saved_model, load_serving,
                                             pad_to_multiple)

__all__ = ["LoadedServing", "export_saved_model", "load_serving", "pad_to_multiple"]
