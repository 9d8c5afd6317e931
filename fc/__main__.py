"""``python -m fc``: the same program as ``fc`` / ``fcc``."""

import sys

from fc.cli import main

sys.exit(main())
