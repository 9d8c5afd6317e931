#!/usr/bin/env python3
"""Compile a model (historical name and arguments, kept for existing users):

    python examples/test_complier.py mxnet resnet50v1b 0 [-o OUT]

The last positional argument is the GPU/device id; fc compiles on the CPU and ignores it.
Writes ./moffett_ir (the folder the seed's later commands read) unless -o says otherwise.
Same as `fcc compile FRAMEWORK MODEL -o moffett_ir`, through the library.
"""

import argparse
import sys

from fc.api import compile_model
from fc.errors import FcError

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("framework")
    p.add_argument("model")
    p.add_argument("device", nargs="?", default="0", help="GPU id (accepted, ignored on CPU)")
    p.add_argument("-o", "--output", default="moffett_ir")
    args = p.parse_args()
    try:
        summary = compile_model(args.framework, args.model, args.output)
    except FcError as e:
        print(f"test_complier: error: {e}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(summary.lines()))
