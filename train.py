#!/usr/bin/env python
"""Train a segmentation network from weak labels: ``python train.py --help``."""

import sys

from keras_regseg.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
