#!/usr/bin/env python3
"""Per-layer quantization error of a fused IR (historical name):

    python examples/test_quantize_error.py --config-file configs/resnet50_v1b.yml [--strategy minmax]

Same as `fcc quant error --config C.yml`: calibrates if the table is missing or stale, writes the
quantized IR, prints the layer table and `final distance: <x>`, and writes CSV/JSON/Markdown + PNG.
"""

import argparse
import sys

from fc.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", "--config", dest="config", required=True)
    args, rest = p.parse_known_args()
    sys.exit(main(["quant", "error", "--config", args.config, *rest]))
