#!/usr/bin/env python3
"""Print a model's complexity (historical entry point; same as `fcc complexity`).

    python examples/test_model_complexity.py --graph-json fc_ir/IR_fused_for_CModel_graph.json \
        --params-file fc_ir/IR_fused_for_CModel_params.npz
"""

import sys

from fc.cli import main

if __name__ == "__main__":
    sys.exit(main(["complexity", *sys.argv[1:]]))
