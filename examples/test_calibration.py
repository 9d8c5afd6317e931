#!/usr/bin/env python3
"""Calibrate a fused IR on a folder of images (historical name):

    python examples/test_calibration.py --config-file configs/resnet50_v1b.yml [--method entropy]

Same as `fcc quant calibrate --config C.yml`.
"""

import argparse
import sys

from fc.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", "--config", dest="config", required=True)
    args, rest = p.parse_known_args()
    sys.exit(main(["quant", "calibrate", "--config", args.config, *rest]))
