"""Exported models: agreement with the Keras network and CPU inference time, per format.

The WSL4MIS UNet (1 channel, 4 classes, untrained weights from seed 0) is exported
as a SavedModel, an ONNX file and a LiteRT file; each runs in its own runtime
(``tf.saved_model.load``, onnxruntime, the LiteRT interpreter) on one 256x256
image. Reported per format: the largest difference of the probabilities from the
Keras serving model, whether the labels agree, and the median time per image
(session or interpreter built once, outside the timing).

    python benchmarks/export_formats.py [--quick] [--json PATH]
"""

import os
import tempfile

import common

import keras
import numpy as np
import tensorflow as tf

from keras_regseg.export import export_file, export_saved_model
from keras_regseg.export.serving_model import serving_model
from keras_regseg.models import UNet

SIDE, CLASSES = 256, 4


def onnx_runner(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    entry = session.get_inputs()[0].name

    def run(images):
        return dict(zip(names, session.run(None, {entry: images})))
    return run


def litert_runner(path, shape):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    entry = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(entry, shape)
    interpreter.allocate_tensors()

    def run(images):
        interpreter.set_tensor(entry, images)
        interpreter.invoke()
        result = {}
        for output in interpreter.get_output_details():   # told apart by rank
            value = interpreter.get_tensor(output["index"])
            result["probabilities" if value.ndim == 4 else "labels"] = value
        return result
    return run


def saved_model_runner(path):
    serve = tf.saved_model.load(path).signatures["serving_default"]

    def run(images):
        return {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    return run


def main():
    args = common.parser(__doc__.split("\n")[0]).parse_args()
    repeats = 5 if args.quick else 20
    keras.utils.set_random_seed(0)
    network = UNet(num_classes=CLASSES, input_channels=1, dropout=0.0)
    images = np.random.default_rng(0).random((1, SIDE, SIDE, 1)).astype(np.float32)
    keras_model = serving_model(network)

    def keras_run(batch):
        return {k: v.numpy() for k, v in keras_model(batch).items()}

    reference = keras_run(images)
    folder = tempfile.mkdtemp(prefix="export-bench-")
    runners = {"keras": keras_run,
               "saved_model": saved_model_runner(export_saved_model(
                   network, os.path.join(folder, "saved_model"))),
               "onnx": onnx_runner(export_file(network, os.path.join(folder, "unet.onnx"),
                                               "onnx")),
               "litert": litert_runner(export_file(network, os.path.join(folder, "unet.tflite"),
                                                   "litert"), images.shape)}
    rows, results = [], {}
    for name, run in runners.items():
        outputs = run(images)
        difference = float(np.abs(outputs["probabilities"] - reference["probabilities"]).max())
        labels_agree = float((outputs["labels"] == reference["labels"]).mean())
        seconds = common.median_time(lambda run=run: run(images), repeats, warmup=2)
        results[name] = {"max_abs_difference": difference, "labels_agree": labels_agree,
                         "ms_per_image": 1000 * seconds}
        rows.append([name, difference, labels_agree, 1000 * seconds])
    print(f"UNet (WSL4MIS), {SIDE}x{SIDE}x1, {CLASSES} classes, CPU, median of {repeats}")
    common.print_table(["format", "max |p - p_keras|", "labels agree", "ms / image"], rows)
    common.write_json(args.json, {"image": [SIDE, SIDE, 1], "classes": CLASSES,
                                  "repeats": repeats, "formats": results})


if __name__ == "__main__":
    main()
