#!/usr/bin/env python3
"""Rebuild an fc IR in TensorFlow and print its distance (the seed's arguments):

    python examples/test_tensorflow_reconstructor.py --graph G --params P --input_npy IN.npy \
        [--result_npy OUT.npy] [--tol 1e-3] [--save_path model.pb] [--per-layer] [--json R.json]

Prints ``distance: <rel-L2>`` first; exits 1 when the distance is above --tol, 2 on bad
input; --save_path writes the frozen GraphDef. Same as ``fcc reconstruct tf ...``, through
the library.
"""

import sys

from fc.cli import main

if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
    sys.exit(main(["reconstruct", "tf", *sys.argv[1:]]))
