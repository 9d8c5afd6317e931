#!/usr/bin/env python3
"""Quantized accuracy on a labelled image list (historical name):

    python examples/test_imagenet_quantize_acc.py --config-file configs/resnet50_v1b.yml [--jobs 2]

Same as `fcc quant accuracy --config C.yml`: top-1/top-5 of the float model and of every
strategy with per-layer and per-channel weights on EVALUATION.image_file (under
EVALUATION.input_images, classes in EVALUATION.label_file), the drop against float, the top-1
agreement with float and images/s per row; the table is printed and written as
OUTPUT_DIR/accuracy.{csv,json,md,png}. Any other `fcc quant accuracy` flag passes through
(--jobs N, --dask ADDRESS, --skip-missing, --strategies a,b).
"""

import argparse
import sys

from fc.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", "--config", dest="config", required=True)
    args, rest = p.parse_known_args()
    sys.exit(main(["quant", "accuracy", "--config", args.config, *rest]))
