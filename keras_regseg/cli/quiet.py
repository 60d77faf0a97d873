"""TensorFlow without its start-up noise on the command line (``--verbose`` keeps it).

TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA probes) through absl
before absl's logging is initialized, where ``TF_CPP_MIN_LOG_LEVEL`` does not
reach them. :func:`load_tensorflow_quietly` therefore imports TensorFlow and
probes its devices with the process's stderr (file descriptor 2) pointed at
``/dev/null``, and sets ``TF_CPP_MIN_LOG_LEVEL=3`` for what comes later (the
library reports its own errors; a TensorFlow failure still arrives as a Python
exception). A Python error during the import still shows: it is raised after
stderr is back.
"""

import os
import sys

__all__ = ["load_tensorflow_quietly", "QUIET_LOG_LEVEL"]

QUIET_LOG_LEVEL = "3"


def load_tensorflow_quietly(verbose=False):
    """Import TensorFlow now, silently unless ``verbose`` (then: no change at all)."""
    if verbose or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        import tensorflow as tf

        tf.config.list_physical_devices()   # the CUDA probe logs on first use
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
