#!/usr/bin/env python3
"""The seed's spelling of examples/test_tensorflow_reconstructor.py (same arguments)."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("test_tensorflow_reconstructor.py")),
                   run_name="__main__")
